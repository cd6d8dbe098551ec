"""GPU check: the workflow's GPU paths against this CPU's results, and their speed at the study's
sizes, in one command for a machine with one NVIDIA GPU and no network.

Here, once (needs the network; `make gpu-check-prepare`):
    .venv/bin/python benchmarks/gpu_check.py prepare
writes into .gpu_check/ (ignored by git):
    wheels/      the packages the GPU machine lacks, for CPython 3.12 manylinux (`WHEELS`)
    reference/   the tiny test config computed on this CPU: structures, exit waves, images,
                 training history and weights, a prediction; and the study's scene
On the GPU machine (README: "GPU check"; `make gpu-check` where the packages are installed):
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .gpu_check/wheels/*.whl && export PYTHONPATH=/tmp/site:src
    python3 benchmarks/gpu_check.py run --device gpu --out <dir>
It checks, from the reference's inputs, each stage on the GPU against the reference:
    simulate  exit waves of the tiny structures (abTEM on CuPy)
    images    images and labels drawn from the reference's exit waves (CuPy), same seeds
    train     loss and F1 per epoch of the tiny network trained on the reference's images (CUDA)
    predict   particle probability of a mosaic with the reference's trained weights (CUDA)
and times, at the study's sizes: a frozen phonon of the 128 x 128 A scene at 0.1 A; an image with
every effect on; 512 training images of 512 x 512 per epoch (the study's network, batch 16);
a 512 x 512 inference patch, beside the study's Table 2. Exit code 1 when a check fails.
`--device cpu --small` runs the same code on the CPU at small sizes (tests/test_gpu_check.py).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DIR = ROOT / ".gpu_check"
EPOCHS = 4
SEED = 7

# Installed on the GPU machine (its 'cuda' image: Python 3.12, torch, CuPy, numba, scipy,
# pandas, pyarrow, matplotlib, timm, ...): everything else the check imports, as pinned here.
WHEELS = [
    "abtem==1.0.11",
    "traitlets==5.16.1",  # these four: abtem.visualize imports them
    "ipywidgets==8.1.9",
    "comm==0.2.3",
    "ipython==9.18.1",
    "ase==3.29.0",
    "dask==2026.8.0",
    "partd==1.4.2",
    "locket==1.0.0",
    "pyfftw==0.15.1",
    "zarr==3.1.6",
    "numcodecs==0.16.6",
    "donfig==0.8.1.post1",
    "google-crc32c==1.9.0",
    "jsonschema==4.26.0",
    "jsonschema-specifications==2025.9.1",
    "referencing==0.37.0",
    "rpds-py==2026.9.1",
    "segmentation-models-pytorch==0.6.0",
]
PLATFORMS = [f"manylinux_2_{n}_x86_64" for n in (17, 24, 27, 28, 31, 34, 35)] + [
    "manylinux2014_x86_64",
    "manylinux1_x86_64",
]

# The study's Table 2 (DaCosta et al. 2024): (workstation GPU, Perlmutter)
STUDY = {
    "simulate": ("1.125 s per frozen phonon", "0.294 s"),
    "image": ("1.4 s per image", "0.108 s per image (node)"),
    "train": ("15 s per 512 images per epoch (Quadro P5000)", ""),
    "predict": ("0.014 s per 512 x 512 patch", ""),
    # Madsen 2018 and Larsen 2023 give no times; the column recipe's per-epoch figure is ours.
    "train_columns": ("no time given (Madsen 2018)", ""),
}
# Agreement asked of the GPU with the CPU reference (float32 on both; cuFFT vs FFTW, cuDNN with
# TF32 vs oneDNN): exit waves and image intensities to float32 FFT round-off, Poisson counts
# equal where the expected intensity agrees, labels nearly equal; training close, not equal.
TOLERANCES = {
    "exit wave max |difference|": 1e-3,
    "exit wave relative RMS difference": 1e-4,
    "image relative mean |difference|": 1e-3,
    "label pixels that differ (fraction)": 1e-3,
    "training loss relative difference (max over epochs)": 0.1,
    "training F1 difference (last epoch)": 0.05,
    "prediction max |probability difference|": 2e-2,
}


def tiny_config() -> dict:
    return yaml.safe_load((ROOT / "tests" / "configs" / "tiny.yaml").read_text())


def blocks(device: str) -> tuple[dict, dict, dict, dict]:
    """The tiny config's structure, simulation, images and model blocks, on `device`."""
    from hrtem_wf.config import validate_block

    config = tiny_config()
    structure = validate_block("structures", config["structures"]["tiny"])
    simulation = validate_block(
        "simulations", {**config["simulations"]["tiny_fp"], "device": device}
    )
    images = validate_block(
        "images", {**config["images"]["tiny_hrtem"], "device": device, "draws_per_structure": 4}
    )
    model = validate_block("models", {**config["models"]["tiny_unet"], "device": device})
    return structure, simulation, images, model


