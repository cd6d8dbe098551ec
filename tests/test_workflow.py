"""The workflow through Snakemake: the exact job set of the default config, lint, and the
tiny config run for real end to end (then nothing left to do)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
import zarr
from ase.io import read

from conftest import job_counts

pytestmark = pytest.mark.workflow


def test_default_config_job_counts(default_config, workflow_copy):
    result = workflow_copy(default_config).snakemake("--dry-run")
    assert job_counts(result.stdout) == {
        "structure": 24, "simulate": 24, "images": 24, "dataset": 1, "train": 1,
        "evaluate": 1, "report": 1, "all": 1, "total": 77,
    }


def test_lint_is_clean(default_config, workflow_copy):
    result = workflow_copy(default_config).snakemake("--lint")
    assert "Congratulations" in result.stdout + result.stderr


def test_tiny_run_produces_every_stage(tiny_run):
    flow = tiny_run
    results = flow.path / "results"
    atoms = read(results / "structures/tiny/00000.extxyz")
    assert set(atoms.get_chemical_symbols()) == {"Au", "C"} and "particle" in atoms.arrays
    sim = zarr.open_group(results / "simulations/tiny_fp/00000.zarr", mode="r")
    assert sim["full"].shape == sim["particle"].shape == (2, 160, 160)
    images = zarr.open_group(results / "images/tiny_hrtem/00000.zarr", mode="r")
    assert images["images"].shape == images["masks"].shape == (2, 64, 64)
    table = pd.read_parquet(results / "datasets/tiny_set.parquet")
    assert len(table) == 6 and set(table["split"]) == {"train", "validation", "test"}
    # No structure in two splits; every row traces back to its structure and seeds.
    assert (table.groupby("structure_id")["split"].nunique() == 1).all()
    assert {"structure_seed", "simulation_seed", "image_seed", "structure.radius_A",
            "image.defocus_A", "image.dose_e_per_A2"} <= set(table.columns)
    model_dir = results / "models/tiny_unet/seed0"
    torch.load(model_dir / "weights.pt", weights_only=True)
    assert len(pd.read_csv(model_dir / "history.csv")) == 1
    metrics = json.loads((results / "evaluations/tiny_unet/seed0.json").read_text())
    assert 0 <= metrics["f1"] <= 1
    summary = (results / "report/summary.md").read_text()
    assert "tiny_unet" in summary
    for png in ("training_curves.png", "examples.png"):
        assert (results / "report" / png).stat().st_size > 1000
    for stage in ("structures/tiny/00000.tsv", "simulate/tiny_fp/00000.tsv",
                  "images/tiny_hrtem/00000.tsv", "train/tiny_unet/seed0.tsv"):
        assert (results / "benchmarks" / stage).exists()
    assert (results / "logs/train/tiny_unet/seed0.log").read_text().strip()


def test_second_run_has_nothing_to_do(tiny_run):
    flow = tiny_run
    again = flow.snakemake()
    assert "Nothing to be done" in again.stdout + again.stderr


def test_items_are_deterministic(tiny_run, tmp_path):
    """A structure rebuilt from the same (seed, block, index) is identical to the workflow's."""
    from hrtem_wf import cli

    flow = tiny_run
    spec = {k: v for k, v in flow.config["structures"]["tiny"].items() if k != "count"}
    out = tmp_path / "again.extxyz"
    cli.main(["structure", "--spec", json.dumps(spec), "--seed", "7", "--block", "tiny",
              "--index", "1", "--output", str(out)])
    original = read(flow.path / "results/structures/tiny/00001.extxyz")
    np.testing.assert_array_equal(read(out).positions, original.positions)
