"""Simulation-stage benchmark: seconds per frozen phonon at the study's size on this CPU, next to
the FFT time that no multislice implementation can avoid, measured in the same run.

    .venv/bin/python benchmarks/simulation.py [--phonons 2] [--threads N] [--sampling-A 0.1]

The scene is the study's Baseline Au (benchmarks/structures.py: one particle of radius
N(40, 10) A in [30, 50] on 5 nm of amorphous carbon, 128 x 128 A); the multislice is the study's
(300 kV, 0.1 A potential sampling: 1280 x 1280, 2 A slices, infinite projection, Lobato;
`--sampling-A 0.25` gives 512 x 512). Timed: the full scene's exit waves (`exit_waves`, the call
the simulations rule makes twice per structure: full scene and particle alone) with abTEM's FFTs
  - by numpy (what the workflow used before),
  - by FFTW planned with FFTW_ESTIMATE (abTEM's FFTW without timing-based planning),
  - by scipy.fft on `threads` workers (`scipy_fft`, what it uses now), twice and with one
    worker: the three results must be bit-identical.
The floor is 2 FFTs of the wave per slice (into and out of Fourier space for the propagator) at
the fastest single FFT measured here (scipy.fft or FFTW, same threads). Goal: ratio <= 2.
abTEM's infinite projection adds FFTs of its own per slice (the potential is built in Fourier
space): their count is printed beside the floor.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from contextlib import nullcontext

import abtem
import numpy as np
import pyfftw
import scipy.fft

from hrtem_wf.config import validate_block
from hrtem_wf.simulations.device import scipy_fft
from hrtem_wf.simulations.multislice import displaced_configurations, exit_waves

STUDY_SIMULATION = {
    "structures": "baseline_au",
    "device": "cpu",
    "energy_eV": 300000,
    "potential_sampling_A": 0.1,
    "exit_wave_sampling_A": 0.2,
    "slice_thickness_A": 2.0,
    "projection": "infinite",
    "parametrization": "lobato",
    "debye_waller_sigma_A": {"Au": 0.1, "C": 0.1},
}


def best_seconds(function, repeats: int = 10) -> float:
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def fft_seconds(shape: tuple[int, int], threads: int) -> dict[str, float]:
    """One complex64 2-D FFT of `shape`: numpy, scipy.fft (workers) and FFTW (ESTIMATE)."""
    rng = np.random.default_rng(0)
    wave = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)
    aligned = pyfftw.empty_aligned(shape, dtype=np.complex64)
    aligned[:] = wave
    plan = pyfftw.FFTW(aligned, aligned, axes=(-2, -1), threads=threads, flags=("FFTW_ESTIMATE",))
    return {
        "numpy": best_seconds(lambda: np.fft.fft2(wave)),
        "scipy": best_seconds(lambda: scipy.fft.fft2(wave, workers=threads)),
        "fftw": best_seconds(plan),
    }


def timed_exit_waves(configurations, block, fft: str, threads: int) -> tuple[float, np.ndarray]:
    """(seconds, exit waves) with abTEM's FFTs by `fft`: numpy | fftw (ESTIMATE) | scipy."""
    settings = {"device": "cpu", "scheduler": "synchronous", "fft": "numpy"}
    if fft == "fftw":
        settings |= {"fft": "fftw", "fftw.planning_effort": "FFTW_ESTIMATE"}
        settings |= {"fftw.threads": threads}
    with abtem.config.set(settings), scipy_fft(threads) if fft == "scipy" else nullcontext():
        start = time.perf_counter()
        waves = exit_waves(configurations, block)
    return time.perf_counter() - start, waves


