"""Reading a curated dataset (Zarr images + masks, Parquet table) for training and evaluation."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from hrtem_wf.io import open_arrays
from hrtem_wf.sampling import sample

SPLITS = ("train", "validation", "test")

#: A split smaller than this is read into memory once; a larger one is read image by image.
IN_MEMORY_LIMIT_BYTES = 2 * 1024**3


def normalize_min_max(image: np.ndarray) -> np.ndarray:
    """Per-image scaling of raw counts to [0, 1] (float32); a flat image becomes all zeros. A
    focal series (C, H, W) is scaled image by image."""
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 3:
        return np.stack([normalize_min_max(channel) for channel in image])
    low, high = float(image.min()), float(image.max())
    if high <= low:
        return np.zeros_like(image)
    return (image - low) / (high - low)


def as_channels(image: np.ndarray) -> np.ndarray:
    """An image (H, W) or a focal series (C, H, W) as (C, H, W)."""
    return image[None] if image.ndim == 2 else image


#: The dataset array each task trains against (segmentation: the particle masks).
TASK_TARGETS = {"segmentation": "masks", "columns": "column_maps", "exit_wave": "exit_waves"}


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


#: The photometric transforms of a models block's `augment_photometric`, in the order applied.
PHOTOMETRIC_KEYS = ("gamma", "contrast_factor", "brightness_offset", "noise_relative_sd")


def photometric_transform(
    image: np.ndarray,
    rng: np.random.Generator,
    gamma: float | None = None,
    contrast_factor: float | None = None,
    brightness_offset: float | None = None,
    noise_relative_sd: float | None = None,
) -> np.ndarray:
    """A min-max normalized image (float32, values in [0, 1]) with its gray levels changed, in
    this order, each None = off: x -> x^gamma; deviations from the image's mean x
    contrast_factor; + brightness_offset; + Gaussian noise of standard deviation
    noise_relative_sd x the image's (as it is then; drawn from rng). The result may leave
    [0, 1]."""
    image = np.asarray(image, dtype=np.float32)
    if gamma is not None:
        image = np.power(image, np.float32(gamma))
    if contrast_factor is not None:
        mean = np.float32(image.mean(dtype=np.float64))
        image = mean + np.float32(contrast_factor) * (image - mean)
    if brightness_offset is not None:
        image = image + np.float32(brightness_offset)
    if noise_relative_sd is not None:
        sd = float(noise_relative_sd) * float(image.std(dtype=np.float64))
        image = image + rng.normal(0.0, sd, image.shape).astype(np.float32)
    return image.astype(np.float32, copy=False)


def random_photometric(
    image: np.ndarray, augment: dict, rng: np.random.Generator
) -> tuple[np.ndarray, dict]:
    """The image through `photometric_transform` with values drawn from a validated
    `augment_photometric` block (null keys draw nothing), and the values drawn."""
    values = {
        key: None if augment[key] is None else float(sample(augment[key], rng))
        for key in PHOTOMETRIC_KEYS
    }
    return photometric_transform(image, rng, **values), values


@dataclass
class DatasetSplit:
    """The images and targets of one split (particle masks, column maps or exit waves, by the
    task), with their table rows."""

    images: object  # numpy array or io.StoredArray (read per item): (N_total, [C,] H, W) counts
    masks: object  # the task's targets, likewise: (N_total, H, W) in {0, 1} or (N_total, K, H, W)
    rows: np.ndarray  # indices into images/masks of this split, ascending
    table: pd.DataFrame  # the Parquet rows of this split, in the order of ``rows``
    task: str = "segmentation"
    attrs: dict | None = None  # the dataset's attributes (targets, focal series)
    # columns: the true columns of every image, rows [dataset row, y_px, x_px, class]
    column_positions: np.ndarray | None = None

    @property
    def image_shape(self) -> tuple[int, int]:
        return tuple(int(n) for n in self.images.shape[-2:])

    @property
    def in_channels(self) -> int:
        """Images per input: 1, or a focal series' length."""
        return 1 if len(self.images.shape) == 3 else int(self.images.shape[1])

    @property
    def out_channels(self) -> int:
        """The network's outputs: 2 logits (background, particle) or the target's channels."""
        return 2 if self.task == "segmentation" else int(self.masks.shape[1])

    def __len__(self) -> int:
        return len(self.rows)


