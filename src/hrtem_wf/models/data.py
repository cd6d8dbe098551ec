"""Reading a curated dataset (Zarr images + masks, Parquet table) for training and evaluation."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from hrtem_wf.io import open_arrays

SPLITS = ("train", "validation", "test")

#: A split smaller than this is read into memory once; a larger one is read image by image.
IN_MEMORY_LIMIT_BYTES = 2 * 1024**3


def normalize_min_max(image: np.ndarray) -> np.ndarray:
    """Per-image scaling of raw counts to [0, 1] (float32); a flat image becomes all zeros."""
    image = np.asarray(image, dtype=np.float32)
    low, high = float(image.min()), float(image.max())
    if high <= low:
        return np.zeros_like(image)
    return (image - low) / (high - low)


def d4_transform(image: np.ndarray, mask: np.ndarray, quarter_turns: int, flip: bool):
    """One element of the square's symmetry group D4, applied alike to image and mask (last 2
    axes)."""
    image = np.rot90(image, k=quarter_turns, axes=(-2, -1))
    mask = np.rot90(mask, k=quarter_turns, axes=(-2, -1))
    if flip:
        image = np.flip(image, axis=-1)
        mask = np.flip(mask, axis=-1)
    return np.ascontiguousarray(image), np.ascontiguousarray(mask)


def random_d4(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator):
    """A uniformly drawn D4 element: 4 rotations x (flip or not) gives all 8 symmetries once."""
    return d4_transform(image, mask, int(rng.integers(4)), bool(rng.integers(2)))


@dataclass
class DatasetSplit:
    """The images and particle masks of one split, with their table rows."""

    images: object  # numpy array or io.StoredArray (read per item), (N_total, H, W) raw counts
    masks: object  # numpy array or io.StoredArray (read per item), (N_total, H, W) in {0, 1}
    rows: np.ndarray  # indices into images/masks of this split, ascending
    table: pd.DataFrame  # the Parquet rows of this split, in the order of ``rows``

    @property
    def image_shape(self) -> tuple[int, int]:
        return tuple(int(n) for n in self.images.shape[-2:])

    def __len__(self) -> int:
        return len(self.rows)


def read_split(dataset_zarr: str | Path, dataset_parquet: str | Path, split: str) -> DatasetSplit:
    """The rows of ``split`` ('train' | 'validation' | 'test'), checked against the arrays."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
    arrays, _ = open_arrays(dataset_zarr, {"images": np.float32, "masks": np.uint8})
    images, masks = arrays["images"], arrays["masks"]
    if len(images.shape) != 3:
        raise ValueError(f"{dataset_zarr}: images and masks are {images.shape}, not (N, H, W)")
    table = pd.read_parquet(dataset_parquet)
    missing = {"row", "split"} - set(table.columns)
    if missing:
        raise ValueError(f"{dataset_parquet} lacks the columns {sorted(missing)}")
    if len(table) != images.shape[0]:
        raise ValueError(
            f"{dataset_parquet} has {len(table)} rows but {dataset_zarr} has "
            f"{images.shape[0]} images"
        )
    table = table[table["split"] == split].sort_values("row").reset_index(drop=True)
    rows = table["row"].to_numpy(dtype=np.int64)
    if len(rows) and (rows.min() < 0 or rows.max() >= images.shape[0]):
        raise ValueError(f"{dataset_parquet}: 'row' values outside 0..{images.shape[0] - 1}")
    split_bytes = len(rows) * int(np.prod(images.shape[1:])) * (4 + 1)
    if len(rows) and split_bytes <= IN_MEMORY_LIMIT_BYTES:
        # One read of the whole split is far cheaper than one Zarr request per image per epoch.
        images, masks = images.read(rows), masks.read(rows)
        if masks.max() > 1:
            raise ValueError(
                f"{dataset_zarr}: masks must hold 0 (background) and 1 (particle) only"
            )
        return DatasetSplit(images, masks, np.arange(len(rows)), table)
    return DatasetSplit(images, masks, rows, table)


class SegmentationDataset(torch.utils.data.Dataset):
    """(normalized image (1, H, W) float32, particle mask (H, W) int64) pairs of one split."""

    def __init__(
        self, split: DatasetSplit, augment_d4: bool = False, rng: np.random.Generator | None = None
    ):
        self.split = split
        self.augment_d4 = augment_d4
        # Drawn in the main process (num_workers=0): a seeded generator makes epochs reproducible.
        self.rng = rng if rng is not None else np.random.default_rng(0)

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int):
        row = int(self.split.rows[index])
        image = normalize_min_max(self.split.images[row])
        mask = np.asarray(self.split.masks[row], dtype=np.int64)
        if self.augment_d4:
            image, mask = random_d4(image, mask, self.rng)
        return torch.from_numpy(image)[None], torch.from_numpy(mask)
