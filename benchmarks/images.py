"""Image-stage benchmark: seconds per image at the study's size, next to the FFTs it cannot avoid.

    python benchmarks/images.py [--size 640] [--phonons 8] [--samples 25] [--draws 4]
                                [--device cpu|gpu] [--repeats 3]

Draws `draws` images from one structure's exit waves (size x size, `phonons` frozen phonons) with
every effect on (the study recipe's Optimal Au images: Table S1 aberrations randomized,
incoherent focal spread with `samples` defoci, plasmons, Poisson dose, median filter, 512 x 512
crop; plus a detector MTF) through `draw_images`,
the function the workflow's images rule calls. In the same run it times the FFTs any
implementation needs: one forward FFT per phonon (shared by the draws) and, per image, one
inverse FFT per (defocus sample, phonon) plus one per phonon for the label, done as the same
batched FFT calls on arrays of the same shape. Prints both and their ratio.
"""

from __future__ import annotations

import argparse
import copy
import os
import time
from pathlib import Path

import numpy as np
import yaml

from hrtem_wf.images import draw_images
from hrtem_wf.images.backend import fft2, ifft2, to_device

ROOT = Path(__file__).resolve().parents[1]


def block(draws: int, samples: int, device: str, crop: int) -> dict:
    """The study recipe's Optimal Au images (every effect on), plus an MTF, at this size."""
    recipe = yaml.safe_load((ROOT / "config/recipes/study.yaml").read_text())
    spec = copy.deepcopy(recipe["images"]["optimal_au_img"])
    spec["focal_spread"]["samples"] = samples
    spec["detector"] = {**spec["detector"], "mtf": {"c1": 0.1, "c2": 0.5, "c3": 2.5}}
    return {**spec, "device": device, "draws_per_structure": draws, "crop_px": [crop, crop]}


def synchronize(device: str) -> None:
    if device == "gpu":
        import cupy

        cupy.cuda.Device().synchronize()


def unavoidable_ffts(waves: np.ndarray, draws: int, samples: int, device: str) -> float:
    """Seconds per image of the FFTs alone: per structure one forward FFT per phonon of the full
    and of the particle-only waves (shared by the draws); per image one inverse FFT per
    (defocus sample, phonon) plus one per phonon for the label. Batched over phonons and done in
    place, as formation.py does them, alternating direction so the values stay bounded."""
    buffer = to_device(waves, device).copy()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(2):
        buffer = fft2(buffer)
    for index in range(draws * (samples + 1)):
        buffer = ifft2(buffer, overwrite=True) if index % 2 == 0 else fft2_inplace(buffer)
    synchronize(device)
    return (time.perf_counter() - start) / draws


def fft2_inplace(array):
    if type(array).__module__.startswith("cupy"):
        return fft2(array)
    import scipy.fft

    return scipy.fft.fft2(array, axes=(-2, -1), workers=-1, overwrite_x=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=640)
    parser.add_argument("--phonons", type=int, default=8)
    parser.add_argument("--samples", type=int, default=25)
    parser.add_argument("--draws", type=int, default=4)
    parser.add_argument("--device", default="cpu", choices=["cpu", "gpu"])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    shape = (args.phonons, args.size, args.size)
    # a weak-phase-like object: the FFT cost does not depend on the content
    waves = np.exp(1j * 0.3 * rng.standard_normal(shape)).astype(np.complex64)
    spec = block(args.draws, args.samples, args.device, min(512, args.size))
    draw_images(
        waves[:, :64, :64],
        waves[:, :64, :64],
        0.2,
        300e3,  # warm-up: imports, plans
        {**spec, "draws_per_structure": 1, "crop_px": None},
        np.random.default_rng(1),
    )
    per_image, fft_only = [], []
    for repeat in range(args.repeats):
        synchronize(args.device)
        start = time.perf_counter()
        draw_images(waves, waves, 0.2, 300e3, spec, np.random.default_rng(repeat))
        synchronize(args.device)
        per_image.append((time.perf_counter() - start) / args.draws)
        fft_only.append(unavoidable_ffts(waves, args.draws, args.samples, args.device))
    t_image, t_fft = min(per_image), min(fft_only)
    print(
        f"images benchmark: {args.size} x {args.size} exit waves, {args.phonons} phonons, "
        f"{args.samples} focal-spread samples, {args.draws} draws per structure, "
        f"device {args.device}, {os.cpu_count()} CPU cores (best of {args.repeats})"
    )
    print(f"  seconds per image (draw_images)       {t_image:8.3f}")
    print(f"  seconds per image (unavoidable FFTs)  {t_fft:8.3f}")
    print(f"  ratio                                 {t_image / t_fft:8.2f}")


if __name__ == "__main__":
    main()
