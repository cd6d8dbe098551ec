"""After a kill: a lock left in .snakemake/locks by a run killed hard stops `make demo` (and
`make recipes-smoke`) before Snakemake starts, with a message that says what happened and to run
`make unlock`. No lock, or a snakemake still working in the directory, lets the target through.
The Makefile runs in a temporary directory with VENV and PYTHON pointing nowhere, so a target
that gets past the check fails at once instead of installing anything."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")

STALE = "a previous run was killed"


def make(directory: Path, *targets: str) -> subprocess.CompletedProcess:
    command = [
        "make",
        "--no-print-directory",
        "-f",
        str(ROOT / "Makefile"),
        *targets,
        f"VENV={directory / 'no-venv'}",
        "PYTHON=false",
    ]
    return subprocess.run(command, cwd=directory, capture_output=True, text=True, timeout=60)


def leave_lock(directory: Path) -> None:
    """What `snakemake` leaves when killed with SIGKILL: its lock files (one path per line)."""
    locks = directory / ".snakemake" / "locks"
    locks.mkdir(parents=True)
    (locks / "0.input.lock").write_text("results/structures/au_small/00000.extxyz\n")
    (locks / "0.output.lock").write_text("results/report/summary.md\n")


def test_demo_after_a_kill_says_what_to_do(tmp_path):
    leave_lock(tmp_path)
    result = make(tmp_path, "demo")
    assert result.returncode != 0
    assert STALE in result.stderr and "make unlock" in result.stderr
    assert str(tmp_path.resolve() / ".snakemake" / "locks") in result.stderr
    assert "pyproject.toml" not in result.stderr  # stopped before install


def test_no_lock_lets_demo_through(tmp_path):
    (tmp_path / ".snakemake" / "locks").mkdir(parents=True)  # what a clean run leaves
    result = make(tmp_path, "check-lock")
    assert result.returncode == 0 and result.stderr == ""
    result = make(tmp_path, "demo")  # past the check, to the (deliberately missing) install
    assert STALE not in result.stderr and "pyproject.toml" in result.stderr


@pytest.mark.skipif(not Path("/proc/self/cwd").exists(), reason="finds processes through /proc")
def test_a_running_snakemake_keeps_its_lock(tmp_path):
    leave_lock(tmp_path)
    (tmp_path / "bin").mkdir()
    fake = tmp_path / "bin" / "snakemake"  # a process whose command is `.../snakemake`
    fake.write_text(f"#!{sys.executable}\nimport time\ntime.sleep(60)\n")
    fake.chmod(0o755)
    process = subprocess.Popen([str(fake), "--cores", "1"], cwd=tmp_path)
    try:
        result = make(tmp_path, "check-lock")
    finally:
        process.kill()
        process.wait()
    assert result.returncode == 0 and result.stderr == ""  # Snakemake's own message applies
    result = make(tmp_path, "check-lock")
    assert result.returncode != 0 and STALE in result.stderr


def test_recipes_smoke_checks_its_own_directories(tmp_path):
    leave_lock(tmp_path / "results" / "smoke" / "other_families")
    result = make(tmp_path, "recipes-smoke")
    assert result.returncode != 0 and STALE in result.stderr
    assert "results/smoke/other_families/.snakemake/locks" in result.stderr


def test_unlock_runs_snakemake_unlock():
    result = subprocess.run(
        ["make", "--dry-run", "--no-print-directory", "unlock"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0
    assert "snakemake --profile profiles/local --cores all --unlock" in result.stdout
