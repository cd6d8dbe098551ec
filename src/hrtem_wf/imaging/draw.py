"""Draw k noisy HRTEM images + particle masks from one structure's exit waves (one config block)."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from ..sampling import sample
from .aberrations import POLAR_SYMBOLS
from .formation import (
    as_wave_stack,
    check_crop,
    crop,
    crop_origin,
    detector_counts,
    intensity_from_spectrum,
    median_filter,
    resample_to_pixel_size,
    resampled_shape,
    wave_spectrum,
)
from .labels import LABEL_METHODS, mask_from_spectrum

FROZEN_PHONON_MODES = ("all", "single")


def _sampling_pair(sampling_A: float | tuple[float, float]) -> tuple[float, float]:
    pair = tuple(float(s) for s in np.broadcast_to(np.asarray(sampling_A, dtype=float), (2,)))
    if min(pair) <= 0:
        raise ValueError(f"sampling must be > 0 A, got {sampling_A}")
    return pair


def _settings(block: Mapping[str, Any], sampling_A: tuple[float, float]) -> dict[str, Any]:
    """Check the block once, before any FFT, and fill defaults for optional keys."""
    k = int(block["draws_per_structure"])
    if k < 0:
        raise ValueError(f"draws_per_structure must be >= 0, got {k}")
    phonon_mode = block.get("frozen_phonons", "all")
    if phonon_mode not in FROZEN_PHONON_MODES:
        raise ValueError(f"frozen_phonons must be one of {FROZEN_PHONON_MODES}, got {phonon_mode!r}")
    focal = block.get("focal_spread") or {}
    label = dict(block.get("label") or {})
    method = label.get("method", "phase")
    if method not in LABEL_METHODS:
        raise ValueError(f"label.method must be one of {LABEL_METHODS}, got {method!r}")
    if "threshold" not in label:
        raise ValueError("label.threshold is required (rad for phase, |I - 1| for intensity)")
    pixel_size = block.get("detector_pixel_size_A")
    if pixel_size is None:
        if sampling_A[0] != sampling_A[1]:
            raise ValueError("detector_pixel_size_A is required when the exit-wave sampling is "
                             f"not square ({sampling_A} A)")
        pixel_size = sampling_A[0]
    if float(pixel_size) <= 0:
        raise ValueError(f"detector_pixel_size_A must be > 0, got {pixel_size}")
    aberrations = dict(block.get("aberrations") or {})
    bad = sorted(set(aberrations) - (set(POLAR_SYMBOLS) - {"C10", "C30"}))
    if bad:
        raise ValueError(f"images.aberrations: unknown or duplicated coefficient(s) {bad} "
                         "(defocus and Cs have their own keys)")
    crop_px = block.get("crop_px")
    return {
        "k": k,
        "phonon_mode": phonon_mode,
        "sigma_spec": focal.get("sigma_A", 0.0),
        "samples": int(focal.get("samples", 1)),
        "extent_sigmas": float(focal.get("extent_sigmas", 3.0)),
        "pixel_size_A": float(pixel_size),
        "median_filter_px": int(block.get("median_filter_px") or 0),
        "crop_px": None if crop_px is None else (int(crop_px[0]), int(crop_px[1])),
        "label_method": method,
        "label_threshold": float(label["threshold"]),
        "smoothing_sigma_px": float(label.get("smoothing_sigma_px", 0.0)),
        "smoothing_threshold": float(label.get("smoothing_threshold", 0.5)),
        # sorted so the draw order does not depend on how the YAML mapping was written
        "aberration_specs": dict(sorted(aberrations.items())),
    }


def draw_images(full: np.ndarray, particle: np.ndarray, sampling_A: float | tuple[float, float],
                energy_eV: float, block: Mapping[str, Any], rng: np.random.Generator
                ) -> tuple[np.ndarray, np.ndarray, list[dict[str, Any]]]:
    """k = block['draws_per_structure'] images, masks and records from one structure.

    full, particle: exit waves (frozen_phonon, ny, nx), vacuum = 1 + 0j, sampled at
    sampling_A = (sy, sx) [A]; energy_eV: beam energy. Returns images float32 (k, H, W) counts
    after Poisson noise and the median filter, masks uint8 (k, H, W) in {0, 1}, and one dict per
    image with every drawn parameter (JSON-serializable scalars).
    """
    sampling_A = _sampling_pair(sampling_A)
    full = as_wave_stack(full)
    particle = as_wave_stack(particle)
    if full.shape != particle.shape:
        raise ValueError(f"full {full.shape} and particle {particle.shape} exit waves differ in shape")
    s = _settings(block, sampling_A)
    wave_shape = full.shape[1:]
    detector_shape = resampled_shape(wave_shape, sampling_A, s["pixel_size_A"])
    check_crop(detector_shape, s["crop_px"])  # fail before any FFT
    if s["phonon_mode"] == "single":
        full, particle = full[:1], particle[:1]
    n_phonons = full.shape[0]
    # Forward FFTs once: every draw only changes the lens, so the spectra are shared.
    full_spectrum = wave_spectrum(full)
    particle_spectrum = wave_spectrum(particle)
    out_shape = detector_shape if s["crop_px"] is None else s["crop_px"]

    images = np.empty((s["k"], *out_shape), dtype=np.float32)
    masks = np.empty((s["k"], *out_shape), dtype=np.uint8)
    records: list[dict[str, Any]] = []
    for index in range(s["k"]):
        # Parameters first, in a fixed order, then the noise and the crop.
        defocus = float(sample(block["defocus_A"], rng))
        cs = float(sample(block.get("spherical_aberration_A", 0.0), rng))
        sigma = float(sample(s["sigma_spec"], rng))
        dose = float(sample(block["dose_e_per_A2"], rng))
        aberrations = {sym: float(sample(spec, rng)) for sym, spec in s["aberration_specs"].items()}

        noise_free = intensity_from_spectrum(full_spectrum, sampling_A, energy_eV, defocus, cs,
                                             sigma, s["samples"], s["extent_sigmas"], aberrations)
        noise_free = resample_to_pixel_size(noise_free, sampling_A, s["pixel_size_A"])
        counts = detector_counts(noise_free, dose, s["pixel_size_A"], rng)
        counts = median_filter(counts, s["median_filter_px"])

        mask = mask_from_spectrum(particle_spectrum, sampling_A, energy_eV, defocus, cs,
                                  s["label_method"], s["label_threshold"],
                                  s["smoothing_sigma_px"], s["smoothing_threshold"], aberrations)
        # Same resampling as the image (linear), back to binary at one half.
        mask = resample_to_pixel_size(mask.astype(np.float32), sampling_A, s["pixel_size_A"]) > 0.5

        origin = crop_origin(detector_shape, s["crop_px"], rng)
        images[index] = crop(counts, origin, s["crop_px"])
        masks[index] = crop(mask, origin, s["crop_px"])

        record = {
            "image_index": index,
            "energy_eV": float(energy_eV),
            "defocus_A": defocus,
            "spherical_aberration_A": cs,
            "focal_spread_sigma_A": sigma,
            "focal_spread_samples": s["samples"],
            "focal_spread_extent_sigmas": s["extent_sigmas"],
            "dose_e_per_A2": dose,
            "expected_counts_per_px": dose * s["pixel_size_A"] ** 2,
            "wave_sampling_y_A": sampling_A[0],
            "wave_sampling_x_A": sampling_A[1],
            "pixel_size_A": s["pixel_size_A"],
            "detector_height_px": int(detector_shape[0]),
            "detector_width_px": int(detector_shape[1]),
            "median_filter_px": s["median_filter_px"],
            "crop_y0_px": origin[0],
            "crop_x0_px": origin[1],
            "crop_height_px": int(out_shape[0]),
            "crop_width_px": int(out_shape[1]),
            "frozen_phonons": s["phonon_mode"],
            "frozen_phonons_used": int(n_phonons),
            "label_method": s["label_method"],
            "label_threshold": s["label_threshold"],
            "label_smoothing_sigma_px": s["smoothing_sigma_px"],
            "label_smoothing_threshold": s["smoothing_threshold"],
            "mean_counts": float(images[index].mean(dtype=np.float64)),
            "particle_fraction": float(masks[index].mean(dtype=np.float64)),
        }
        record.update({f"aberration_{sym}": value for sym, value in aberrations.items()})
        records.append(record)
    return images, masks, records