def counted_ffts(configurations, block) -> int:
    """The 2-D FFTs abTEM makes for these configurations' exit waves (numpy's, counted)."""
    calls = 0
    counted = {}
    for name in ("fft2", "ifft2"):
        original = getattr(np.fft, name)

        def count(*args, _original=original, **kwargs):
            nonlocal calls
            calls += 1
            return _original(*args, **kwargs)

        counted[name] = original
        setattr(np.fft, name, count)
    try:
        timed_exit_waves(configurations, block, "numpy", 1)
    finally:
        for name, original in counted.items():
            setattr(np.fft, name, original)
    return calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phonons", type=int, default=2, help="frozen phonons per timed run")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--sampling-A", type=float, default=0.1, help="potential sampling (A)")
    args = parser.parse_args()
    # here, not at the top: gpu_check.py imports STUDY_SIMULATION where czone is not installed
    from structures import BLOCKS

    from hrtem_wf.structures import build_structure

    structure_block = validate_block("structures", BLOCKS["baseline Au (1 particle, 0-3 defects)"])
    atoms = build_structure(structure_block, 1)
    simulation = {**STUDY_SIMULATION, "frozen_phonons": args.phonons}
    block = validate_block("simulations", {**simulation, "potential_sampling_A": args.sampling_A})
    configurations = displaced_configurations(
        atoms, args.phonons, block["debye_waller_sigma_A"], seed=1
    )
    cell = np.diag(atoms.cell.array)
    gpts = tuple(int(round(length / block["potential_sampling_A"])) for length in cell[:2])
    slices = math.ceil(cell[2] / block["slice_thickness_A"])
    ffts = fft_seconds(gpts, args.threads)
    floor_s = 2 * slices * min(ffts["scipy"], ffts["fftw"])

    runs = {
        "numpy (before)": timed_exit_waves(configurations, block, "numpy", args.threads),
        "FFTW, ESTIMATE": timed_exit_waves(configurations, block, "fftw", args.threads),
        f"scipy.fft, {args.threads} workers (now)": timed_exit_waves(
            configurations, block, "scipy", args.threads
        ),
        "scipy.fft, rerun": timed_exit_waves(configurations, block, "scipy", args.threads),
    }
    _, one_worker = timed_exit_waves(configurations, block, "scipy", 1)
    abtem_ffts = counted_ffts(configurations, block) / args.phonons

    print(
        f"simulation benchmark: {len(atoms)} atoms, cell {cell[0]:.0f} x {cell[1]:.0f} x "
        f"{cell[2]:.0f} A, {gpts[0]} x {gpts[1]} pixels, {slices} slices, {args.phonons} frozen "
        f"phonons, {args.threads} threads ({os.cpu_count()} cores)"
    )
    print(
        "  one complex64 FFT of the wave: "
        + ", ".join(f"{name} {1e3 * s:.1f} ms" for name, s in ffts.items())
    )
    print(f"  floor: 2 FFTs per slice x {slices} slices = {floor_s:.2f} s per frozen phonon")
    print(
        f"  abTEM makes {abtem_ffts:.0f} FFTs per frozen phonon ({abtem_ffts / slices:.1f} per "
        f"slice): {abtem_ffts / (2 * slices):.2f} x the floor's count, "
        f"{abtem_ffts * floor_s / (2 * slices):.2f} s at that speed"
    )
    print("| abTEM's FFTs by | s per frozen phonon | / floor |")
    print("|---|---|---|")
    for name, (seconds, _) in runs.items():
        per_phonon = seconds / args.phonons
        print(f"| {name} | {per_phonon:.2f} | {per_phonon / floor_s:.2f} |")
    (_, numpy_waves), _, (_, now), (_, rerun) = runs.values()
    print(
        f"  rerun bit-identical: {np.array_equal(now, rerun)}; one worker bit-identical: "
        f"{np.array_equal(now, one_worker)}; numpy vs scipy: max |difference| "
        f"{np.abs(now - numpy_waves).max():.1e}"
    )
    print(
        "  the study (Table 2): 1.125 s per frozen phonon on a GPU workstation, 0.294 s Perlmutter"
    )


if __name__ == "__main__":
    main()
