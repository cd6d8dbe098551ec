"""Training images drawn on the fly from stored exit waves (Madsen et al. 2018; DeepTrack 2).

A models block with `on_the_fly` trains on images drawn while it trains: every epoch, every
training image is a fresh draw of an images block (lens, focal spread, plasmons, blur, dose,
detector, crop: all the images rule draws), made by the images rule's own code
(`draw_images_from_spectra`) from the simulation store of one training structure. The dataset
still decides which structures train (its curation and its split by structure) and supplies the
validation and test images, fixed draws written by the images rule.

Image `repeat` of structure `structure_id` in epoch `epoch` is drawn, and augmented, from
generators seeded by (model seed, epoch, structure_id, repeat) (`image_seed`): a run is
reproducible, a draw depends neither on the number of loader workers nor on which other
structures train, and epoch 0 is one fixed draw (the BatchNorm-statistics set). Each image is
its own draw (one lens, dose and detector per image), so `sequence` distributions, which number
the draws of one structure, have no place in the block.

A column or exit-wave model draws its targets with each image, from the same draw's record, by
the images rule's own `image_targets`: column confidence maps from the training structure's
projected columns (read once, from the structure file the simulation store names) and exit waves
from the stored frozen phonons. A focal series is drawn as the images rule draws it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from hrtem_wf.images.columns import Columns
from hrtem_wf.images.draw import draw_images_from_spectra, exit_wave_spectra
from hrtem_wf.images.targets import image_targets, structure_columns
from hrtem_wf.io import StoreError, read_arrays
from hrtem_wf.sampling import derive_seed

from .data import TASK_TARGETS, as_channels, normalize_min_max, random_d4, random_photometric

#: The images block's `targets` key each task draws (segmentation: the particle mask, always).
TASK_TARGET_KEYS = {"segmentation": None, "columns": "columns", "exit_wave": "exit_wave"}

#: BatchNorm statistics come from a fixed draw (epoch 0) of at most this many training images.
STATISTICS_IMAGES = 1024


def image_seed(
    model_seed: int, epoch: int, structure_id: str, repeat: int, stream: str = ""
) -> int:
    """The seed of one drawn training image: (model seed, epoch, structure, repeat) only."""
    return derive_seed(model_seed, "on_the_fly", epoch, f"{structure_id}|{int(repeat)}|{stream}")


def single_draw(image_spec: dict) -> dict:
    """The images block drawing one image per call: each training image its own lens."""
    return {**image_spec, "draws_per_structure": 1, "focal_points": None}


@dataclass
class StoredWaves:
    """One training structure's exit-wave spectra (the phonons the images block uses)."""

    structure_id: str
    full_spectrum: object  # numpy or CuPy, (phonon, ny, nx) complex64
    particle_spectrum: object
    sampling_A: tuple[float, float]
    energy_eV: float
    material: str | None
    full: np.ndarray | None = None  # the frozen phonons' waves, for exit-wave targets
    columns: Columns | None = None  # the structure's projected columns, for column targets

    @property
    def nbytes(self) -> int:
        waves = 0 if self.full is None else self.full.nbytes
        return int(self.full_spectrum.nbytes + self.particle_spectrum.nbytes + waves)


