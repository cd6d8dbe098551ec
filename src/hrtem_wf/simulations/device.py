"""Run abTEM on the CPU or on a GPU (CuPy), chosen by the config's `device`."""

from __future__ import annotations

import contextlib

import abtem


def require_gpu() -> None:
    """Raise a clear error when a GPU is asked for and none is usable."""
    try:
        import cupy
    except ImportError as error:
        raise RuntimeError("device: gpu needs CuPy (pip install '.[gpu]')") from error
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as error:  # CUDA driver missing or broken
        raise RuntimeError(f"device: gpu but CUDA is not usable: {error}") from error
    if count == 0:
        raise RuntimeError("device: gpu but no GPU is visible (check CUDA_VISIBLE_DEVICES)")


@contextlib.contextmanager
def use_device(device: str):
    """abTEM's configuration for one simulation: the device, a synchronous scheduler (one
    process per job; Snakemake does the parallelism) and numpy's FFT: abTEM's default FFTW
    plans with FFTW_MEASURE, which picks different algorithms from run to run, so reruns
    would not be bit-identical."""
    if device not in ("cpu", "gpu"):
        raise ValueError(f"device must be 'cpu' or 'gpu', not {device!r}")
    if device == "gpu":
        require_gpu()
    with abtem.config.set({"device": device, "scheduler": "synchronous", "fft": "numpy"}):
        yield
