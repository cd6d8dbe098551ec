"""Shared fixtures: the repository root, configs, and a runner for Snakemake on a temporary
copy of the workflow (so tests never write into the checkout)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from hrtem_wf.config import validate_block
from hrtem_wf.memory import huge_pages_for_tensors

huge_pages_for_tensors()  # as every `hrtem-wf` job does, before torch is imported

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "src" / "hrtem_wf" / "config.schema.yaml"
BIN = Path(sys.executable).parent  # the venv's bin: snakemake and hrtem-wf live there


# The tiny segmentation model the training, evaluation and benchmark tests train: seconds on CPU.
TINY_MODEL_BLOCK = validate_block(
    "models",
    {
        "dataset": "toy",
        "seeds": [0, 1],
        "encoder": "resnet18",
        "encoder_depth": 3,
        "decoder_channels": [16, 8, 8],
        "epochs": 2,
        "batch_size": 4,
        "learning_rate": 1.0e-3,
        "lr_decay_per_epoch": 0.8,
        "augment_d4": True,
        "device": "cpu",
    },
)


# --- exit waves and the image block shared by the image-formation tests ---------------------

ENERGY_EV = 300e3
SAMPLING_A = (0.2, 0.2)
CS_A = -19130.0
CS = {"C30": CS_A}

# The demo config's image block, copied so other edits of config.yaml cannot change these tests
# (validated: the defaults filled as the workflow does).
BLOCK = validate_block(
    "images",
    {
        "simulations": "au_small_fp",
        "device": "cpu",
        "draws_per_structure": 4,
        "defocus_A": {"distribution": "uniform", "low": -100.0, "high": 100.0},
        "aberrations": {"preset": "none", "coefficients": {"C30": CS_A}},
        "focal_spread": {
            "method": "incoherent",
            "sigma_A": {"distribution": "fixed", "value": 15.0},
            "samples": 9,
            "extent_sigmas": 3.0,
        },
        "frozen_phonons": "all",
        "plasmons": None,
        "dose_e_per_A2": {"distribution": "uniform", "low": 400.0, "high": 1000.0},
        "detector": {"pixel_size_A": 0.2, "mtf": None, "blur_sigma_px": 0.0, "median_filter_px": 3},
        "crop_px": [96, 96],
        "label": {
            "method": "phase",
            "threshold": 0.2618,
            "smoothing_sigma_px": 3.0,
            "smoothing_threshold": 0.1,
        },
    },
)


def disk(shape, radius_px, center=None):
    ny, nx = shape
    cy, cx = (ny // 2, nx // 2) if center is None else center
    y, x = np.mgrid[:ny, :nx]
    return (y - cy) ** 2 + (x - cx) ** 2 < radius_px**2


def weak_phase_object(shape, phonons=1, seed=0, strength_rad=0.05):
    rng = np.random.default_rng(seed)
    return np.exp(1j * strength_rad * rng.standard_normal((phonons, *shape))).astype(np.complex64)


def demo_waves(shape=(128, 128), phonons=3):
    particle = np.stack(
        [np.exp(1j * 0.4 * disk(shape, 20, (60 + 3 * p, 64))) for p in range(phonons)]
    ).astype(np.complex64)
    return particle * weak_phase_object(shape, phonons, seed=1), particle


# The demo config's jobs per rule (config/config.yaml): the dry run's and the config's count.
DEMO_JOBS = {
    "structures": 24,
    "simulations": 24,
    "images": 24,
    "datasets": 1,
    "models": 2,
    "evaluations": 2,
    "scores": 2,
    "realism": 1,
    "report": 1,
    "all": 1,
}


def build_validated(block: dict, seed: int):
    """build_structure on a hand-written structures block, validated and filled as the workflow
    does before any job."""
    from hrtem_wf.config import validate_block
    from hrtem_wf.structures import build_structure

    return build_structure(validate_block("structures", block), seed)


def load_config(name: str = "config/config.yaml") -> dict:
    """A shipped config as the stages see it: validated, defaults filled."""
    from hrtem_wf.config import validate

    return validate(yaml.safe_load((ROOT / name).read_text()), SCHEMA)


def iou(a, b):
    """Intersection over union of two boolean masks."""
    return (a & b).sum() / (a | b).sum()


def train_seeds(block: dict, dataset: tuple, root: Path) -> list[Path]:
    """Train every seed of `block` on `dataset` (zarr, parquet): root/models/tiny/seed<k>."""
    from hrtem_wf.models import train_model  # torch: loaded only by the tests that train

    model_dirs = []
    for seed in block["seeds"]:
        model_dir = root / "models" / "tiny" / f"seed{seed}"
        train_model(block, *dataset, seed=seed, out_dir=str(model_dir), log=lambda line: None)
        model_dirs.append(model_dir)
    return model_dirs


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> tuple:
    """A synthetic training dataset in the workflow's format: (zarr, parquet)."""
    from hrtem_wf.models.synthetic import write_synthetic_dataset

    return write_synthetic_dataset(tmp_path_factory.mktemp("dataset"))


