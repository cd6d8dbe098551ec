"""Draw k noisy HRTEM images + particle masks from one structure's exit waves (one config block).

The block's keys, each an effect that can be switched off (see config/config.yaml):
  focal_points                   distinct lenses per structure (default: one per draw); each is
                                 imaged draws_per_structure / focal_points times
  defocus_A                      distribution (`sequence`: indexed by focal point); abTEM sign
                                 (positive = underfocus)
  aberrations                    preset (none | team05_table_s1), coefficients (abTEM symbols,
                                 A / rad, distributions), magnitude_scale, rotation_shift_rad
  focal_spread                   method (incoherent | quasi_coherent), sigma_A (the defocus
                                 standard deviation), samples, extent_sigmas
  objective_aperture_mrad        null (none) or distribution: the aperture's semi-angle, abTEM's
                                 soft edge, on the full and the particle (label) wave alike
  illumination_semiangle_mrad    distribution, 0 = coherent: the spatial-coherence envelope
                                 exp(-(alpha / 2)^2 |grad_alpha chi|^2) (abTEM's angular_spread),
                                 per defocus sample; the label has none
  frozen_phonons                 all | single
  plasmons                       null, or weight and background (distributions)
  blur_A                         distribution, 0 = none: Gaussian image blur (vibration, drift)
                                 of the noise-free image, sigma in A, drawn per image
  dose_e_per_A2                  distribution (`sequence`: indexed by the repeat of the lens)
  detector                       pixel_size_A, mtf (null or c1, c2, c3), blur_sigma_px: each a
                                 number or a distribution drawn per image (a drawn pixel size
                                 resamples the noise-free image and the label mask alike, then
                                 crop_px crops them); median_filter_px
  crop_px                        [height, width] or null
  focal_series                   null, or offsets_A: images (k, len(offsets), H, W), one per
                                 offset of the drawn defocus, each its own noise draw
  label                          method (phase | intensity), threshold (a number, or one per
                                 material), smoothing_sigma_px, smoothing_threshold, lens (image:
                                 after the image's lens | none: the footprint at focus), grow_A
  device                         cpu | gpu: where the FFTs run
Every drawn value goes into the image's record (one row of the dataset's Parquet table), and
with it the block's nominal pixel size (the median of detector.pixel_size_A), which a model
trained on the images resamples micrographs to. Fixed numbers draw nothing from the generator,
so a block without a distribution keeps its random stream.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..calibration_keys import calibrations_asked
from ..sampling import nominal, sample, support
from .aberrations import POLAR_SYMBOLS, draw_aberrations
from .backend import to_device, to_host
from .formation import (
    apply_mtf,
    as_wave_stack,
    check_crop,
    crop,
    crop_origin,
    detector_counts,
    gaussian_blur,
    image_blur,
    intensity,
    median_filter,
    resample_to_pixel_size,
    resampled_shape,
    wave_spectrum,
)
from .labels import particle_mask
from .lens import Lens

#: images float32 (k, H, W) or (k, n_offsets, H, W), masks uint8 (k, H, W), one record per image
DrawnImages = tuple[np.ndarray, np.ndarray, list[dict[str, Any]]]


def _sampling_pair(sampling_A: float | tuple[float, float]) -> tuple[float, float]:
    pair = tuple(float(s) for s in np.broadcast_to(np.asarray(sampling_A, dtype=float), (2,)))
    if min(pair) <= 0:
        raise ValueError(f"sampling must be > 0 A, got {sampling_A}")
    return pair


def label_threshold(label: Mapping[str, Any], material: str | None) -> float:
    """The label threshold: one number, or one per material (e.g. {Au: 0.26, CdSe: 0.15})."""
    threshold = label["threshold"]
    if isinstance(threshold, Mapping):
        if material not in threshold:
            raise ValueError(
                f"label.threshold has no entry for material {material!r} (has {sorted(threshold)})"
            )
        threshold = threshold[material]
    return float(threshold)


def exit_wave_spectra(full: np.ndarray, particle: np.ndarray, block: Mapping[str, Any]):
    """(full, particle) spectra of the phonons an images block uses, on its device: the one
    forward FFT per phonon that every draw of the structure shares (and that on-the-fly training
    keeps in memory)."""
    full, particle = as_wave_stack(full), as_wave_stack(particle)
    if full.shape != particle.shape:
        raise ValueError(
            f"full {full.shape} and particle {particle.shape} exit waves differ in shape"
        )
    if block["frozen_phonons"] == "single":
        full, particle = full[:1], particle[:1]
    return (
        wave_spectrum(to_device(full, block["device"])),
        wave_spectrum(to_device(particle, block["device"])),
    )


def draw_lens(
    block: Mapping[str, Any], rng: np.random.Generator, energy_eV: float, focal_point: int
) -> Lens:
    """The lens of one focal point, drawn once and imaged by all its repeats: defocus (a
    `sequence` indexed by the focal point), aberrations, focal-spread sigma, objective aperture,
    illumination semi-angle, in that order. null and fixed numbers draw nothing: blocks without
    these effects keep their random stream."""
    focal = block["focal_spread"]
    defocus = float(sample(block["defocus_A"], rng, index=focal_point))
    aberrations = draw_aberrations(block["aberrations"], rng)
    sigma = float(sample(focal["sigma_A"], rng))
    aperture = block["objective_aperture_mrad"]
    aperture = None if aperture is None else float(sample(aperture, rng))
    illumination = block["illumination_semiangle_mrad"]
    illumination = 0.0 if illumination is None else float(sample(illumination, rng))
    return Lens(
        energy_eV=energy_eV,
        defocus_A=defocus,
        aberrations=aberrations,
        focal_spread_sigma_A=sigma,
        focal_spread_method=focal["method"],
        focal_spread_samples=int(focal["samples"]),
        focal_spread_extent_sigmas=float(focal["extent_sigmas"]),
        objective_aperture_mrad=aperture,
        illumination_semiangle_mrad=illumination,
    )


def draw_images(
    full: np.ndarray,
    particle: np.ndarray,
    sampling_A: float | tuple[float, float],
    energy_eV: float,
    block: Mapping[str, Any],
    rng: np.random.Generator,
    material: str | None = None,
) -> DrawnImages:
    """k = block['draws_per_structure'] images, masks and records from one structure.

    full, particle: exit waves (frozen_phonon, ny, nx), vacuum = 1 + 0j, sampled at
    sampling_A = (sy, sx) [A]; energy_eV: beam energy; material: the particle's (for a
    per-material label threshold). Returns images float32 (k, H, W) counts after the detector,
    masks uint8 (k, H, W) in {0, 1}, and one dict per image with every drawn parameter; with a
    `focal_series`, images are (k, n_offsets, H, W).
    The forward FFT of each phonon is done once and shared by all k draws.
    """
    return draw_images_from_spectra(
        *exit_wave_spectra(full, particle, block), sampling_A, energy_eV, block, rng, material
    )


def calibrated_spec(spec: dict, calibration: dict | None) -> dict:
    """The images block `spec` with its `{calibrate: <real set>}` values (label.grow_A, blur_A,
    dose_e_per_A2) replaced by what the `calibration` rule measured against that real set (its JSON,
    hrtem_wf.images.calibration); a spec asking for none stays as it is; one asking without
    `calibration`, or with one measured against another real set, is refused."""
    asked = calibrations_asked(spec)
    for key, value in asked.items():
        if calibration is None:
            raise ValueError(
                f"{key} {dict(value)} is measured by the `calibration` rule: give its JSON "
                "(--calibration-json)"
            )
        if calibration.get("real_set") != value["calibrate"]:
            raise ValueError(
                f"{key} calibrates against {value['calibrate']!r}, but the calibration given "
                f"was measured against {calibration.get('real_set')!r}"
            )
    if not asked:
        return spec
    spec = {**spec, "label": dict(spec["label"])}
    if "label.grow_A" in asked:
        spec["label"]["grow_A"] = float(calibration["grow_A"])
    if "blur_A" in asked:
        spec["blur_A"] = calibration["blur_A"]
    if "dose_e_per_A2" in asked:
        spec["dose_e_per_A2"] = calibration["dose_e_per_A2"]
    return spec


def draw_images_from_spectra(
    full_spectrum, particle_spectrum, sampling_A, energy_eV, block, rng, material=None
) -> DrawnImages:
    """`draw_images` from the spectra `exit_wave_spectra` returns (numpy or CuPy); the other
    arguments as draw_images's."""
    sampling_A = _sampling_pair(sampling_A)
    k = int(block["draws_per_structure"])
    detector, label = block["detector"], block["label"]
    smallest_pixel_size_A, largest_pixel_size_A = support(detector["pixel_size_A"])
    nominal_pixel_size_A = nominal(detector["pixel_size_A"])
    crop_px = None if block["crop_px"] is None else tuple(int(c) for c in block["crop_px"])
    threshold = label_threshold(label, material)
    unresolved = calibrations_asked(block)
    if unresolved:
        raise ValueError(
            f"{', '.join(unresolved)} {list(map(dict, unresolved.values()))} not drawn yet: "
            "resolve them with the calibration's JSON first (calibrated_spec)"
        )
    if crop_px is None and smallest_pixel_size_A != largest_pixel_size_A:
        raise ValueError("a drawn detector.pixel_size_A needs crop_px: images of one shape")
    wave_shape = tuple(int(n) for n in full_spectrum.shape[1:])
    # The largest pixel size gives the smallest detector image: fail before any image.
    smallest_detector_shape = resampled_shape(wave_shape, sampling_A, largest_pixel_size_A)
    check_crop(smallest_detector_shape, crop_px)
    mtf = detector["mtf"]
    out_shape = smallest_detector_shape if crop_px is None else crop_px  # one pixel size if None

    def label_mask(lens: Lens) -> np.ndarray:
        mask = particle_mask(
            particle_spectrum,
            sampling_A,
            lens,
            label["method"],
            threshold,
            float(label["smoothing_sigma_px"]),
            float(label["smoothing_threshold"]),
            grow_A=float(label["grow_A"]),
        )
        # Resampled as the image (linear) per image, back to binary at one half.
        return mask.astype(np.float32)

    # lens none: the footprint at focus without aberrations or aperture, one for every lens.
    footprint = label_mask(Lens(energy_eV)) if label["lens"] == "none" else None

    focal_points = int(block["focal_points"] or k)
    per_focal_point = k // focal_points if k else 0
    series = block.get("focal_series")
    offsets_A = [0.0] if series is None else [float(o) for o in series["offsets_A"]]
    channels = () if series is None else (len(offsets_A),)
    images = np.empty((k, *channels, *out_shape), dtype=np.float32)
    masks = np.empty((k, *out_shape), dtype=np.uint8)
    records: list[dict[str, Any]] = []
    noise_free_of = resampled_of = mask_of = None
    for index in range(k):
        focal_point, repeat = divmod(index, per_focal_point)
        if repeat == 0:
            # The lens of this focal point: drawn once, imaged per_focal_point times.
            lens = draw_lens(block, rng, energy_eV, focal_point)
            # On the wave grid; resampled with the image to its pixel size below.
            label_on_wave_grid = footprint if footprint is not None else label_mask(lens)
        # Per image: plasmons, dose, blur, the detector, then the noise and the crop.
        plasmon = None
        if block["plasmons"] is not None:
            plasmon = (
                float(sample(block["plasmons"]["weight"], rng)),
                float(sample(block["plasmons"]["background"], rng)),
            )
        dose = float(sample(block["dose_e_per_A2"], rng, index=repeat))
        blur_A = float(sample(block["blur_A"], rng))
        # The detector, per image (Madsen 2018 jitters the sampling of every image).
        pixel_size_A = float(sample(detector["pixel_size_A"], rng))
        mtf_c = None if mtf is None else [float(sample(mtf[c], rng)) for c in ("c1", "c2", "c3")]
        blur_sigma_px = float(sample(detector["blur_sigma_px"], rng))
        detector_shape = resampled_shape(wave_shape, sampling_A, pixel_size_A)
        # The noise-free image depends on the lens and the plasmon draw only: repeats of a focal
        # point share it unless their plasmon parameters differ (or their pixel sizes).
        # A focal series: one noise-free image per offset of the drawn defocus.
        if (focal_point, plasmon) != noise_free_of:
            noise_free_of, resampled_of = (focal_point, plasmon), None
            noise_free_on_wave_grid = [
                to_host(
                    intensity(
                        full_spectrum,
                        sampling_A,
                        lens.at_defocus(lens.defocus_A + offset_A),
                        plasmon=plasmon,
                    )
                )
                for offset_A in offsets_A
            ]
        if pixel_size_A != resampled_of:
            resampled_of = pixel_size_A
            noise_free = [
                resample_to_pixel_size(channel, sampling_A, pixel_size_A)
                for channel in noise_free_on_wave_grid
            ]
        if (focal_point, pixel_size_A) != mask_of:
            mask_of = (focal_point, pixel_size_A)
            mask = resample_to_pixel_size(label_on_wave_grid, sampling_A, pixel_size_A) > 0.5
        series_counts = []
        for channel in noise_free:  # the noise is drawn per image of a series
            counts = detector_counts(
                image_blur(channel, blur_A, pixel_size_A), dose, pixel_size_A, rng
            )
            if mtf_c is not None:
                counts = apply_mtf(counts, *mtf_c)
            counts = gaussian_blur(counts, blur_sigma_px)
            series_counts.append(median_filter(counts, int(detector["median_filter_px"])))

        origin = crop_origin(detector_shape, crop_px, rng)
        cropped = [crop(counts, origin, crop_px) for counts in series_counts]
        images[index] = cropped[0] if series is None else np.stack(cropped)
        masks[index] = crop(mask, origin, crop_px)

        coefficients = lens.coefficients
        record = {
            "image_index": index,
            "focal_point": focal_point,
            "device": block["device"],
            "material": material,
            "energy_eV": float(energy_eV),
            "defocus_A": lens.defocus_A,
            # the series' images are at defocus_A + each offset, in channel order
            "focal_series_offsets_A": None if series is None else offsets_A,
            "aberration_preset": block["aberrations"]["preset"],
            **{
                f"aberration_{symbol}": coefficients[symbol]
                for symbol in POLAR_SYMBOLS
                if symbol != "C10"
            },
            "focal_spread_method": lens.focal_spread_method,
            "focal_spread_sigma_A": lens.focal_spread_sigma_A,
            "focal_spread_samples": lens.focal_spread_samples,
            "focal_spread_extent_sigmas": lens.focal_spread_extent_sigmas,
            # null in the Parquet table: no aperture
            "objective_aperture_mrad": lens.objective_aperture_mrad,
            "illumination_semiangle_mrad": lens.illumination_semiangle_mrad,
            "blur_A": blur_A,
            "frozen_phonons": block["frozen_phonons"],
            "frozen_phonons_used": int(full_spectrum.shape[0]),
            "plasmons": plasmon is not None,
            # w = 1, b = 0 is the identity: the same columns whether the effect is on or off
            "plasmon_weight": 1.0 if plasmon is None else plasmon[0],
            "plasmon_background": 0.0 if plasmon is None else plasmon[1],
            "dose_e_per_A2": dose,
            "expected_counts_per_px": dose * pixel_size_A**2,
            "wave_sampling_y_A": sampling_A[0],
            "wave_sampling_x_A": sampling_A[1],
            "pixel_size_A": pixel_size_A,
            "nominal_pixel_size_A": nominal_pixel_size_A,
            "detector_height_px": int(detector_shape[0]),
            "detector_width_px": int(detector_shape[1]),
            "detector_mtf": mtf is not None,
            "mtf_c1": None if mtf_c is None else mtf_c[0],  # null in the Parquet table
            "mtf_c2": None if mtf_c is None else mtf_c[1],
            "mtf_c3": None if mtf_c is None else mtf_c[2],
            "blur_sigma_px": blur_sigma_px,
            "median_filter_px": int(detector["median_filter_px"]),
            "crop_y0_px": origin[0],
            "crop_x0_px": origin[1],
            "crop_height_px": int(out_shape[0]),
            "crop_width_px": int(out_shape[1]),
            "label_method": label["method"],
            "label_threshold": threshold,
            "label_smoothing_sigma_px": float(label["smoothing_sigma_px"]),
            "label_smoothing_threshold": float(label["smoothing_threshold"]),
            "label_lens": label["lens"],
            "label_grow_A": float(label["grow_A"]),
            "mean_counts": float(images[index].mean(dtype=np.float64)),
            "particle_fraction": float(masks[index].mean(dtype=np.float64)),
        }
        records.append(record)
    return images, masks, records