def read_waves(
    store: str | Path, structure_id: str, image_spec: dict, task: str = "segmentation"
) -> StoredWaves:
    """The spectra of the simulation store of `structure_id`, checked to be that structure's,
    with what the `task`'s targets are made from (the waves, the structure's columns)."""
    waves, attrs = read_arrays(
        store, {"full": np.complex64, "particle": np.complex64}, items_attr="frozen_phonons"
    )
    if attrs.get("structure_id") != structure_id:
        raise StoreError(
            f"{store}: holds structure {attrs.get('structure_id')!r}, not {structure_id!r} "
            "(is it the simulations block the dataset's images were drawn from?)"
        )
    full, particle = exit_wave_spectra(waves["full"], waves["particle"], image_spec)
    columns = None
    if task == "columns":
        structure = Path(attrs["structure"]["path"])
        if not structure.is_file():
            raise StoreError(
                f"{store}: its structure file {structure} is missing (column targets are drawn "
                "from it; run the workflow from the folder that holds results/)"
            )
        columns = structure_columns(structure, image_spec["targets"]["columns"])
    return StoredWaves(
        structure_id,
        full,
        particle,
        tuple(float(s) for s in attrs["sampling_A"]),
        float(attrs["energy_eV"]),
        attrs["structure"]["info"].get("material"),
        full=waves["full"] if task == "exit_wave" else None,
        columns=columns,
    )


def training_stores(table: pd.DataFrame, simulations_dir: str | Path) -> list[tuple[str, Path]]:
    """(structure id, simulation store) of every structure of a dataset split's table, in the
    order of first appearance. A simulation store and the image stores of its structure share
    their item name (results/<stage>/<block>/<item>.zarr); `read_waves` checks the id."""
    first = table.drop_duplicates("structure_id")
    return [
        (str(sid), Path(simulations_dir) / Path(store).name)
        for sid, store in zip(first["structure_id"], first["image_store"])
    ]


class ExitWaveCache:
    """The training structures' spectra: read and transformed once and kept in memory while they
    fit in `budget_bytes` (`preload`, before loader workers fork, so they share the pages); the
    others are read again for each draw."""

    def __init__(
        self,
        stores: list[tuple[str, Path]],
        image_spec: dict,
        budget_bytes: float,
        task: str = "segmentation",
    ):
        self.stores, self.image_spec = list(stores), image_spec
        self.budget_bytes, self.task = float(budget_bytes), task
        self.kept: dict[int, StoredWaves] = {}

    def __len__(self) -> int:
        return len(self.stores)

    def preload(self) -> int:
        """Keep structures in memory, in order, while the budget lasts; returns how many."""
        used = sum(w.nbytes for w in self.kept.values())
        for index in range(len(self.stores)):
            if index in self.kept:
                continue
            waves = self.waves(index)
            if used + waves.nbytes > self.budget_bytes:
                break
            self.kept[index], used = waves, used + waves.nbytes
        return len(self.kept)

    def waves(self, index: int) -> StoredWaves:
        if index in self.kept:
            return self.kept[index]
        structure_id, store = self.stores[index]
        return read_waves(store, structure_id, self.image_spec, self.task)


