"""Arrays on the CPU (numpy + scipy.fft) or on a GPU (CuPy): one code path for both.

Image formation only needs FFTs and elementwise maths, so every function takes its array module
from its input (`array_module`) and the block's `device` decides where the spectra live.
"""

from __future__ import annotations

import numpy as np
import scipy.fft

DEVICES = ("cpu", "gpu")


def array_module(array):
    """numpy, or cupy for a CuPy array (without importing CuPy when it is not installed)."""
    if type(array).__module__.startswith("cupy"):
        import cupy

        return cupy
    return np


def to_device(array: np.ndarray, device: str):
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    if device == "cpu":
        return np.asarray(array)
    from hrtem_wf.simulations.device import require_gpu

    require_gpu()
    import cupy

    return cupy.asarray(array)


def to_host(array) -> np.ndarray:
    if array_module(array) is np:
        return np.asarray(array)
    return array.get()


def fft2(array):
    xp = array_module(array)
    if xp is np:
        return scipy.fft.fft2(array, axes=(-2, -1), workers=-1)
    return xp.fft.fft2(array, axes=(-2, -1))


def ifft2(array, overwrite: bool = False):
    xp = array_module(array)
    if xp is np:
        return scipy.fft.ifft2(array, axes=(-2, -1), workers=-1, overwrite_x=overwrite)
    return xp.fft.ifft2(array, axes=(-2, -1))