def synchronize(device: str) -> None:
    if device == "gpu":
        import cupy
        import torch

        cupy.cuda.Device().synchronize()
        torch.cuda.synchronize()


# --- the stages, as the workflow's library runs them ------------------------------------------


def simulate(atoms_list, block: dict) -> list[dict]:
    from hrtem_wf.sampling import derive_seed
    from hrtem_wf.simulations import simulate_structure

    return [
        simulate_structure(atoms, block, derive_seed(SEED, "tiny_fp", index))
        for index, atoms in enumerate(atoms_list)
    ]


def draw(waves: list[dict], block: dict) -> tuple[np.ndarray, np.ndarray]:
    from hrtem_wf.images import draw_images
    from hrtem_wf.sampling import rng_for

    images, masks = [], []
    for index, wave in enumerate(waves):
        drawn, labels, _ = draw_images(
            wave["full"],
            wave["particle"],
            tuple(wave["sampling_A"]),
            float(wave["energy_eV"]),
            block,
            rng_for(SEED, "tiny_hrtem", index),
            material="Au",
        )
        images.append(drawn)
        masks.append(labels)
    return np.concatenate(images), np.concatenate(masks)


def batches(images: np.ndarray, masks: np.ndarray, batch_size: int) -> list:
    import torch

    from hrtem_wf.models.data import normalize_min_max

    x = torch.from_numpy(np.stack([normalize_min_max(image) for image in images])[:, None])
    y = torch.from_numpy(masks.astype(np.int64))
    return [(x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, len(x), batch_size)]


def train(images: np.ndarray, masks: np.ndarray, block: dict):
    """(history [(loss, F1) per epoch], trained model on its device): a fixed order, no
    augmentation, the same initial weights on every device."""
    import torch

    from hrtem_wf.models.model import build_model, resolve_device
    from hrtem_wf.models.train import _train_one_epoch

    device = resolve_device(block["device"])
    torch.manual_seed(0)
    model = build_model(block).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=block["learning_rate"])
    data = batches(images, masks, block["batch_size"])
    history = [
        _train_one_epoch(model, data, optimizer, device, block["loss"]) for _ in range(EPOCHS)
    ]
    return history, model.eval()


def used_state(model) -> dict:
    """The state without the parameters no training step used (smp keeps the encoder stages
    beyond encoder_depth: 40 of the 45 MB here), so the reference travels within 64 MiB."""
    parameters = dict(model.named_parameters())
    return {
        name: value
        for name, value in model.state_dict().items()
        if name not in parameters or parameters[name].grad is not None
    }


def mosaic(images: np.ndarray) -> np.ndarray:
    """The first four images as a 2 x 2 micrograph."""
    return np.block([[images[0], images[1]], [images[2], images[3]]])


