"""hrtem_wf as an ordinary package: the wheel carries the config schema (package data), and a
non-editable install of it, away from the checkout, validates a config and plans the demo."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import ROOT

pytestmark = pytest.mark.workflow  # builds a wheel and runs a Snakemake dry run: seconds


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, Path]:
    """(wheel, site folder): the package built from a copy of the sources (the checkout gets no
    build/ or egg-info) and installed, without its dependencies, into a folder of its own."""
    tmp = tmp_path_factory.mktemp("package")
    source = tmp / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("*.egg-info"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp / "dist"), str(source)],
        check=True,
    )
    (wheel,) = (tmp / "dist").glob("hrtem_wf-*.whl")
    site = tmp / "site"
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], check=True)
    return wheel, site


def run_installed(site: Path, code: str, cwd: Path) -> subprocess.CompletedProcess:
    """Python code with the installed copy first on the path (the dependencies from this venv),
    run outside the checkout."""
    env = dict(os.environ, PYTHONPATH=str(site))
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True
    )


def test_wheel_carries_the_schema(installed):
    wheel, _ = installed
    names = zipfile.ZipFile(wheel).namelist()
    assert "hrtem_wf/config.schema.yaml" in names
    assert "hrtem_wf/cli/__init__.py" in names
    assert "hrtem_wf/real/match/__init__.py" in names  # every subpackage is a package


def test_installed_package_validates_and_plans(installed, tmp_path):
    _, site = installed
    for name in ("Snakefile", "workflow", "profiles", "config"):
        source = ROOT / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, tmp_path / name)
    shutil.copytree(ROOT / "tests" / "data" / "real_au", tmp_path / "tests" / "data" / "real_au")
    code = (
        "import sys, yaml, hrtem_wf.config as c\n"
        f"assert c.__file__.startswith({str(site)!r}), c.__file__\n"
        "config = c.validate(yaml.safe_load(open('config/config.yaml')))\n"
        "print(sorted(config['images']))\n"
        "from hrtem_wf.cli import main\n"
        "sys.exit(main(['plan']))\n"
    )
    result = run_installed(site, code, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "['au_small_hrtem']" in result.stdout
    assert "structures" in result.stdout and "24" in result.stdout  # the plan's table
