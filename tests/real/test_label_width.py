"""The edge profile and the label offset that moves our labels' outline to the hand-drawn one."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage

from hrtem_wf.real.match.label_width import edge_profile, label_offset_A, signed_distance_A

PIXEL_SIZE_A = 0.4


def particles(radius_A: float, shape=(256, 256), centres=((64, 64), (64, 180), (180, 120))):
    y, x = np.indices(shape) * PIXEL_SIZE_A
    mask = np.zeros(shape, dtype=bool)
    for cy, cx in centres:
        mask |= (y - cy * PIXEL_SIZE_A) ** 2 + (x - cx * PIXEL_SIZE_A) ** 2 < radius_A**2
    return mask


def micrograph(seed: int = 0) -> np.ndarray:
    """Dark particles of radius 12 A on carbon, blurred by 1.5 A, with noise."""
    rng = np.random.default_rng(seed)
    ideal = 100.0 - 35.0 * particles(12.0)
    blurred = scipy.ndimage.gaussian_filter(ideal, 1.5 / PIXEL_SIZE_A)
    return blurred + rng.normal(0.0, 2.0, blurred.shape)


def test_signed_distance_is_positive_inside_and_half_a_pixel_at_the_outline():
    mask = particles(12.0)
    distance_A = signed_distance_A(mask, PIXEL_SIZE_A)
    assert (distance_A[mask] > 0).all() and (distance_A[~mask] < 0).all()
    assert np.abs(distance_A).min() == pytest.approx(0.5 * PIXEL_SIZE_A)
    assert distance_A.max() == pytest.approx(12.0, abs=PIXEL_SIZE_A)


def test_profile_ignores_how_the_counts_were_scaled():
    """An 8-bit export or another camera gain is an affine map of the counts: same profile."""
    image, mask = micrograph(), particles(12.0)
    raw = edge_profile([image], [mask], PIXEL_SIZE_A)
    rescaled = edge_profile([3.0 * image + 7.0], [mask], PIXEL_SIZE_A)
    np.testing.assert_allclose(rescaled.levels, raw.levels, atol=1e-12)
    # carbon 0, particle core 1, the half-way level at the outline of a symmetric blur
    assert raw.level_at(np.array([-4.0, 0.0, 4.0])) == pytest.approx([0.0, 0.5, 1.0], abs=0.08)


@pytest.mark.parametrize("wider_A", [0.0, 0.8, 1.6, -1.2])
def test_offset_recovers_how_much_wider_our_labels_are(wider_A):
    """Masks drawn at the true outline (the 'real' set) against labels wider_A A wider (ours):
    the offset is wider_A to 0.15 A, on other images of the same kind."""
    real = edge_profile([micrograph(1), micrograph(2)], [particles(12.0)] * 2, PIXEL_SIZE_A)
    ours = edge_profile([micrograph(3)], [particles(12.0 + wider_A)], PIXEL_SIZE_A)
    assert label_offset_A(ours, real) == pytest.approx(wider_A, abs=0.15)


def test_profile_needs_carbon_and_a_core():
    with pytest.raises(ValueError, match="carbon band and a particle core"):
        edge_profile([np.ones((64, 64))], [np.zeros((64, 64), bool)], PIXEL_SIZE_A)
    with pytest.raises(ValueError, match="differ in shape"):
        edge_profile([np.ones((64, 64))], [np.zeros((32, 64), bool)], PIXEL_SIZE_A)
