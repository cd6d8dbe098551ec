"""Where a mask's outline sits in its image: the edge profile, and the label width that matches.

Hand-drawn masks and our labels can put a particle's outline at different places of the same
intensity step (the dark core, the half-way level, the outer Fresnel fringe). The edge profile
measures that place without knowing the microscope: the image's intensity against the signed
distance from the mask's outline (> 0 inside), rescaled per image so that the carbon around the
particles is 0 and the particles' inside is 1 (any affine rescaling of the counts, such as an
8-bit export, gives the same profile).

`label_offset_A` compares a simulated set's profile with a real set's: the shift of the
simulated profile that best matches the real one is how far our label's outline lies outside
(> 0) the hand-drawn outline; `label.grow_A = -offset` moves our labels there. Distances are in
A at the pixel sizes given; a real set read at a guessed pixel size gives an offset in that
guess's A.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import scipy.ndimage

#: The profile's distances from the outline [A]: bin centres, 0.2 A apart.
PROFILE_DISTANCES_A = np.round(np.arange(-4.0, 4.0001, 0.2), 6)

#: Carbon reference: pixels this far outside every outline [A]; particle reference: this far
#: inside. Both are local to the particles (the carbon ring, the particle's core).
CARBON_BAND_A = (4.0, 8.0)
CORE_DEPTH_A = 3.0


def signed_distance_A(mask: np.ndarray, pixel_size_A: float) -> np.ndarray:
    """Distance of each pixel centre to the outline [A]: > 0 inside the mask, < 0 outside."""
    mask = np.asarray(mask, dtype=bool)
    inside = scipy.ndimage.distance_transform_edt(mask) * pixel_size_A
    outside = scipy.ndimage.distance_transform_edt(~mask) * pixel_size_A
    # A pixel next to the outline is half a pixel from it, on either side.
    return np.where(mask, inside - 0.5 * pixel_size_A, 0.5 * pixel_size_A - outside)


def normalized_levels(
    image: np.ndarray, mask: np.ndarray, pixel_size_A: float
) -> tuple[np.ndarray, np.ndarray] | None:
    """(image rescaled to carbon 0 / particle core 1, signed distance [A]); None when the image
    has no carbon band or no particle core, or they do not differ."""
    distance_A = signed_distance_A(mask, pixel_size_A)
    image = np.asarray(image, dtype=np.float64)
    carbon = (distance_A <= -CARBON_BAND_A[0]) & (distance_A >= -CARBON_BAND_A[1])
    core = distance_A >= CORE_DEPTH_A
    if carbon.sum() < 20 or core.sum() < 20:
        return None
    carbon_level, core_level = np.median(image[carbon]), np.median(image[core])
    if core_level == carbon_level:
        return None
    return (image - carbon_level) / (core_level - carbon_level), distance_A


@dataclass(frozen=True)
class EdgeProfile:
    """Median rescaled intensity per distance bin, over all pixels of all images used."""

    distances_A: np.ndarray
    levels: np.ndarray  # nan where a bin had no pixel
    images_used: int

    def level_at(self, distance_A: np.ndarray) -> np.ndarray:
        good = np.isfinite(self.levels)
        return np.interp(distance_A, self.distances_A[good], self.levels[good])


def edge_bins(image: np.ndarray, mask: np.ndarray, pixel_size_A: float) -> list[np.ndarray] | None:
    """One micrograph's rescaled levels, one array per bin of PROFILE_DISTANCES_A (None when it
    has no carbon band or no particle core)."""
    if np.shape(image) != np.shape(mask):
        raise ValueError(f"image {np.shape(image)} and mask {np.shape(mask)} differ in shape")
    levels = normalized_levels(image, mask, float(pixel_size_A))
    if levels is None:
        return None
    level, distance_A = levels
    half_bin = 0.5 * (PROFILE_DISTANCES_A[1] - PROFILE_DISTANCES_A[0])
    index = np.rint((distance_A.ravel() - PROFILE_DISTANCES_A[0]) / (2 * half_bin)).astype(int)
    level = level.ravel()
    return [level[index == b] for b in range(len(PROFILE_DISTANCES_A))]


def profile_of_bins(per_image: Iterable[list[np.ndarray] | None]) -> EdgeProfile:
    """The median level per bin over the micrographs' edge_bins (None entries skipped)."""
    used = [bins for bins in per_image if bins is not None]
    if not used:
        raise ValueError("no image has both a carbon band and a particle core to compare")
    pooled = [np.concatenate([bins[b] for bins in used]) for b in range(len(PROFILE_DISTANCES_A))]
    levels = np.array([np.median(v) if len(v) else np.nan for v in pooled])
    return EdgeProfile(PROFILE_DISTANCES_A.copy(), levels, len(used))


def edge_profile(
    images: Iterable[np.ndarray],
    masks: Iterable[np.ndarray],
    pixel_size_A: float | Iterable[float],
) -> EdgeProfile:
    """The edge profile of images with their masks (one pixel size, or one per image)."""
    images, masks = list(images), list(masks)
    if len(images) != len(masks):
        raise ValueError(f"{len(images)} images but {len(masks)} masks")
    sizes = np.broadcast_to(np.asarray(pixel_size_A, dtype=float), (len(images),))
    return profile_of_bins(
        edge_bins(image, mask, size) for image, mask, size in zip(images, masks, sizes, strict=True)
    )


def profile_gap(simulated: EdgeProfile, real: EdgeProfile, window_A: float = 3.0) -> float:
    """RMS difference of the two profiles over |d| <= window_A (levels: carbon 0, core 1)."""
    distances_A = real.distances_A[np.abs(real.distances_A) <= window_A + 1e-9]
    difference = simulated.level_at(distances_A) - real.level_at(distances_A)
    return float(np.sqrt(np.mean(difference**2)))


def profile_fit(
    simulated: EdgeProfile,
    real: EdgeProfile,
    window_A: float = 2.0,
    search_A: float = 2.0,
    step_A: float = 0.05,
) -> tuple[float, float]:
    """(shift [A], RMS residual) of the best match of the simulated profile to the real one.

    The shift s (|s| <= search_A) minimising the squared difference of sim(d + s) and real(d)
    over |d| <= window_A: the real outline at d = 0 sits where the simulated profile is at
    d = s, i.e. s A inside (s > 0) our labels' outline. The residual left at that shift is the
    difference in the profiles' shape: how much sharper or softer one edge is than the other."""
    distances_A = real.distances_A[np.abs(real.distances_A) <= window_A + 1e-9]
    target = real.level_at(distances_A)
    shifts_A = np.arange(-search_A, search_A + step_A / 2, step_A)
    costs = [np.mean((simulated.level_at(distances_A + s) - target) ** 2) for s in shifts_A]
    best = int(np.argmin(costs))
    return float(np.round(shifts_A[best], 6)), float(np.sqrt(costs[best]))


def label_offset_A(simulated: EdgeProfile, real: EdgeProfile, **fit) -> float:
    """How far the simulated labels' outline lies outside the real masks' outline [A]: the
    shift of profile_fit; label.grow_A = -offset matches them."""
    return profile_fit(simulated, real, **fit)[0]
