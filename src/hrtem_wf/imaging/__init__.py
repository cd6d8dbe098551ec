"""Image formation: exit waves -> noisy HRTEM micrographs + particle masks (+ drawn parameters)."""

from .aberrations import aberration_phase, lens_coefficients, spatial_frequencies, wavelength_A
from .draw import draw_images
from .formation import focal_spread_defoci, intensity, resample_to_pixel_size
from .labels import particle_mask

__all__ = [
    "aberration_phase",
    "draw_images",
    "focal_spread_defoci",
    "intensity",
    "lens_coefficients",
    "particle_mask",
    "resample_to_pixel_size",
    "spatial_frequencies",
    "wavelength_A",
]
