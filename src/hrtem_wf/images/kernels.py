"""Fused CPU kernels (numba) for the per-pixel work between the FFTs of image formation.

With numpy each step of the focal-spread loop (lens, |psi|^2, weighted sum) is a separate pass
over a (phonon, ny, nx) array with temporaries, which costs more than the FFTs themselves. These
kernels do each step in one parallel pass. They compute exactly what the array expressions in
formation.py / labels.py / aberrations.py compute (the generic path, which also runs on CuPy),
and tests compare the two.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

# The FFTs between these kernels run on scipy's own threads. numba's default OpenMP layer leaves
# its threads spinning after each parallel loop, which on a small node takes the cores from the
# next FFT (measured here: the FFTs of the focal-spread loop 30-40 % slower). The workqueue
# layer's threads sleep instead.
nb.config.THREADING_LAYER = "workqueue"


@nb.njit(parallel=True, cache=True)
def lens_phase_and_step(
    ky, kx, wavelength, magnitudes, powers, folds, angles, defocus_A, step_A, envelope_sigma_A
):
    """phase = exp(-i chi(k)) x E(k) at `defocus_A` and step = exp(i step_A chi_1(k)).

    chi = 2 pi / lambda sum C / p alpha^p cos(m (phi - angle)) - defocus pi lambda k^2, with
    (C, p = n + 1, m, angle) per coefficient; E the quasi-coherent temporal envelope (1 when
    envelope_sigma_A is 0). complex128 (ny, nx), FFT order as ky, kx."""
    ny, nx = ky.shape[0], kx.shape[0]
    phase = np.empty((ny, nx), dtype=np.complex128)
    step = np.ones((ny, nx), dtype=np.complex128)
    n_terms = magnitudes.shape[0]
    prefactors = 2.0 * math.pi / wavelength * magnitudes / powers
    cos_ma = np.cos(folds * angles)  # cos(m (phi - a)) = cos(m phi) cos(m a) + sin(m phi) sin(m a)
    sin_ma = np.sin(folds * angles)
    max_fold = max(folds.max(), 0) if n_terms else 0
    max_power = max(powers.max(), 0) if n_terms else 0
    for y in nb.prange(ny):
        cos_m = np.empty(max_fold + 1)
        sin_m = np.empty(max_fold + 1)
        alpha_p = np.empty(max_power + 1)
        for x in range(nx):
            k2 = kx[x] * kx[x] + ky[y] * ky[y]
            k = math.sqrt(k2)
            if k > 0.0:
                ux, uy = kx[x] / k, ky[y] / k
            else:
                ux, uy = 1.0, 0.0  # phi = atan2(0, 0) = 0, as numpy
            cos_m[0], sin_m[0] = 1.0, 0.0
            for m in range(1, max_fold + 1):  # (ux + i uy)^m
                cos_m[m] = cos_m[m - 1] * ux - sin_m[m - 1] * uy
                sin_m[m] = cos_m[m - 1] * uy + sin_m[m - 1] * ux
            alpha_p[0] = 1.0
            for p in range(1, max_power + 1):
                alpha_p[p] = alpha_p[p - 1] * wavelength * k
            chi = 0.0
            for t in range(n_terms):
                m = folds[t]
                chi += (
                    prefactors[t]
                    * alpha_p[powers[t]]
                    * (cos_m[m] * cos_ma[t] + sin_m[m] * sin_ma[t])
                )
            chi1 = math.pi * wavelength * k2
            total = chi - defocus_A * chi1
            envelope = 1.0
            if envelope_sigma_A > 0.0:
                envelope = math.exp(-0.5 * (math.pi * wavelength * envelope_sigma_A * k2) ** 2)
            phase[y, x] = envelope * (math.cos(total) - 1j * math.sin(total))
            if step_A != 0.0:
                step[y, x] = math.cos(step_A * chi1) + 1j * math.sin(step_A * chi1)
    return phase, step


@nb.njit(inline="always")
def _lens_row(phase, step, scale, envelope, y):
    """Row y of the lens as complex64 (scale x phase, times the envelope row unless it is None),
    then the row's phase advanced by step."""
    nx = phase.shape[1]
    row = np.empty(nx, dtype=np.complex64)
    for x in range(nx):
        if envelope is None:  # compiled away: None is a type of its own
            row[x] = np.complex64(scale * phase[y, x])
        else:
            row[x] = np.complex64(scale * envelope[y, x] * phase[y, x])
        phase[y, x] = phase[y, x] * step[y, x]
    return row


