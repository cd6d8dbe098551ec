"""The GPU check's CPU mode (benchmarks/gpu_check.py): the script a lent GPU machine runs must not
rot between the sessions that have one. Here it runs every check and timing on the CPU at small
sizes against a reference it prepared on the CPU, which must agree exactly (determinism)."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import gpu_check  # noqa: E402

SCRIPT = [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py")]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("gpu_check")
    subprocess.run(
        [*SCRIPT, "prepare", "--dir", str(directory), "--small", "--no-wheels"], check=True
    )
    return directory


def run(reference: Path, device: str) -> tuple[subprocess.CompletedProcess, dict]:
    out = reference / f"out_{device}"
    result = subprocess.run(
        [*SCRIPT, "run", "--device", device, "--dir", str(reference), "--small", "--out", str(out)],
        capture_output=True,
        text=True,
    )
    return result, json.loads((out / "gpu_check.json").read_text())


@pytest.fixture(scope="module")
def check(reference) -> tuple[subprocess.CompletedProcess, dict]:
    return run(reference, "cpu")


def test_cpu_mode_passes_and_reproduces_the_reference_exactly(check):
    result, record = check
    assert result.returncode == 0, result.stdout + result.stderr
    assert set(record["checks"]) == set(gpu_check.TOLERANCES)
    assert record["failed"] == []
    # The same device as the reference: every stage reproduces it bit for bit.
    assert all(value == 0.0 for value in record["checks"].values()), record["checks"]


def test_cpu_mode_times_every_stage_beside_the_study(check):
    result, record = check
    assert set(record["speed"]) == {"simulate", "image", "train", "predict", "train_columns"}
    assert all(seconds > 0 for seconds in record["speed"].values())
    for stage in record["speed"]:
        assert gpu_check.STUDY[stage][0] in result.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here: nothing would fail")
def test_on_a_machine_without_gpu_every_stage_reports_its_error_and_the_run_exits_1(reference):
    """One stage failing on a lent machine must not hide the others: each is tried alone."""
    result, record = run(reference, "gpu")
    assert result.returncode == 1
    stages = {f"check {s}" for s in gpu_check.CHECKS} | {f"time {s}" for s in gpu_check.TIMINGS}
    assert set(record["errors"]) == stages
    assert "CUDA" in record["errors"]["check train"] or "GPU" in record["errors"]["check train"]


def test_a_missing_reference_is_named(tmp_path):
    (tmp_path / "reference").mkdir()
    result = subprocess.run(
        [*SCRIPT, "run", "--dir", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert "gpu_check.py prepare" in result.stderr


def test_carried_wheels_are_the_projects_pins():
    """A wheel the GPU machine gets is the version every other install of the project gets."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = dict(
        requirement.split("==")
        for requirement in pyproject["dependencies"]
        + [r for extra in pyproject["optional-dependencies"].values() for r in extra]
        if "==" in requirement
    )
    carried = dict(wheel.split("==") for wheel in gpu_check.WHEELS)
    shared = set(carried) & set(pins)
    assert {"abtem", "ase", "zarr", "segmentation-models-pytorch", "jsonschema"} <= shared
    assert {name: carried[name] for name in shared} == {name: pins[name] for name in shared}
