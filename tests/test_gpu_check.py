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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import gpu_check  # noqa: E402


@pytest.fixture(scope="module")
def check(tmp_path_factory) -> tuple[subprocess.CompletedProcess, dict]:
    directory = tmp_path_factory.mktemp("gpu_check")
    script = [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py")]
    common = ["--dir", str(directory), "--small"]
    subprocess.run([*script, "prepare", *common, "--no-wheels"], check=True, cwd=ROOT)
    out = directory / "out"
    result = subprocess.run(
        [*script, "run", "--device", "cpu", *common, "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    record = json.loads((out / "gpu_check.json").read_text()) if result.returncode == 0 else {}
    return result, record


def test_cpu_mode_passes_and_reproduces_the_reference_exactly(check):
    result, record = check
    assert result.returncode == 0, result.stdout + result.stderr
    assert set(record["checks"]) == set(gpu_check.TOLERANCES)
    assert record["failed"] == []
    # The same device as the reference: every stage reproduces it bit for bit.
    assert all(value == 0.0 for value in record["checks"].values()), record["checks"]


def test_cpu_mode_times_every_stage_beside_the_study(check):
    result, record = check
    assert set(record["speed"]) == {"simulate", "image", "train", "predict"}
    assert all(seconds > 0 for seconds in record["speed"].values())
    for stage in record["speed"]:
        assert gpu_check.STUDY[stage][0] in result.stdout


def test_a_failed_check_exits_1(tmp_path):
    (tmp_path / "reference").mkdir()
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "run", "--dir", str(tmp_path)],
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
