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

from conftest import DEMO_JOBS, job_counts

pytestmark = pytest.mark.workflow


def test_default_config_job_counts(default_config, workflow_copy):
    result = workflow_copy(default_config).snakemake("--dry-run")
    assert job_counts(result.stdout) == {**DEMO_JOBS, "total": 82}


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
    assert {
        "structure_seed",
        "simulation_seed",
        "image_seed",
        "structure.radius_A",
        "image.defocus_A",
        "image.dose_e_per_A2",
    } <= set(table.columns)
    model_dir = results / "models/tiny_unet/seed0"
    torch.load(model_dir / "weights.pt", weights_only=True)
    assert len(pd.read_csv(model_dir / "history.csv")) == 1
    metrics = json.loads((results / "evaluations/tiny_unet/seed0.json").read_text())
    assert 0 <= metrics["f1"] <= 1
    summary = (results / "report/summary.md").read_text()
    assert "tiny_unet" in summary
    for png in ("training_curves.png", "examples.png"):
        assert (results / "report" / png).stat().st_size > 1000
    for stage in (
        "structures/tiny/00000.tsv",
        "simulations/tiny_fp/00000.tsv",
        "images/tiny_hrtem/00000.tsv",
        "models/tiny_unet/seed0.tsv",
    ):
        assert (results / "benchmarks" / stage).exists()
    assert (results / "logs/models/tiny_unet/seed0.log").read_text().strip()


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
    cli.main(
        [
            "structures",
            "--spec",
            json.dumps(spec),
            "--seed",
            "7",
            "--block",
            "tiny",
            "--index",
            "1",
            "--output",
            str(out),
        ]
    )
    original = read(flow.path / "results/structures/tiny/00001.extxyz")
    np.testing.assert_array_equal(read(out).positions, original.positions)


def test_all_effects_config_records_every_parameter(tiny_run, tmp_path):
    """config/all_effects.yaml (the study's "All simulation effects" images) through the images
    CLI on a real simulation store, then into a dataset: its Parquet table carries every drawn
    parameter of every effect."""
    import subprocess

    from conftest import BIN, SCHEMA, load_config
    from hrtem_wf.config import validate
    from hrtem_wf.datasets.gather import build_dataset
    from hrtem_wf.images import PRESETS

    config = validate(load_config("config/all_effects.yaml"), SCHEMA)
    (block,) = config["images"].values()
    spec = {**block, "simulations": "tiny_fp", "crop_px": [64, 64], "draws_per_structure": 6}
    store = tmp_path / "images.zarr"
    subprocess.run(
        [
            str(BIN / "hrtem-wf"),
            "images",
            "--spec",
            json.dumps(spec),
            "--seed",
            "1",
            "--block",
            "all_effects",
            "--index",
            "0",
            "--simulation",
            str(tiny_run.path / "results/simulations/tiny_fp/00000.zarr"),
            "--output",
            str(store),
        ],
        check=True,
    )
    table = build_dataset(
        {"images": ["all_effects"], "split": {"train": 0.6, "validation": 0.2, "test": 0.2}},
        "all_effects",
        [str(store)],
        1,
        str(tmp_path / "d.zarr"),
        str(tmp_path / "d.parquet"),
    )
    table = pd.read_parquet(tmp_path / "d.parquet")
    assert len(table) == 6
    for symbol, value in PRESETS["team05_table_s1"].items():
        assert np.allclose(table[f"image.aberration_{symbol}"], value)
    assert (table["image.aberration_preset"] == "team05_table_s1").all()
    assert (table["image.plasmon_weight"] == 0.5).all() and (
        table["image.plasmon_background"] == 1.0
    ).all()
    assert (table["image.focal_spread_samples"] == 25).all()
    assert (table["image.focal_spread_sigma_A"] == 15.0).all()
    assert (table["image.frozen_phonons_used"] == 2).all()  # every phonon of the store
    assert set(table["image.dose_e_per_A2"]) <= {100, 300, 600, 900, 1200}
    assert table["image.defocus_A"].nunique() == 6
    assert (table["image.label_threshold"] == 0.2618).all()
    assert (table["image.material"] == "Au").all() and (table["image.median_filter_px"] == 3).all()
    for column in (
        "image.crop_y0_px",
        "image.crop_x0_px",
        "image.mtf_c1",
        "image.blur_sigma_px",
        "image.detector_mtf",
        "image.expected_counts_per_px",
        "simulation.frozen_phonons",
        "simulation.projection",
        "structure.radius_A",
        "structure.substrate_thickness_A",
    ):
        assert column in table.columns


def test_structure_previews(tiny_run, tmp_path):
    """`snakemake previews`: one PNG per structure set from its first structures, no rebuild."""
    flow = tiny_run.clone(tmp_path / "previews")
    result = flow.snakemake("previews")
    assert job_counts(result.stdout + result.stderr) == {"preview": 1, "previews": 1, "total": 2}
    png = flow.path / "results/structures/tiny/preview.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000


def test_snakemake_report_bundles_the_registered_figures(tiny_run, tmp_path):
    """`snakemake --report`: one HTML file with the report's figures and their captions."""
    flow = tiny_run.clone(tmp_path / "html")
    flow.snakemake("--report", "report.html")
    html = (flow.path / "report.html").read_text()
    for name in ("summary.md", "training_curves.png", "examples.png", "data_distributions.png"):
        assert name in html, name
    assert "V90 / V95" in html  # the summary's caption