class OnTheFlyImages(torch.utils.data.Dataset):
    """(normalized image (C, H, W) float32, target, record) of the training structures, drawn
    afresh for the epoch `set_epoch` gave: item i is image i % per_structure of structure
    i // per_structure. The target is the cache's task's: a particle mask (H, W) int64, column
    maps or an exit wave (K, H, W) float32. augment_d4 (of image and target together) and
    augment_photometric as in SegmentationDataset, drawn from the image's own generator."""

    def __init__(
        self,
        cache: ExitWaveCache,
        image_spec: dict,
        images_per_structure: int,
        model_seed: int,
        augment_d4: bool = False,
        augment_photometric: dict | None = None,
    ):
        self.cache, self.spec = cache, single_draw(image_spec)
        self.images_per_structure = int(images_per_structure)
        self.model_seed = int(model_seed)
        self.augment_d4, self.augment_photometric = augment_d4, augment_photometric
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.cache) * self.images_per_structure

    def draw(self, epoch: int, index: int) -> tuple[np.ndarray, np.ndarray, dict]:
        """Raw counts ([C,] H, W) float32, target (the mask (H, W) uint8, or the task's (K, H, W)
        float32) and record of image `index` of `epoch`: what the images rule writes for this
        structure with this seed and one draw."""
        structure, repeat = divmod(int(index), self.images_per_structure)
        waves = self.cache.waves(structure)
        seed = image_seed(self.model_seed, epoch, waves.structure_id, repeat)
        images, masks, records = draw_images_from_spectra(
            waves.full_spectrum,
            waves.particle_spectrum,
            waves.sampling_A,
            waves.energy_eV,
            self.spec,
            np.random.default_rng(seed),
            waves.material,
        )
        record = {
            "epoch": int(epoch),
            "structure_id": waves.structure_id,
            "repeat": repeat,
            "image_seed": seed,
            **{f"image.{key}": value for key, value in records[0].items()},
        }
        task = self.cache.task
        if TASK_TARGET_KEYS[task] is None:
            return images[0], masks[0], record
        key = TASK_TARGET_KEYS[task]
        arrays = image_targets(
            {key: self.spec["targets"][key]},
            waves.full,
            waves.sampling_A,
            records,
            waves.columns,
            wave_shape=tuple(waves.full_spectrum.shape[-2:]),
        )
        return images[0], arrays[TASK_TARGETS[task]][0], record

    def __getitem__(self, index: int):
        image, mask, record = self.draw(self.epoch, index)
        dtype = np.int64 if self.cache.task == "segmentation" else np.float32
        image, mask = as_channels(normalize_min_max(image)), np.asarray(mask, dtype=dtype)
        if self.augment_d4 or self.augment_photometric is not None:
            rng = np.random.default_rng(
                image_seed(
                    self.model_seed, self.epoch, record["structure_id"], record["repeat"], "augment"
                )
            )
            if self.augment_d4:
                image, mask = random_d4(image, mask, rng)
            if self.augment_photometric is not None:
                image, values = random_photometric(image, self.augment_photometric, rng)
                record.update({f"augment.{key}": value for key, value in values.items()})
        return torch.from_numpy(image), torch.from_numpy(mask), record


def collate_drawn(batch):
    """(images (B, C, H, W), targets (B, [K,] H, W), records) of a batch of OnTheFlyImages
    items."""
    images, masks, records = zip(*batch)
    return torch.stack(images), torch.stack(masks), list(records)


def statistics_images(dataset: OnTheFlyImages, workers: int) -> torch.utils.data.TensorDataset:
    """The fixed BatchNorm-statistics set: epoch 0's draw (no augmentation) of at most
    STATISTICS_IMAGES training images, evenly spread over the items, held in memory."""
    plain = OnTheFlyImages(
        dataset.cache, dataset.spec, dataset.images_per_structure, dataset.model_seed
    )
    plain.set_epoch(0)
    count = min(len(plain), STATISTICS_IMAGES)
    chosen = np.unique(np.linspace(0, len(plain) - 1, count).round().astype(int))
    loader = torch.utils.data.DataLoader(
        torch.utils.data.Subset(plain, chosen.tolist()),
        batch_size=16,
        num_workers=workers,
        collate_fn=collate_drawn,
    )
    images = torch.cat([batch[0] for batch in loader])
    return torch.utils.data.TensorDataset(images, torch.zeros(len(images), dtype=torch.uint8))


def drawn_table(records: list[dict], split_table: pd.DataFrame) -> pd.DataFrame:
    """The drawn training images' records (one row per image per epoch) with their structure's
    columns from the dataset's table (structure.*, simulation.*)."""
    drawn = pd.DataFrame(records)
    if drawn.empty:
        return drawn
    upstream = [c for c in split_table.columns if c.startswith(("structure.", "simulation."))]
    per_structure = split_table.drop_duplicates("structure_id")[["structure_id", *upstream]]
    return drawn.merge(per_structure, on="structure_id", how="left")


__all__ = [
    "ExitWaveCache",
    "OnTheFlyImages",
    "STATISTICS_IMAGES",
    "TASK_TARGET_KEYS",
    "collate_drawn",
    "drawn_table",
    "image_seed",
    "read_waves",
    "single_draw",
    "statistics_images",
    "training_stores",
]