@nb.njit(parallel=True, cache=True)
def apply_lens(spectrum, phase, step, scale, out, envelope=None):
    """out[p] = spectrum[p] x complex64(scale x envelope x phase); then phase *= step (the next
    defocus). envelope: a real (ny, nx) factor of this defocus only (the spatial envelope)."""
    n_phonons, ny, nx = spectrum.shape
    for y in nb.prange(ny):
        row = _lens_row(phase, step, scale, envelope, y)
        for p in range(n_phonons):
            for x in range(nx):
                out[p, y, x] = spectrum[p, y, x] * row[x]


@nb.njit(parallel=True, cache=True)
def accumulate_intensity(waves, weights, acc):
    """acc += sum_p weights[p] |waves[p]|^2, in float64."""
    n_phonons, ny, nx = waves.shape
    for y in nb.prange(ny):
        for p in range(n_phonons):
            weight = weights[p]
            for x in range(nx):
                z = waves[p, y, x]
                acc[y, x] += weight * (z.real * z.real + z.imag * z.imag)


@nb.njit(parallel=True, cache=True)
def accumulate_and_apply(waves, weights, acc, spectrum, phase, step, scale, envelope=None):
    """accumulate_intensity(waves, weights, acc), then apply_lens(spectrum, phase, step, scale,
    waves, envelope) for the next defocus sample, in one pass over the buffer (the focal-spread
    loop)."""
    n_phonons, ny, nx = waves.shape
    for y in nb.prange(ny):
        row = _lens_row(phase, step, scale, envelope, y)
        for p in range(n_phonons):
            weight = weights[p]
            for x in range(nx):
                z = waves[p, y, x]
                acc[y, x] += weight * (z.real * z.real + z.imag * z.imag)
                waves[p, y, x] = spectrum[p, y, x] * row[x]


@nb.njit(parallel=True, cache=True)
def phase_votes(waves, threshold):
    """Number of phonons whose wave phase arg(psi) in (-pi, pi] exceeds threshold [rad], per pixel.

    For 0 <= threshold < pi, arg(z) > t exactly when z lies counter-clockwise of e^{it} within
    the upper half plane: Im(z e^{-it}) > 0 and Im(z) >= 0 (no arctan per pixel)."""
    n_phonons, ny, nx = waves.shape
    votes = np.zeros((ny, nx), dtype=np.int32)
    cos_t, sin_t = math.cos(threshold), math.sin(threshold)
    fast = 0.0 <= threshold < math.pi
    for y in nb.prange(ny):
        for p in range(n_phonons):
            for x in range(nx):
                z = waves[p, y, x]
                if fast:
                    above = z.imag * cos_t - z.real * sin_t > 0.0 and z.imag >= 0.0
                else:
                    above = math.atan2(z.imag, z.real) > threshold
                if above:
                    votes[y, x] += 1
    return votes


@nb.njit(inline="always")
def _sorted_pair(a, b):
    return (a, b) if a <= b else (b, a)


@nb.njit(parallel=True, cache=True)
def median3x3_wrap(image):
    """3 x 3 median filter with periodic edges (scipy.ndimage.median_filter size 3, mode wrap),
    by the 19 compare-exchange median-of-9 network (Paeth 1990; Devillard 1998)."""
    ny, nx = image.shape
    out = np.empty_like(image)
    for y in nb.prange(ny):
        up, down = (y - 1) % ny, (y + 1) % ny
        for x in range(nx):
            left, right = (x - 1) % nx, (x + 1) % nx
            p0, p1, p2 = image[up, left], image[up, x], image[up, right]
            p3, p4, p5 = image[y, left], image[y, x], image[y, right]
            p6, p7, p8 = image[down, left], image[down, x], image[down, right]
            p1, p2 = _sorted_pair(p1, p2)
            p4, p5 = _sorted_pair(p4, p5)
            p7, p8 = _sorted_pair(p7, p8)
            p0, p1 = _sorted_pair(p0, p1)
            p3, p4 = _sorted_pair(p3, p4)
            p6, p7 = _sorted_pair(p6, p7)
            p1, p2 = _sorted_pair(p1, p2)
            p4, p5 = _sorted_pair(p4, p5)
            p7, p8 = _sorted_pair(p7, p8)
            p0, p3 = _sorted_pair(p0, p3)
            p5, p8 = _sorted_pair(p5, p8)
            p4, p7 = _sorted_pair(p4, p7)
            p3, p6 = _sorted_pair(p3, p6)
            p1, p4 = _sorted_pair(p1, p4)
            p2, p5 = _sorted_pair(p2, p5)
            p4, p7 = _sorted_pair(p4, p7)
            p4, p2 = _sorted_pair(p4, p2)
            p6, p4 = _sorted_pair(p6, p4)
            p4, p2 = _sorted_pair(p4, p2)
            out[y, x] = p4
    return out
