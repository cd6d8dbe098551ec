"""Power spectra of micrographs: the windowed 2-D periodogram and its radial average.

Conventions shared by hrtem_wf.real.match: spatial frequency q in cycles per pixel (Nyquist 0.5),
k = q / pixel_size_A in 1/A. A spectrum is normalized so that white noise of variance s^2 per
pixel has power s^2 at every q (|FFT(w x)|^2 / sum w^2 with the window w), whatever the window:
the noise level read off a spectrum is a per-pixel variance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.fft
import scipy.ndimage

#: The spectral smearing kernel is sampled this many times per Fourier pixel, over +-
#: KERNEL_HALF_WIDTH_BINS pixels.
KERNEL_SUBSAMPLES = 4
KERNEL_HALF_WIDTH_BINS = 8
#: Particle masks are grown by this many pixels before they are cut out of the carbon window,
#: and the cut's edge is tapered over as many: the particle's Fresnel fringe stays outside.
MASK_MARGIN_PX = 4


def carbon_window(
    shape_yx: tuple[int, int], mask: np.ndarray | None = None, margin_px: int = MASK_MARGIN_PX
) -> np.ndarray:
    """A 2-D Hann window (float64) that is zero on particles (mask nonzero) grown by margin_px,
    with edges tapered by a Gaussian of margin_px, so the spectrum is the carbon's alone."""
    ny, nx = shape_yx
    window = np.outer(np.hanning(ny), np.hanning(nx))
    if mask is None or not np.any(mask):
        return window
    grown = scipy.ndimage.binary_dilation(mask != 0, iterations=int(margin_px))
    carbon = scipy.ndimage.gaussian_filter((~grown).astype(np.float64), margin_px / 2)
    return window * np.where(grown, 0.0, carbon)


def frequencies_per_px(shape_yx: tuple[int, int]) -> np.ndarray:
    """|q| in cycles per pixel on the FFT grid of an image of shape_yx (FFT order)."""
    ny, nx = shape_yx
    return np.sqrt(np.fft.fftfreq(ny)[:, None] ** 2 + np.fft.fftfreq(nx)[None, :] ** 2)


def periodogram(image: np.ndarray, window: np.ndarray) -> tuple[np.ndarray, float]:
    """(|FFT(w (x - m))|^2 / sum w^2 in FFT order, m) with m the w-weighted mean of the image."""
    image = np.asarray(image, dtype=np.float64)
    total = float(window.sum())
    if total <= 0:
        raise ValueError("the window is zero everywhere (masks cover the whole micrograph?)")
    mean = float((image * window).sum() / total)
    spectrum = scipy.fft.fft2(window * (image - mean), workers=-1)
    power = spectrum.real**2 + spectrum.imag**2
    return power / float((window**2).sum()), mean


@dataclass
class RadialSpectrum:
    """The radially averaged power spectrum of one micrograph (see the module docstring)."""

    q_per_px: np.ndarray  # bin centres, cycles per pixel
    power: np.ndarray  # mean power in the bin (per-pixel variance units)
    pixels: np.ndarray  # Fourier pixels in the bin
    bin_width_per_px: float
    mean: float  # the window-weighted mean of the image (its carbon, with a mask)
    # the window's smearing of a ring along q: weights at offsets of 1 / KERNEL_SUBSAMPLES bin
    # over +- KERNEL_HALF_WIDTH_BINS (sum 1), see smearing_kernel
    kernel: np.ndarray | None = None


def radial_spectrum(image: np.ndarray, mask: np.ndarray | None = None) -> RadialSpectrum:
    """Radial average of the carbon's periodogram in bins one Fourier pixel wide, up to Nyquist
    (0.5 cycles/px; the corners beyond it are left out)."""
    window = carbon_window(image.shape, mask)
    power, mean = periodogram(image, window)
    return radial_average(power, mean, smearing_kernel(window))


def smearing_kernel(window: np.ndarray) -> np.ndarray:
    """How the window smears a thin ring of the spectrum along q (1-D, sum 1).

    The periodogram is the true spectrum convolved with |FFT(w)|^2 / sum w^2; across a ring of
    radius >> the kernel, that is the kernel's marginal along the radial direction, taken here
    along the image's longer axis, sampled at 1 / KERNEL_SUBSAMPLES Fourier pixel (zero padding).
    Deep Thon-ring minima are filled by it; a fit that ignores it reads the fill as noise."""
    ny, nx = window.shape
    axis = 1 if nx >= ny else 0
    pad = KERNEL_SUBSAMPLES * max(ny, nx)
    shape = (ny, pad) if axis == 1 else (pad, nx)
    spectrum = np.abs(scipy.fft.fft2(window, s=shape, workers=-1)) ** 2
    marginal = np.fft.fftshift(spectrum.sum(axis=1 - axis))
    centre = pad // 2
    half = KERNEL_HALF_WIDTH_BINS * KERNEL_SUBSAMPLES
    kernel = marginal[centre - half : centre + half + 1]
    return kernel / kernel.sum()


def radial_average(
    power: np.ndarray, mean: float = float("nan"), kernel: np.ndarray | None = None
) -> RadialSpectrum:
    q = frequencies_per_px(power.shape)
    width = 1.0 / max(power.shape)
    index = np.floor(q / width + 0.5).astype(np.int64).ravel()  # bin 0 is the DC pixel
    n_bins = int(np.floor(0.5 / width + 0.5)) + 1
    keep = index < n_bins
    pixels = np.bincount(index[keep], minlength=n_bins).astype(np.float64)
    sums = np.bincount(index[keep], power.ravel()[keep], minlength=n_bins)
    filled = pixels > 0
    return RadialSpectrum(
        q_per_px=(np.arange(n_bins) * width)[filled],
        power=sums[filled] / pixels[filled],
        pixels=pixels[filled],
        bin_width_per_px=width,
        mean=mean,
        kernel=kernel,
    )
