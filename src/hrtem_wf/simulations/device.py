"""Run abTEM on the CPU or on a GPU (CuPy), chosen by the config's `device`."""

from __future__ import annotations

import contextlib
import os

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


def cpu_fft() -> dict:
    """abTEM's CPU FFT: FFTW on the job's threads, planned with FFTW_ESTIMATE.

    The job's threads: OMP_NUM_THREADS where set (Snakemake sets it to the rule's `threads`, 1
    for simulations, so parallel jobs share the cores), else every core this process may use.

    ESTIMATE plans from the array's shape alone, so reruns are bit-identical (abTEM's default,
    FFTW_MEASURE, times candidate algorithms and picks differently from run to run). Measured
    (benchmarks/simulation.py, 2 cores): a 1280 x 1280 FFT 7x faster than numpy's, a frozen
    phonon of the study's scene 3.4x, and the same bits with 1 or 2 threads."""
    return {
        "fft": "fftw",
        "fftw.planning_effort": "FFTW_ESTIMATE",
        "fftw.threads": int(os.environ.get("OMP_NUM_THREADS") or len(os.sched_getaffinity(0))),
    }


@contextlib.contextmanager
def use_device(device: str):
    """abTEM's configuration for one simulation: the device, a synchronous scheduler (one
    process per job; Snakemake does the parallelism) and, on the CPU, `cpu_fft`."""
    if device not in ("cpu", "gpu"):
        raise ValueError(f"device must be 'cpu' or 'gpu', not {device!r}")
    if device == "gpu":
        require_gpu()
    with abtem.config.set({"device": device, "scheduler": "synchronous", **cpu_fft()}):
        yield
