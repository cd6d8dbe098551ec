"""Image formation: exit waves -> noisy HRTEM micrographs + particle masks (+ drawn parameters)."""

from .aberrations import (
    PRESETS,
    aberration_phase,
    draw_aberrations,
    polar_from_table,
    spatial_frequencies,
    wavelength_A,
)
from .draw import draw_images, draw_images_from_spectra, draw_lens, exit_wave_spectra
from .formation import (
    apply_mtf,
    image_blur,
    intensity,
    mtf,
    objective_aperture,
    plasmon_losses,
    resample_to_pixel_size,
    spatial_envelope,
    temporal_envelope,
    wave_spectrum,
)
from .labels import particle_mask
from .lens import Lens, focal_spread_defoci

__all__ = [
    "PRESETS",
    "Lens",
    "aberration_phase",
    "apply_mtf",
    "draw_aberrations",
    "draw_images",
    "draw_images_from_spectra",
    "draw_lens",
    "exit_wave_spectra",
    "focal_spread_defoci",
    "image_blur",
    "intensity",
    "mtf",
    "objective_aperture",
    "particle_mask",
    "plasmon_losses",
    "polar_from_table",
    "resample_to_pixel_size",
    "spatial_envelope",
    "spatial_frequencies",
    "temporal_envelope",
    "wave_spectrum",
    "wavelength_A",
]
