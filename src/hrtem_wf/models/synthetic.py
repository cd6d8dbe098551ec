"""A small synthetic dataset in the workflow's format (Zarr images + masks, Parquet table), for
tests and benchmarks that need training data without running the simulation stages."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import zarr


def write_synthetic_dataset(directory: Path, n_images: int = 24, size: int = 32, seed: int = 0):
    """A dataset in the workflow's format: bright fringed noisy disks (the mask) on a noisy
    background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    images = np.empty((n_images, size, size), np.float32)
    masks = np.empty((n_images, size, size), np.uint8)
    for i in range(n_images):
        center_y, center_x = rng.uniform(0.3 * size, 0.7 * size, 2)
        radius = rng.uniform(0.15 * size, 0.3 * size)
        disk = (yy - center_y) ** 2 + (xx - center_x) ** 2 < radius**2
        angle = rng.uniform(0, np.pi)
        fringes = np.cos(
            2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) / 3.0
        )  # lattice planes
        images[i] = rng.poisson(100.0 + disk * (60.0 + 30.0 * fringes)).astype(np.float32)
        masks[i] = disk
    group = zarr.open_group(str(directory / "toy.zarr"), mode="w")
    for name, data in (("images", images), ("masks", masks)):
        group.create_array(name, shape=data.shape, dtype=data.dtype, chunks=(1, size, size))
        group[name][:] = data
    n_held_out = max(2, n_images // 6)
    splits = (
        ["train"] * (n_images - 2 * n_held_out)
        + ["validation"] * n_held_out
        + ["test"] * n_held_out
    )
    table = pd.DataFrame(
        {
            "row": np.arange(n_images),
            "split": splits,
            "structure_id": [f"s{i // 2:03d}" for i in range(n_images)],
            "dose_e_per_A2": rng.uniform(400.0, 1000.0, n_images),
        }
    )
    table.to_parquet(directory / "toy.parquet")
    return str(directory / "toy.zarr"), str(directory / "toy.parquet")
