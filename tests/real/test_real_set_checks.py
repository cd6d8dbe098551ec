"""Real sets are checked when the workflow starts, before any job: every micrograph readable,
each with a mask of its shape, nothing else in the folders (hidden files aside); each problem a
line naming the set, the file and what is wrong (issue 25's probes among them)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from conftest import ROOT
from hrtem_wf.config import ConfigError
from hrtem_wf.real.sets import check_real_sets

REAL = ROOT / "tests" / "data" / "real_au"  # CC-BY-4.0, see its README


@pytest.fixture
def real_set(tmp_path):
    """A copy of the three real tiles and their masks, as a `pairs` real set block."""
    for folder in ("micrographs", "masks"):
        shutil.copytree(REAL / folder, tmp_path / folder)
    block = {
        "format": "pairs",
        "micrographs": str(tmp_path / "micrographs"),
        "masks": str(tmp_path / "masks"),
        "pixel_size_A": None,
    }
    return tmp_path, block


def _problems(block) -> str:
    with pytest.raises(ConfigError) as error:
        check_real_sets({"real_sets": {"mine": block}})
    return str(error.value)


def test_the_real_tiles_pass_and_hidden_files_are_ignored(real_set):
    folder, block = real_set
    (folder / "micrographs" / ".DS_Store").write_bytes(b"\0")
    (folder / "masks" / ".notes").write_text("x")
    check_real_sets({"real_sets": {"mine": block}})


def test_a_missing_mask_is_named(real_set):
    folder, block = real_set
    (folder / "masks" / "train07.png").unlink()
    message = _problems(block)
    assert (
        f"real_sets.mine: micrograph {folder / 'micrographs' / 'train07.png'} has no mask"
        in message
    )


def test_a_mask_of_another_size_is_named(real_set):
    from hrtem_wf.real.micrographs import write_mask_png

    folder, block = real_set
    write_mask_png(folder / "masks" / "train13.png", np.ones((100, 80), np.uint8))
    message = _problems(block)
    assert (
        "mask" in message
        and "train13.png is 100 x 80 px, its micrograph train13.png 512 x 512" in message
    )


def test_a_stray_file_and_a_stray_mask_are_named(real_set):
    folder, block = real_set
    (folder / "micrographs" / "notes.txt").write_text("exposure 1 s")
    shutil.copy(folder / "masks" / "train00.png", folder / "masks" / "orphan.png")
    message = _problems(block)
    assert f"{folder / 'micrographs' / 'notes.txt'} is not a micrograph" in message
    assert f"{folder / 'masks' / 'orphan.png'} is the mask of no micrograph" in message


def test_an_unreadable_micrograph_and_missing_folders_are_named(real_set, tmp_path):
    folder, block = real_set
    (folder / "micrographs" / "train07.png").write_bytes(b"")
    assert f"{folder / 'micrographs' / 'train07.png'}" in _problems(block)
    message = _problems({**block, "masks": str(tmp_path / "nowhere")})
    assert f"real_sets.mine.masks: {tmp_path / 'nowhere'} is not a folder" in message
    hdf5 = {"format": "hdf5", "path": str(tmp_path / "none.h5"), "pixel_size_A": None,
            "particle_channel": 1}  # fmt: skip
    assert "real_sets.mine.path:" in _problems(hdf5)


@pytest.mark.workflow
def test_a_bad_real_set_stops_the_dry_run_before_any_job(workflow_copy, default_config, tmp_path):
    """The probe of issue 25: a masks folder missing one mask passed the dry run (82 jobs)."""
    import copy

    for folder in ("micrographs", "masks"):
        shutil.copytree(REAL / folder, tmp_path / folder)
    (tmp_path / "masks" / "train07.png").unlink()
    config = copy.deepcopy(default_config)
    (name,) = config["real_sets"]
    config["real_sets"][name].update(
        micrographs=str(tmp_path / "micrographs"), masks=str(tmp_path / "masks")
    )
    result = workflow_copy(config).snakemake("-n", check=False)
    assert result.returncode != 0
    assert (
        f"real_sets.{name}: micrograph {tmp_path / 'micrographs' / 'train07.png'} has no mask"
        in (result.stdout + result.stderr)
    )
    assert "Job stats" not in result.stdout
