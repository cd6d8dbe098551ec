"""Incremental reruns through Snakemake, with its default rerun triggers: a change reruns exactly
the targets it touches. Each test clones the finished tiny run, changes one thing, checks the
dry run's job set, then runs for real."""

from __future__ import annotations

import copy
import hashlib
import shutil
from pathlib import Path

import pandas as pd
import pytest

from conftest import job_counts

pytestmark = pytest.mark.workflow

DOWNSTREAM_OF_IMAGES = {"datasets": 1, "models": 1, "evaluations": 1, "report": 1, "all": 1}


def fingerprints(root: Path, pattern: str) -> dict[str, str]:
    """sha256 of every file under the matching outputs (a zarr store is a directory)."""
    prints = {}
    for path in sorted(root.glob(pattern)):
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        digest = hashlib.sha256()
        for file in files:
            digest.update(file.read_bytes())
        prints[str(path.relative_to(root))] = digest.hexdigest()
    return prints


def changed(tiny_run, tmp_path, edit) -> tuple:
    flow = tiny_run.clone(tmp_path / "flow")
    config = copy.deepcopy(flow.config)
    edit(config)
    flow.write_config(config)
    return flow, flow.snakemake("--dry-run")


def run_and_check_done(flow) -> None:
    flow.snakemake()
    assert "Nothing to be done" in flow.snakemake("--dry-run").stdout


def test_dose_change_reruns_only_image_draws_and_downstream(tiny_run, tmp_path):
    before = fingerprints(tiny_run.path, "results/s*/*/*")
    flow, plan = changed(
        tiny_run,
        tmp_path,
        lambda c: c["images"]["tiny_hrtem"].update(
            dose_e_per_A2={"distribution": "uniform", "low": 100.0, "high": 200.0}
        ),
    )
    assert job_counts(plan.stdout) == {"images": 3, **DOWNSTREAM_OF_IMAGES, "total": 8}
    assert "Params have changed" in plan.stdout
    run_and_check_done(flow)
    assert fingerprints(flow.path, "results/s*/*/*") == before  # structures, simulations
    assert fingerprints(flow.path, "results/images/*/*") != fingerprints(
        tiny_run.path, "results/images/*/*"
    )


def test_frozen_phonon_change_reruns_simulations_not_structures(tiny_run, tmp_path):
    flow, plan = changed(
        tiny_run, tmp_path, lambda c: c["simulations"]["tiny_fp"].update(frozen_phonons=1)
    )
    assert job_counts(plan.stdout) == {
        "simulations": 3,
        "images": 3,
        **DOWNSTREAM_OF_IMAGES,
        "total": 11,
    }
    run_and_check_done(flow)
    assert fingerprints(flow.path, "results/structures/*/*") == fingerprints(
        tiny_run.path, "results/structures/*/*"
    )


def test_learning_rate_change_retrains_only_that_model(tiny_run, tmp_path):
    flow, plan = changed(
        tiny_run, tmp_path, lambda c: c["models"]["tiny_unet"].update(learning_rate=5e-4)
    )
    assert job_counts(plan.stdout) == {
        "models": 1,
        "evaluations": 1,
        "report": 1,
        "all": 1,
        "total": 4,
    }
    run_and_check_done(flow)


def test_growing_a_set_runs_only_the_new_items(tiny_run, tmp_path):
    before = fingerprints(tiny_run.path, "results/[sif]*/*/*")  # structures, simulations, images
    flow, plan = changed(tiny_run, tmp_path, lambda c: c["structures"]["tiny"].update(count=5))
    assert job_counts(plan.stdout) == {
        "structures": 2,
        "simulations": 2,
        "images": 2,
        **DOWNSTREAM_OF_IMAGES,
        "total": 11,
    }
    run_and_check_done(flow)
    after = fingerprints(flow.path, "results/[sif]*/*/*")
    assert {k: after[k] for k in before} == before  # the first three items: byte-identical
    assert len(after) == len(before) + 6


def test_simulations_and_images_redone_from_scratch_are_byte_identical(tiny_run, tmp_path):
    """Bit-identical reruns: abTEM's FFTW is planned from the shape alone (FFTW_ESTIMATE)."""
    outputs = "results/[si][im]*/*/*"  # simulations, images
    before = fingerprints(tiny_run.path, outputs)
    flow = tiny_run.clone(tmp_path / "flow")
    for stage in ("simulations", "images"):
        shutil.rmtree(flow.path / "results" / stage)
    flow.snakemake(*before)  # the six stores as targets
    assert len(before) == 6 and fingerprints(flow.path, outputs) == before


def test_new_image_block_runs_no_simulation(tiny_run, tmp_path):
    def add_block(config):
        config["images"]["tiny_low_dose"] = {
            **config["images"]["tiny_hrtem"],
            "dose_e_per_A2": 150.0,
        }
        config["datasets"]["tiny_set"]["images"].append("tiny_low_dose")

    flow, plan = changed(tiny_run, tmp_path, add_block)
    assert job_counts(plan.stdout) == {"images": 3, **DOWNSTREAM_OF_IMAGES, "total": 8}
    run_and_check_done(flow)


def test_library_code_change_reruns_its_stage_but_comments_do_not(tiny_run, tmp_path):
    flow = tiny_run.clone(tmp_path / "flow")
    module = flow.path / "src/hrtem_wf/images/formation.py"
    source = module.read_text()
    module.write_text(source.replace('"""', '"""Edited docstring. ', 1) + "\n# a new comment\n")
    assert "Nothing to be done" in flow.snakemake("--dry-run").stdout

    module.write_text(source + "\nDETECTOR_GAIN = 1.0  # a code change\n")
    plan = flow.snakemake("--dry-run")
    assert job_counts(plan.stdout) == {"images": 3, **DOWNSTREAM_OF_IMAGES, "total": 8}
    run_and_check_done(flow)


def test_on_the_fly_training_retrains_on_its_images_spec_without_writing_images(tiny_run, tmp_path):
    """A model that draws its training images on the fly with an images block of its own: adding
    it, then changing that block's dose range, retrains the model and nothing upstream."""
    retrain_only = {"models": 1, "evaluations": 1, "report": 1, "all": 1, "total": 4}

    def draw_on_the_fly(config):
        config["images"]["tiny_fly"] = copy.deepcopy(config["images"]["tiny_hrtem"])
        config["models"]["tiny_unet"]["on_the_fly"] = {"images": "tiny_fly", "workers": 0}

    before = fingerprints(tiny_run.path, "results/[sid]*/*")
    flow, plan = changed(tiny_run, tmp_path, draw_on_the_fly)
    assert job_counts(plan.stdout) == retrain_only
    run_and_check_done(flow)
    assert not (flow.path / "results/images/tiny_fly").exists()
    drawn = flow.path / "results/models/tiny_unet/seed0/drawn.parquet"
    doses = pd.read_parquet(drawn)["image.dose_e_per_A2"]
    assert doses.between(400.0, 800.0).all()

    config = flow.config
    config["images"]["tiny_fly"]["dose_e_per_A2"] = {
        "distribution": "uniform",
        "low": 100.0,
        "high": 200.0,
    }
    flow.write_config(config)
    plan = flow.snakemake("--dry-run")
    assert job_counts(plan.stdout) == retrain_only
    assert "Params have changed" in plan.stdout
    run_and_check_done(flow)
    assert pd.read_parquet(drawn)["image.dose_e_per_A2"].between(100.0, 200.0).all()
    assert fingerprints(flow.path, "results/[sid]*/*") == before  # stores, images, dataset
