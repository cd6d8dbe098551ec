"""Run abTEM on the CPU or on a GPU (CuPy), chosen by the config's `device`."""

from __future__ import annotations

import contextlib
import os

import abtem
import abtem.core.fft as abtem_fft
import numpy as np
import scipy.fft


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


def fft_workers() -> int:
    """The job's threads: OMP_NUM_THREADS where set (Snakemake sets it to the rule's `threads`,
    1 for simulations, so parallel jobs share the cores), else every core this process may use."""
    return int(os.environ.get("OMP_NUM_THREADS") or len(os.sched_getaffinity(0)))


@contextlib.contextmanager
def scipy_fft(workers: int):
    """abTEM's CPU FFTs through scipy.fft (pocketfft) on `workers` threads.

    abTEM offers numpy's FFT, FFTW and MKL. numpy's is 3-8x slower than scipy's (one 1280 x 1280
    complex64 FFT: 44 vs 13 ms on one core, 43 vs 5 ms on two); FFTW plans by timing candidate
    algorithms (FFTW_MEASURE, abTEM's default), so reruns would not be bit-identical, and its
    timing-free planner (FFTW_ESTIMATE) picks a plan 9x slower than scipy's at 512 x 512. pocketfft
    has no planner: the same bits on every run and for any number of workers. abTEM sends every FFT
    of a numpy array through `abtem.core.fft._fft_dispatch` with its `fft` setting at "numpy"; here
    that function sends them to scipy.fft instead (a private name of the pinned abTEM 1.0.11:
    tests/test_simulation.py checks that the FFTs go through scipy)."""
    original = abtem_fft._fft_dispatch

    def dispatch(x, func_name, overwrite_x=False, **kwargs):
        if isinstance(x, np.ndarray):
            transform = getattr(scipy.fft, func_name)
            return transform(x, overwrite_x=overwrite_x, workers=workers, **kwargs)
        return original(x, func_name, overwrite_x, **kwargs)

    abtem_fft._fft_dispatch = dispatch
    try:
        with abtem.config.set({"fft": "numpy"}):
            yield
    finally:
        abtem_fft._fft_dispatch = original


@contextlib.contextmanager
def use_device(device: str):
    """abTEM's configuration for one simulation: the device, a synchronous scheduler (one
    process per job; Snakemake does the parallelism) and the CPU's FFTs by `scipy_fft`."""
    if device not in ("cpu", "gpu"):
        raise ValueError(f"device must be 'cpu' or 'gpu', not {device!r}")
    if device == "gpu":
        require_gpu()
    with abtem.config.set({"device": device, "scheduler": "synchronous"}):
        with scipy_fft(fft_workers()):
            yield