def predict(model, micrograph: np.ndarray, device) -> np.ndarray:
    from hrtem_wf.real.inference import predict_micrograph

    return predict_micrograph(model, micrograph, device=device, tile_px=64, overlap_px=32)


# --- prepare (here) ---------------------------------------------------------------------------


def prepare(directory: Path, small: bool, wheels: bool) -> None:
    import ase.io
    import torch

    from hrtem_wf.sampling import derive_seed
    from hrtem_wf.structures import build_structure

    reference = directory / "reference"
    reference.mkdir(parents=True, exist_ok=True)
    structure, simulation, images_block, model_block = blocks("cpu")
    atoms_list = [
        build_structure(structure, derive_seed(SEED, "tiny", index)) for index in range(3)
    ]
    ase.io.write(reference / "tiny.extxyz", atoms_list, format="extxyz")
    atoms_list = load_reference_structures(reference)  # as `run` reads them (extxyz precision)
    waves = simulate(atoms_list, simulation)
    np.savez(
        reference / "exit_waves.npz",
        **{
            f"{name}{i}": wave[name]
            for i, wave in enumerate(waves)
            for name in ("full", "particle")
        },
    )
    (reference / "exit_waves.json").write_text(json.dumps([wave["attrs"] for wave in waves]))
    images, masks = draw([{**w, **w["attrs"]} for w in waves], images_block)
    np.savez(reference / "images.npz", images=images, masks=masks)
    history, model = train(images, masks, model_block)
    torch.save(used_state(model), reference / "weights.pt")
    probability = predict(model, mosaic(images), "cpu")
    np.save(reference / "probability.npy", probability)
    (reference / "history.json").write_text(json.dumps(history))
    if not small:
        write_study_scene(reference / "study_scene.npz")
    if wheels:
        download_wheels(directory / "wheels")
    print(f"reference written to {reference}")