def read_split(
    dataset_zarr: str | Path, dataset_parquet: str | Path, split: str, task: str = "segmentation"
) -> DatasetSplit:
    """The rows of ``split`` ('train' | 'validation' | 'test') with the targets of ``task``,
    checked against the arrays."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
    if task not in TASK_TARGETS:
        raise ValueError(f"task must be one of {sorted(TASK_TARGETS)}, not {task!r}")
    name = TASK_TARGETS[task]
    images, attrs = open_arrays(dataset_zarr, {"images": np.float32})
    images = images["images"]
    try:
        masks = open_arrays(dataset_zarr, {name: np.uint8 if name == "masks" else np.float32})[0]
    except ValueError as error:
        raise ValueError(f"{dataset_zarr}: no {task} targets ({error})") from None
    masks = masks[name]
    if len(images.shape) not in (3, 4):
        raise ValueError(f"{dataset_zarr}: images are {images.shape}, not (N, [C,] H, W)")
    if masks.shape[0] != images.shape[0] or masks.shape[-2:] != images.shape[-2:]:
        raise ValueError(f"{dataset_zarr}: images {images.shape} and {name} {masks.shape} differ")
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
    positions = None
    if task == "columns":
        positions = open_arrays(dataset_zarr, {"column_positions": np.float32})[0]
        positions = positions["column_positions"].read()
    item_bytes = 4 * int(np.prod(images.shape[1:])) + masks.dtype.itemsize * int(
        np.prod(masks.shape[1:])
    )
    if len(rows) and len(rows) * item_bytes <= IN_MEMORY_LIMIT_BYTES:
        # One read of the whole split is far cheaper than one Zarr request per image per epoch.
        images, masks = images.read(rows), masks.read(rows)
        if task == "segmentation" and masks.max() > 1:
            raise ValueError(
                f"{dataset_zarr}: masks must hold 0 (background) and 1 (particle) only"
            )
        return DatasetSplit(images, masks, np.arange(len(rows)), table, task, attrs, positions)
    return DatasetSplit(images, masks, rows, table, task, attrs, positions)


class SegmentationDataset(torch.utils.data.Dataset):
    """(normalized image (C, H, W) float32, target) pairs of one split: a particle mask (H, W)
    int64, or column maps / exit waves (K, H, W) float32 (the split's task).

    augment_d4: a random D4 symmetry of image and mask; augment_photometric: a models block's
    `augment_photometric` (None: off), gray-level changes of the image after its min-max
    normalization (`random_photometric`), the mask untouched. Both draw from ``rng``."""

    def __init__(
        self,
        split: DatasetSplit,
        augment_d4: bool = False,
        rng: np.random.Generator | None = None,
        augment_photometric: dict | None = None,
    ):
        self.split = split
        self.augment_d4 = augment_d4
        self.augment_photometric = augment_photometric
        # Drawn in the main process (num_workers=0): a seeded generator makes epochs reproducible.
        self.rng = rng if rng is not None else np.random.default_rng(0)

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int):
        row = int(self.split.rows[index])
        image = as_channels(normalize_min_max(self.split.images[row]))
        target_dtype = np.int64 if self.split.task == "segmentation" else np.float32
        mask = np.asarray(self.split.masks[row], dtype=target_dtype)
        if self.augment_d4:
            image, mask = random_d4(image, mask, self.rng)
        if self.augment_photometric is not None:
            image, _ = random_photometric(image, self.augment_photometric, self.rng)
        return torch.from_numpy(image), torch.from_numpy(mask)
