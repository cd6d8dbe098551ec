"""What an image store holds besides the particle mask: the targets of an images block's
`targets`, made per image from the structure and the exit waves already on disk, at the image's
own pixel size and crop (read from its record, so they follow every drawn detector).

columns    (Madsen et al. 2018) confidence maps (k, C + 1, H, W): a Gaussian of sigma_A at each
           projected particle column of class c in channel c, the background (1 - max) last;
           and the columns themselves, (M, 4) rows [image, y_px, x_px, class] inside the crops,
           for evaluation by matching (hrtem_wf.evaluations.columns).
exit_wave  (Larsen et al. 2023) the exit wave (k, 2, H, W) = (real, imaginary): the mean of the
           frozen phonons' complex waves the images used (the coherent wave, as a
           Debye-Waller-smeared potential gives), low-passed with a Gaussian of
           low_pass_sigma_A (Larsen: 15 pm), resampled to the image's pixels and cropped as it.

Geometry: that of image formation (hrtem_wf.images.columns, module docstring); the cell is
periodic, so columns within reach of a crop's edge from a neighbouring cell count too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .columns import (
    Columns,
    column_classes,
    confidence_maps,
    pixel_coordinates,
    projected_columns,
)
from .formation import as_wave_stack, crop, resample_to_pixel_size

#: The periodic images of the cell a crop can see columns of.
_NEIGHBOUR_CELLS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]


def _detector(record: Mapping[str, Any]):
    """(detector shape, crop origin, crop shape) of an image, from its record."""
    shape = (int(record["detector_height_px"]), int(record["detector_width_px"]))
    origin = (int(record["crop_y0_px"]), int(record["crop_x0_px"]))
    crop_px = (int(record["crop_height_px"]), int(record["crop_width_px"]))
    return shape, origin, crop_px


def column_targets(
    columns: Columns,
    spec: Mapping[str, Any],
    records: Sequence[Mapping[str, Any]],
    sampling_A: tuple[float, float],
    wave_shape: tuple[int, int],
) -> tuple[np.ndarray, np.ndarray]:
    """(maps (k, C + 1, H, W) float32, positions (M, 4) float32) of an images block's
    `targets.columns` spec for the images of `records`, the exit waves being `wave_shape` at
    `sampling_A`. Columns of no class (-1) are left out of both."""
    names = list(spec["classes"]["names"])
    classes = column_classes(columns, spec["classes"]["kind"], names)
    keep = classes >= 0
    yx_A, classes = columns.yx_A[keep], classes[keep]
    extent_A = (wave_shape[0] * sampling_A[0], wave_shape[1] * sampling_A[1])
    maps, positions = [], []
    for index, record in enumerate(records):
        shape, origin, crop_px = _detector(record)
        yx = pixel_coordinates(yx_A, sampling_A, extent_A, shape, origin)
        copies = np.concatenate([yx + np.multiply((dy, dx), shape) for dy, dx in _NEIGHBOUR_CELLS])
        copy_classes = np.tile(classes, len(_NEIGHBOUR_CELLS))
        pixel_A = float(np.mean(np.divide(extent_A, shape)))
        maps.append(
            confidence_maps(copies, copy_classes, len(names), crop_px, spec["sigma_A"] / pixel_A)
        )
        inside = np.all((copies >= -0.5) & (copies < np.subtract(crop_px, 0.5)), axis=1)
        rows = np.column_stack([np.full(inside.sum(), index), copies[inside], copy_classes[inside]])
        positions.append(rows)
    return (
        np.asarray(maps, np.float32),
        np.concatenate(positions).astype(np.float32) if positions else np.zeros((0, 4), np.float32),
    )


def low_pass(wave: np.ndarray, sampling_A: tuple[float, float], sigma_A: float) -> np.ndarray:
    """The periodic wave convolved with a normalized Gaussian of `sigma_A` (0: unchanged):
    its spectrum times exp(-2 pi^2 sigma^2 k^2)."""
    if sigma_A <= 0:
        return wave
    ky = np.fft.fftfreq(wave.shape[0], sampling_A[0])[:, None]
    kx = np.fft.fftfreq(wave.shape[1], sampling_A[1])[None, :]
    envelope = np.exp(-2 * np.pi**2 * sigma_A**2 * (ky**2 + kx**2))
    return np.fft.ifft2(np.fft.fft2(wave) * envelope).astype(wave.dtype)


def coherent_wave(full: np.ndarray, phonons_used: int) -> np.ndarray:
    """The mean complex exit wave (ny, nx) of the first `phonons_used` frozen phonons."""
    return as_wave_stack(full)[:phonons_used].mean(axis=0, dtype=np.complex128)


def exit_wave_targets(
    full: np.ndarray,
    spec: Mapping[str, Any],
    records: Sequence[Mapping[str, Any]],
    sampling_A: tuple[float, float],
) -> np.ndarray:
    """(k, 2, H, W) float32: the images' exit-wave targets (module docstring) of an images
    block's `targets.exit_wave` spec."""
    if not records:
        return np.zeros((0, 2, 0, 0), np.float32)
    wave = coherent_wave(full, int(records[0]["frozen_phonons_used"]))
    wave = low_pass(wave, sampling_A, float(spec["low_pass_sigma_A"]))
    parts = np.stack([wave.real, wave.imag])
    resampled: dict[float, np.ndarray] = {}
    targets = []
    for record in records:
        pixel_size_A = float(record["pixel_size_A"])
        if pixel_size_A not in resampled:
            resampled[pixel_size_A] = np.stack(
                [resample_to_pixel_size(part, sampling_A, pixel_size_A) for part in parts]
            )
        _, origin, crop_px = _detector(record)
        targets.append(crop(resampled[pixel_size_A].transpose(1, 2, 0), origin, crop_px))
    return np.asarray(targets, np.float32).transpose(0, 3, 1, 2)


def structure_columns(structure: str, columns_spec: Mapping[str, Any]) -> Columns:
    """The projected columns of a simulated structure (extxyz) under a `targets.columns` spec."""
    import ase.io

    return projected_columns(ase.io.read(structure, format="extxyz"), columns_spec["tolerance_A"])


def image_targets(
    targets: Mapping[str, Any],
    full: np.ndarray | None,
    sampling_A: tuple[float, float],
    records: Sequence[Mapping[str, Any]],
    columns: Columns | None = None,
    wave_shape: tuple[int, int] | None = None,
) -> dict[str, np.ndarray]:
    """The arrays of an images block's `targets` for the draws of `records`, as the images rule
    stores them: `column_maps` and `column_positions` of the structure's `columns`
    (`structure_columns`, needed by targets.columns) and `exit_waves` of the exit waves `full`
    (frozen phonons, H, W) at `sampling_A`; `wave_shape` (H, W) where `full` is not needed
    (None: columns only). The images rule and on-the-fly training (hrtem_wf.models.on_the_fly)
    both make their targets here."""
    arrays = {}
    if targets.get("columns") is not None:
        if columns is None:
            raise ValueError("targets.columns needs the structure's columns")
        shape = full.shape[-2:] if wave_shape is None else wave_shape
        maps, positions = column_targets(columns, targets["columns"], records, sampling_A, shape)
        arrays |= {"column_maps": maps, "column_positions": positions}
    if targets.get("exit_wave") is not None:
        arrays["exit_waves"] = exit_wave_targets(full, targets["exit_wave"], records, sampling_A)
    return arrays