@pytest.fixture
def default_config() -> dict:
    return load_config()


@pytest.fixture
def tiny_config() -> dict:
    return load_config("tests/configs/tiny.yaml")


class WorkflowCopy:
    """Snakefile, workflow/, profiles/ and tests/data/ copied into a temporary directory with a
    given config.

    `package=True` also copies src/hrtem_wf and puts it first on PYTHONPATH, so a test can edit
    the library that this copy (the Snakefile and the hrtem-wf jobs) runs."""

    def __init__(self, path: Path, config: dict | None = None, package: bool = False):
        self.path = path
        if config is not None:
            # tests/data: the demo's real set (config/config.yaml names it by relative path)
            for name in ("Snakefile", "workflow", "profiles", "tests/data"):
                source = ROOT / name
                if source.is_dir():
                    shutil.copytree(source, path / name)
                else:
                    shutil.copy(source, path / name)
            self.write_config(config)
        if package and not (path / "src").exists():
            shutil.copytree(
                ROOT / "src" / "hrtem_wf",
                path / "src" / "hrtem_wf",
                ignore=shutil.ignore_patterns("__pycache__"),
            )

    @property
    def config(self) -> dict:
        return yaml.safe_load((self.path / "config" / "config.yaml").read_text())

    def write_config(self, config: dict) -> None:
        (self.path / "config").mkdir(exist_ok=True)
        (self.path / "config" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))

    def clone(self, destination: Path) -> WorkflowCopy:
        """A copy of this directory, results and Snakemake's metadata included (mtimes kept)."""
        shutil.copytree(self.path, destination, symlinks=True)
        return WorkflowCopy(destination)

    def snakemake(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
        if (self.path / "src").exists():
            env["PYTHONPATH"] = str(self.path / "src")
        result = subprocess.run(
            [str(BIN / "snakemake"), "--cores", "2", *args],
            cwd=self.path,
            env=env,
            capture_output=True,
            text=True,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"snakemake {args} failed:\n{result.stdout}\n{result.stderr}")
        return result


def job_counts(output: str) -> dict[str, int]:
    """Parse the 'Job stats' table that Snakemake prints."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Job stats")) + 3
    counts = {}
    for line in lines[start:]:
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            break
        counts[parts[0]] = int(parts[1])
    return counts


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """The tiny config run once for real, with a copy of the library: clone it to change it."""
    flow = WorkflowCopy(
        tmp_path_factory.mktemp("tiny"), load_config("tests/configs/tiny.yaml"), package=True
    )
    flow.snakemake()
    return flow


@pytest.fixture
def workflow_copy(tmp_path):
    def make(config: dict) -> WorkflowCopy:
        return WorkflowCopy(tmp_path, config)

    return make