def write_study_scene(path: Path) -> None:
    """The study's Baseline Au scene (benchmarks/structures.py), as arrays (no czone there)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from structures import BLOCKS

    from hrtem_wf.config import validate_block
    from hrtem_wf.structures import build_structure

    atoms = build_structure(validate_block("structures", BLOCKS[next(iter(BLOCKS))]), 1)
    np.savez_compressed(
        path,
        numbers=atoms.numbers,
        positions=atoms.positions,
        cell=atoms.cell.array,
        particle=atoms.arrays["particle"],
    )


def download_wheels(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    platforms = [argument for name in PLATFORMS for argument in ("--platform", name)]
    command = [
        sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
        "--only-binary=:all:", "--python-version", "3.12", "--implementation", "cp",
        *platforms, "-d", str(folder), *WHEELS,
    ]  # fmt: skip
    subprocess.run(command, check=True)
    size_mb = sum(path.stat().st_size for path in folder.glob("*.whl")) / 2**20
    print(f"{len(list(folder.glob('*.whl')))} wheels, {size_mb:.1f} MiB, in {folder}")


# --- run (on the GPU machine; on the CPU in the tests) ----------------------------------------


def load_reference_structures(reference: Path) -> list:
    import ase.io

    return ase.io.read(reference / "tiny.extxyz", index=":", format="extxyz")


def load_reference(reference: Path):
    atoms_list = load_reference_structures(reference)
    stored = np.load(reference / "exit_waves.npz")
    attrs = json.loads((reference / "exit_waves.json").read_text())
    waves = [
        {"full": stored[f"full{i}"], "particle": stored[f"particle{i}"], **a}
        for i, a in enumerate(attrs)
    ]
    drawn = np.load(reference / "images.npz")
    history = json.loads((reference / "history.json").read_text())
    return atoms_list, waves, drawn["images"], drawn["masks"], history


def check_simulate(reference: Path, device: str) -> dict[str, float]:
    atoms_list, waves, *_ = load_reference(reference)
    simulated = simulate(atoms_list, blocks(device)[1])
    pairs = [(new[n], old[n]) for new, old in zip(simulated, waves) for n in ("full", "particle")]
    return {
        "exit wave max |difference|": max(float(np.abs(a - b).max()) for a, b in pairs),
        "exit wave relative RMS difference": max(
            float(np.linalg.norm(a - b) / np.linalg.norm(b)) for a, b in pairs
        ),
    }


def check_images(reference: Path, device: str) -> dict[str, float]:
    _, waves, images, masks, _ = load_reference(reference)
    new_images, new_masks = draw(waves, blocks(device)[2])
    return {
        "image relative mean |difference|": float(
            np.abs(new_images - images).mean() / np.abs(images).mean()
        ),
        "label pixels that differ (fraction)": float((new_masks != masks).mean()),
    }


def check_train(reference: Path, device: str) -> dict[str, float]:
    _, _, images, masks, history = load_reference(reference)
    new_history, _ = train(images, masks, blocks(device)[3])
    return {
        "training loss relative difference (max over epochs)": max(
            abs(new[0] - old[0]) / old[0] for new, old in zip(new_history, history)
        ),
        "training F1 difference (last epoch)": abs(new_history[-1][1] - history[-1][1]),
    }


def check_predict(reference: Path, device: str) -> dict[str, float]:
    import torch

    from hrtem_wf.models.model import build_model, resolve_device

    images = load_reference(reference)[2]
    torch_device = resolve_device(device)
    model = build_model(blocks(device)[3])
    state = torch.load(reference / "weights.pt", map_location="cpu")
    unused = model.load_state_dict(state, strict=False)  # missing: parameters no step used
    assert not unused.unexpected_keys, unused.unexpected_keys
    probability = predict(model.to(torch_device).eval(), mosaic(images), torch_device)
    expected = np.load(reference / "probability.npy")
    return {"prediction max |probability difference|": float(np.abs(probability - expected).max())}


#: Each stage on the device from the reference's inputs, against the reference's outputs.
CHECKS = {
    "simulate": check_simulate,
    "images": check_images,
    "train": check_train,
    "predict": check_predict,
}


def seconds(function, device: str, repeats: int) -> float:
    """Mean seconds of `function` over `repeats` calls after one warm-up call."""
    function()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        function()
    synchronize(device)
    return (time.perf_counter() - start) / repeats


def time_simulate(reference: Path, device: str, small: bool) -> tuple[float, str]:
    from ase import Atoms
    from simulation import STUDY_SIMULATION

    from hrtem_wf.config import validate_block
    from hrtem_wf.simulations.device import use_device
    from hrtem_wf.simulations.multislice import displaced_configurations, exit_waves

    phonons = 2
    if small:
        atoms = load_reference_structures(reference)[0]
        block = validate_block("simulations", {**blocks(device)[1], "frozen_phonons": phonons})
    else:
        scene = np.load(reference / "study_scene.npz")
        atoms = Atoms(scene["numbers"], scene["positions"], cell=scene["cell"], pbc=[1, 1, 0])
        sim = {**STUDY_SIMULATION, "device": device, "frozen_phonons": phonons}
        block = validate_block("simulations", sim)
    configurations = displaced_configurations(atoms, phonons, block["debye_waller_sigma_A"], 1)
    with use_device(device):
        per_phonon = seconds(lambda: exit_waves(configurations, block), device, 1) / phonons
    cell = np.diag(atoms.cell.array)
    return (
        per_phonon,
        f"per frozen phonon: {cell[0]:.0f} x {cell[1]:.0f} x {cell[2]:.0f} A, {len(atoms)} atoms, "
        f"{block['potential_sampling_A']} A, {block['slice_thickness_A']} A slices",
    )


def time_image(reference: Path, device: str, small: bool) -> tuple[float, str]:
    from images import block as study_images_block

    from hrtem_wf.config import validate_block
    from hrtem_wf.images import draw_images

    size, crop, samples, draws = (128, 64, 3, 2) if small else (640, 512, 25, 4)
    phase = np.random.default_rng(0).normal(0.0, 0.3, (8, size, size))
    waves = np.exp(1j * phase).astype(np.complex64)
    spec = validate_block("images", study_images_block(draws, samples, device, crop))

    def draw_all():
        draw_images(waves, waves, 0.2, 300e3, spec, np.random.default_rng(1), "Au")

    return (
        seconds(draw_all, device, 1) / draws,
        f"per image, every effect on: {size} x {size} exit waves x 8 phonons, {samples} defocus "
        f"samples, {crop} x {crop} crop",
    )


def study_network(device: str, small: bool):
    """(the study's network on the device, its block, the image size)."""
    import torch
    from training import STUDY_BLOCK

    from hrtem_wf.models.model import build_model, resolve_device

    block = {**STUDY_BLOCK, "device": device}
    torch.manual_seed(0)
    return build_model(block).to(resolve_device(device)), block, 64 if small else 512


def time_train(reference: Path, device: str, small: bool) -> tuple[float, str]:
    import torch

    from hrtem_wf.models.train import _train_one_epoch

    model, block, image_px = study_network(device, small)
    steps, batch = 2 if small else 8, block["batch_size"]
    optimizer = torch.optim.Adam(model.parameters(), lr=block["learning_rate"])
    shape = (batch, image_px, image_px)
    data = [(torch.rand(batch, 1, image_px, image_px), torch.randint(0, 2, shape))] * steps
    where = next(model.parameters()).device

    def one_pass():
        _train_one_epoch(model, data, optimizer, where, block["loss"])

    return (
        seconds(one_pass, device, 1) * 512 / (steps * batch),
        f"per 512 images of {image_px} x {image_px} per epoch: the study's network, batch "
        f"{batch}, {steps} steps timed (training pass, no validation)",
    )


def time_train_columns(reference: Path, device: str, small: bool) -> tuple[float, str]:
    """A training step of the column recipe's network (config/recipes/other_families.yaml,
    madsen_columns_unet: UNet resnet18 depth 3, 2 output maps, MSE of the softmax), per 1000
    images of 256 x 256 (its on-the-fly GPU recipe, madsen_columns_fly, draws 3000 per epoch)."""
    import torch

    from hrtem_wf.config import validate_block
    from hrtem_wf.models.model import build_model, resolve_device
    from hrtem_wf.models.train import _train_one_epoch

    recipe = yaml.safe_load((ROOT / "config/recipes/other_families.yaml").read_text())
    block = validate_block("models", {**recipe["models"]["madsen_columns_unet"], "device": device})
    torch.manual_seed(0)
    model = build_model(block, 1, 2).to(resolve_device(device))
    image_px, steps, batch = (64, 2, 4) if small else (256, 8, 16)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    targets = torch.softmax(torch.rand(batch, 2, image_px, image_px), dim=1)
    data = [(torch.rand(batch, 1, image_px, image_px), targets)] * steps
    where = next(model.parameters()).device

    def one_pass():
        _train_one_epoch(model, data, optimizer, where, {}, task="columns")

    return (
        seconds(one_pass, device, 1) * 1000 / (steps * batch),
        f"per 1000 images of {image_px} x {image_px}: the column recipe's network, batch "
        f"{batch}, {steps} steps timed (training pass, no drawing)",
    )


def time_predict(reference: Path, device: str, small: bool) -> tuple[float, str]:
    import torch

    model, _, image_px = study_network(device, small)
    patch = torch.rand(1, 1, image_px, image_px, device=next(model.parameters()).device)
    with torch.no_grad():
        per_patch = seconds(lambda: model.eval()(patch), device, 10)
    return per_patch, f"per {image_px} x {image_px} inference patch, batch 1"


#: Seconds of each stage at the study's sizes (small: the tiny config's), and what was timed.
TIMINGS = {
    "simulate": time_simulate,
    "image": time_image,
    "train": time_train,
    "predict": time_predict,
    "train_columns": time_train_columns,
}


def attempt(name: str, errors: dict[str, str], function, *args):
    """function(*args), or None with its error recorded: one failing stage must not hide the
    others' figures on a machine lent for minutes."""
    try:
        return function(*args)
    except Exception as error:  # noqa: BLE001 - reported, and the run exits 1
        traceback.print_exc()
        errors[name] = f"{type(error).__name__}: {error}"
        return None


def run(directory: Path, device: str, small: bool, out: Path | None) -> int:
    from hrtem_wf.memory import huge_pages_for_tensors

    huge_pages_for_tensors()  # as every `hrtem-wf` job does
    reference = directory / "reference"
    if not (reference / "history.json").exists():
        raise SystemExit(f"no reference in {reference}: run `benchmarks/gpu_check.py prepare`")
    start = time.perf_counter()
    machine = f"{platform.node()}, Python {platform.python_version()}, {os.cpu_count()} cores"
    if device == "gpu":
        import torch

        machine += f", {torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU'}"
    print(f"GPU check on {device}: {machine}", flush=True)

    sys.path.insert(0, str(ROOT / "benchmarks"))  # images.py, simulation.py, training.py
    errors: dict[str, str] = {}
    figures: dict[str, float] = {}
    for stage, check in CHECKS.items():
        figures |= attempt(f"check {stage}", errors, check, reference, device) or {}
    lines = ["| check | value | tolerance | |", "|---|---|---|---|"]
    failed = [name for name, value in figures.items() if not value <= TOLERANCES[name]]
    for name, value in figures.items():
        verdict = "FAIL" if name in failed else "ok"
        lines.append(f"| {name} | {value:.2e} | {TOLERANCES[name]:.0e} | {verdict} |")
    print("\n".join(lines), flush=True)

    timings = {}
    for stage, timer in TIMINGS.items():
        timed = attempt(f"time {stage}", errors, timer, reference, device, small)
        if timed is not None:
            timings[stage] = timed
            print(f"timed {stage}: {timed[0]:.3f} s", flush=True)
    lines += ["", "| stage | seconds | what | study (Table 2) |", "|---|---|---|---|"]
    for stage, (value, what) in timings.items():
        study = ", ".join(part for part in STUDY[stage] if part)
        lines.append(f"| {stage} | {value:.3f} | {what} | {study} |")
    lines += [f"\nerror in {name}: {text}" for name, text in errors.items()]
    print("\n".join(lines[-len(timings) - 2 - len(errors) :]))
    failed += list(errors)
    total = time.perf_counter() - start
    print(f"\n{len(failed)} failed (checks beyond tolerance, errors); {total:.0f} s in all")
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "gpu_check.md").write_text(
            f"GPU check on {device}: {machine}\n\n" + "\n".join(lines)
        )
        record = {"machine": machine, "checks": figures, "failed": failed, "errors": errors}
        record["seconds"] = total
        record["speed"] = {stage: value for stage, (value, _) in timings.items()}
        (out / "gpu_check.json").write_text(json.dumps(record, indent=2))
    return 1 if failed else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["prepare", "run"])
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="default: .gpu_check")
    parser.add_argument("--device", default="gpu", choices=["cpu", "gpu"])
    parser.add_argument("--small", action="store_true", help="tiny sizes (the CPU mode)")
    parser.add_argument("--no-wheels", action="store_true", help="prepare: reference only")
    parser.add_argument("--out", type=Path, help="run: write gpu_check.md and .json here")
    args = parser.parse_args()
    if args.action == "prepare":
        prepare(args.dir, args.small, wheels=not args.no_wheels)
    else:
        sys.exit(run(args.dir, args.device, args.small, args.out))


if __name__ == "__main__":
    main()
