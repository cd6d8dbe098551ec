"""Bad input as a new user gives it, through the commands they type (issue 25): configs, real
sets, `hrtem-wf predict`, `hrtem-wf match` and damaged stores. Each case asserts a non-zero exit
status (or, where the run can go on, a logged warning), a message naming the key or the file and
what is wrong, no traceback, no partial output, and the good inputs of the same call processed.

The commands run in this process (`hrtem_wf.cli.main`): an exception other than the SystemExit
that carries the one-line message would be a traceback for the user, and fails the case."""

from __future__ import annotations

import copy
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from conftest import ROOT, TINY_MODEL_BLOCK
from hrtem_wf.cli import main
from hrtem_wf.models.model import build_model
from test_config import MALFORMED, _set
from test_store_checks import DAMAGES, damage, images_job, simulation_store

REAL = ROOT / "tests" / "data" / "real_au"  # CC-BY-4.0, see its README


def call(argv: list[str]) -> tuple[int, str]:
    """(exit status, message) of `hrtem-wf argv`."""
    try:
        return main([str(a) for a in argv]), ""
    except SystemExit as stop:
        if stop.code is None or isinstance(stop.code, int):
            return stop.code or 0, ""
        return 1, str(stop.code)


def refused(argv: list[str], *words: str) -> str:
    """The message of a call that must fail: non-zero, every word in it, no traceback."""
    status, message = call(argv)
    assert status != 0, f"exit 0 for {argv}"
    assert message.startswith(f"hrtem-wf {argv[0]}: "), message
    assert "Traceback" not in message
    for word in words:
        assert str(word) in message, (word, message)
    return message


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# ---------------------------------------------------------------------------------------------
# Configs, through `hrtem-wf plan`: stopped before Snakemake runs, nothing written


def _plan(config_file: Path) -> list[str]:
    return ["plan", "--directory", ROOT, "--configfile", config_file,
            "--snakemake-args", "--replace-workflow-config"]  # fmt: skip


def _write_config(folder: Path, config: dict) -> Path:
    config = copy.deepcopy(config)
    for block in (config.get("real_sets") or {}).values():  # the shipped set, from anywhere
        for key in ("micrographs", "masks"):
            if key in block and not Path(block[key]).is_absolute():
                block[key] = str(ROOT / block[key])
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.mark.parametrize("path, value, words", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_a_malformed_config_stops_plan(default_config, tmp_path, path, value, words):
    config_file = _write_config(tmp_path, _set(copy.deepcopy(default_config), path, value))
    refused(_plan(config_file), *words)
    assert files_under(tmp_path) == ["config.yaml"]


@pytest.mark.parametrize(
    "text, words",
    [
        ("seed: 1\nstructures: [a, b\n", ["line 3", "not valid YAML"]),
        ("", ["is empty"]),
        ("- seed\n- structures\n", ["holds a list, not a mapping"]),
    ],
    ids=["not YAML", "empty", "a list"],
)
def test_a_config_file_that_is_no_mapping_is_named(tmp_path, text, words):
    config_file = tmp_path / "config.yaml"
    config_file.write_text(text)
    refused(_plan(config_file), f"config file {config_file}", *words)
    assert files_under(tmp_path) == ["config.yaml"]


# ---------------------------------------------------------------------------------------------
# Real sets: read with the config (plan, and the Snakefile's dry run), before any job


def _break_real_set(folder: Path, how: str) -> str:
    """Damage a copy of the real tiles in `folder`; what the message must say."""
    from hrtem_wf.real.micrographs import write_mask_png

    micrographs, masks = folder / "micrographs", folder / "masks"
    if how == "missing mask":
        (masks / "train07.png").unlink()
        return f"micrograph {micrographs / 'train07.png'} has no mask"
    if how == "mask of another size":
        write_mask_png(masks / "train13.png", np.ones((100, 80), np.uint8))
        return "train13.png is 100 x 80 px, its micrograph train13.png 512 x 512"
    if how == "stray file":
        (micrographs / "notes.txt").write_text("exposure 1 s")
        return f"{micrographs / 'notes.txt'} is not a micrograph"
    if how == "stray mask":
        shutil.copy(masks / "train00.png", masks / "orphan.png")
        return f"{masks / 'orphan.png'} is the mask of no micrograph"
    if how == "empty micrograph":
        (micrographs / "train07.png").write_bytes(b"")
        return f"{micrographs / 'train07.png'}"
    if how == "missing folder":
        shutil.rmtree(masks)
        return f"real_sets.mine.masks: {masks} is not a folder"
    raise ValueError(how)


REAL_SET_DAMAGES = [
    "missing mask",
    "mask of another size",
    "stray file",
    "stray mask",
    "empty micrograph",
    "missing folder",
]


@pytest.mark.parametrize("how", REAL_SET_DAMAGES)
def test_a_bad_real_set_stops_plan_naming_the_file(default_config, tmp_path, how):
    for folder in ("micrographs", "masks"):
        shutil.copytree(REAL / folder, tmp_path / "set" / folder)
    expected = _break_real_set(tmp_path / "set", how)
    config = copy.deepcopy(default_config)
    config["real_sets"] = {
        "mine": {
            "format": "pairs",
            "micrographs": str(tmp_path / "set" / "micrographs"),
            "masks": str(tmp_path / "set" / "masks"),
            "pixel_size_A": None,
        }  # fmt: skip
    }
    (tmp_path / "run").mkdir()
    config_file = _write_config(tmp_path / "run", config)
    refused(_plan(config_file), "real sets:", expected)
    assert files_under(tmp_path / "run") == ["config.yaml"]


def test_hidden_files_in_a_real_set_are_ignored():
    from hrtem_wf.config import check_real_sets

    block = {"format": "pairs", "micrographs": str(REAL / "micrographs"),
             "masks": str(REAL / "masks"), "pixel_size_A": None}  # fmt: skip
    check_real_sets({"real_sets": {"mine": block}})  # README.md beside them: not in the folders
    assert not any(p.name.startswith(".") for p in (REAL / "micrographs").iterdir())


@pytest.mark.workflow
def test_a_bad_real_set_stops_the_dry_run_before_any_job(workflow_copy, default_config, tmp_path):
    """The probe of issue 25: a masks folder missing one mask passed the dry run (82 jobs)."""
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
    assert 'File "' not in result.stderr, result.stderr  # the message, not a traceback


# ---------------------------------------------------------------------------------------------
# predict: each file on its own; the good ones predicted; a summary and a non-zero exit

FAST_BLOCK = {**TINY_MODEL_BLOCK, "encoder": "dpn68", "encoder_depth": 1, "decoder_channels": [2]}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model")
    torch.manual_seed(0)
    torch.save(build_model(FAST_BLOCK).eval().state_dict(), path / "weights.pt")
    metadata = {"block": FAST_BLOCK, "model": "t", "seed": 0, "dataset": None, "best_epoch": 1}
    (path / "metadata.json").write_text(json.dumps({**metadata, "pixel_size_A": None}))
    return path


def _good(path: Path, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    np.save(path, (100 + 10 * rng.standard_normal((64, 80))).astype(np.float32))
    return path


def _bad_micrograph(folder: Path, name: str) -> Path:
    from PIL import Image

    path = folder / name
    if name == "empty.png":
        path.write_bytes(b"")
    elif name == "truncated.png":
        Image.fromarray(np.zeros((64, 64), np.uint8)).save(folder / "whole.png")
        path.write_bytes((folder / "whole.png").read_bytes()[:60])
        (folder / "whole.png").unlink()
    elif name == "text.tif":
        path.write_text("not an image\n")
    elif name == "nan.npy":
        nan = np.ones((64, 64), np.float32)
        nan[3, 4] = np.nan
        np.save(path, nan)
    elif name == "one_pixel.npy":
        np.save(path, np.ones((1, 1), np.float32))
    elif name == "photo.jpg":
        path.write_bytes(b"\xff\xd8")
    return path


BAD_MICROGRAPHS = {  # file -> what its line must say
    "empty.png": "cannot identify image file",
    "truncated.png": "image file is truncated",
    "text.tif": "not a TIFF file",
    "nan.npy": "NaN or infinite",
    "one_pixel.npy": "1 x 1 px is too small; predict takes micrographs of at least 32 x 32",
    "missing.tif": "no such file",
    "photo.jpg": "unsupported format '.jpg'",
}


def _predict(model_dir, files, out, *extra) -> list[str]:
    return ["predict", model_dir, *files, "--out", out, "--tile-px", "64", "--overlap-px", "32",
            *extra]  # fmt: skip


@pytest.mark.parametrize("name", BAD_MICROGRAPHS)
def test_predict_names_a_bad_file_and_predicts_the_others(model_dir, tmp_path, caplog, name):
    bad = _bad_micrograph(tmp_path, name)
    good = [_good(tmp_path / "first.npy", 0), _good(tmp_path / "last.npy", 1)]
    out = tmp_path / "out"
    with caplog.at_level(logging.INFO, logger="hrtem_wf"):
        message = refused(
            _predict(model_dir, [good[0], bad, good[1]], out),
            "1 of 3 micrograph(s) failed (2 written to ",
            f"{bad}: ",
            BAD_MICROGRAPHS[name],
        )
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors == [f"{bad}: {message.split(f'{bad}: ', 1)[1]}"]  # one line, naming it
    assert files_under(out) == ["first_mask.png", "first_probability.tif", "last_mask.png",
                                "last_probability.tif"]  # fmt: skip


def test_predict_on_bad_files_only_leaves_no_output_folder(model_dir, tmp_path):
    bad = [_bad_micrograph(tmp_path, n) for n in ("empty.png", "truncated.png", "text.tif")]
    out = tmp_path / "out"
    refused(_predict(model_dir, bad, out), "3 of 3 micrograph(s) failed (0 written")
    assert not out.exists()


@pytest.mark.parametrize(
    "extra, words",
    [
        (["--overlap-px", "64"], ["overlap_px 64 must be >= 0 and leave a stride"]),
        (["--tile-px", "63"], ["tile_px 63 must be a positive multiple of 2**encoder_depth"]),
        (["--batch-size", "0"], ["batch_size must be >= 1, not 0"]),
    ],
    ids=["overlap", "tile", "batch"],
)
def test_predict_refuses_bad_arguments_before_any_file(model_dir, tmp_path, extra, words):
    good = _good(tmp_path / "a.npy", 0)
    refused(_predict(model_dir, [good], tmp_path / "out", *extra), *words)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("damage_to", ["no model", "weights truncated", "metadata not JSON"])
def test_predict_names_a_damaged_model(model_dir, tmp_path, damage_to):
    model = tmp_path / "model"
    shutil.copytree(model_dir, model)
    if damage_to == "no model":
        shutil.rmtree(model)
        expected = str(model)
    elif damage_to == "weights truncated":
        weights = model / "weights.pt"
        weights.write_bytes(weights.read_bytes()[:100])
        expected = str(weights)
    else:
        (model / "metadata.json").write_text("{ not json")
        expected = str(model / "metadata.json")
    refused(_predict(model, [_good(tmp_path / "a.npy", 0)], tmp_path / "out"), expected)
    assert not (tmp_path / "out").exists()


def test_predict_refuses_micrographs_of_one_name(model_dir, tmp_path):
    (tmp_path / "b").mkdir()
    files = [_good(tmp_path / "a.npy", 0), _good(tmp_path / "b" / "a.npy", 1)]
    refused(_predict(model_dir, files, tmp_path / "out"), "share the name ['a']")
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------
# match: what it cannot estimate is left out, unknown, or refused; never confidently wrong


def _unmatchable(folder: Path) -> dict[str, str]:
    """A blank, a saturated and a white-noise micrograph."""
    rng = np.random.default_rng(0)
    saturated = np.full((256, 256), 255.0)
    saturated[:64] = rng.uniform(0, 255, (64, 256))
    images = {
        "blank.npy": np.full((256, 256), 7.0),
        "saturated.npy": saturated,
        "noise.npy": rng.normal(100.0, 10.0, (256, 256)),
    }
    for name, image in images.items():
        np.save(folder / name, image.astype(np.float32))
    return {
        "blank.npy": "it is blank: every pixel is 7",
        "saturated.npy": "it is saturated: 75% of its pixels are at its brightest value 255",
        "noise.npy": "it shows nothing above the noise: its power spectrum is flat",
    }


def _match(files, out, *extra) -> list[str]:
    return ["match", *files, "--voltage-kV", "200", "--out", out, *extra]


@pytest.mark.parametrize("name", ["blank.npy", "saturated.npy", "noise.npy"])
@pytest.mark.parametrize("pixel", [[], ["--pixel-size-A", "0.4"]], ids=["", "pixel size given"])
def test_match_refuses_a_micrograph_it_cannot_read(tmp_path, name, pixel):
    why = _unmatchable(tmp_path)[name]
    refused(_match([tmp_path / name], tmp_path / "out", *pixel),
            "no micrograph can be matched", f"{tmp_path / name}: {why}")  # fmt: skip
    assert not (tmp_path / "out").exists()


def test_blank_saturated_and_noise_micrographs_are_left_out(tmp_path):
    from hrtem_wf.real.match.measure import (
        STRUCTURE_POWER_RATIO,
        read_micrographs,
        structure_power_ratio,
    )

    expected = _unmatchable(tmp_path)
    files = [REAL / "micrographs" / "train00.png", *(tmp_path / n for n in expected)]
    micrographs, left_out, _ = read_micrographs(files)
    assert [m.name for m in micrographs] == ["train00.png"]
    for name, why in expected.items():
        assert left_out[str(tmp_path / name)].startswith(why)
    # the real micrographs are far from the threshold
    real = read_micrographs([REAL / "micrographs"])[0]
    assert min(structure_power_ratio(m.image) for m in real) > 25 * STRUCTURE_POWER_RATIO


def test_match_refuses_micrographs_without_thon_rings(tmp_path):
    """Structure (smoothed noise passes the noise check) but no carbon rings: no defocus."""
    import scipy.ndimage

    rng = np.random.default_rng(1)
    smooth = scipy.ndimage.gaussian_filter(rng.normal(size=(256, 256)), 4) * 50 + 100
    np.save(tmp_path / "smooth.npy", smooth.astype(np.float32))
    refused(_match([tmp_path / "smooth.npy"], tmp_path / "out", "--pixel-size-A", "0.4"),
            "no micrograph shows the Thon rings", "smooth.npy: no Thon rings")  # fmt: skip
    assert not (tmp_path / "out").exists()


def test_match_without_any_micrograph_or_with_a_bad_store_writes_nothing(tmp_path):
    (tmp_path / "none").mkdir()
    refused(_match([tmp_path / "none"], tmp_path / "out"), "no micrographs in", "none")
    store = tmp_path / "images.zarr"
    refused(_match([REAL / "micrographs" / "train00.png"], tmp_path / "out",
                   "--simulated", store), f"--simulated {store}")  # fmt: skip
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def matched_with_bad_files(tmp_path_factory):
    """match on two real tiles with their masks, plus a truncated micrograph, a micrograph
    without a mask, one with a mask of another size, and a blank one (left out, a warning)."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("match")
    micrographs, masks = folder / "micrographs", folder / "masks"
    micrographs.mkdir()
    shutil.copytree(REAL / "masks", masks)
    for name in ("train00.png", "train07.png", "train13.png"):
        shutil.copy(REAL / "micrographs" / name, micrographs / name)
    (micrographs / "cut.png").write_bytes((REAL / "micrographs" / "train00.png").read_bytes()[:80])
    shutil.copy(REAL / "micrographs" / "train00.png", micrographs / "unmasked.png")
    Image.fromarray(np.zeros((100, 80), np.uint8)).save(masks / "train13.png")
    np.save(micrographs / "blank.npy", np.full((512, 512), 7.0, np.float32))
    out = folder / "out"
    status, message = call(_match([micrographs], out, "--masks", masks))
    return folder, status, message


@pytest.mark.parametrize(
    "name, words",
    [
        ("cut.png", ["image file is truncated"]),
        ("unmasked.png", ["it has no mask", "unmasked.png"]),
        ("train13.png", ["its mask", "is 100 x 80 px, the micrograph 512 x 512 px"]),
    ],
)
def test_match_names_a_bad_file_and_matches_the_others(matched_with_bad_files, name, words):
    folder, status, message = matched_with_bad_files
    assert status != 0 and "Traceback" not in message
    assert message.startswith("hrtem-wf match: 3 file(s) failed, matched without them (2 ")
    line = message.split(f"{folder / 'micrographs' / name}: ", 1)[1].split("; /")[0]
    for word in words:
        assert word in line, (word, line)
    report = json.loads((folder / "out" / "match.json").read_text())
    assert [r["name"] for r in report["per_image"]] == ["train00.png", "train07.png"]
    assert files_under(folder / "out") == ["config.yaml", "match.json", "match.png",
                                           "suggested.yaml"]  # fmt: skip


def test_match_leaves_a_blank_micrograph_out_with_a_warning(matched_with_bad_files):
    folder, _, _ = matched_with_bad_files
    report = json.loads((folder / "out" / "match.json").read_text())
    assert report["left_out"] == {
        str(folder / "micrographs" / "blank.npy"): "it is blank: every pixel is 7"
    }


# ---------------------------------------------------------------------------------------------
# Damaged stores: the job that reads one stops naming it and writes nothing


@pytest.mark.parametrize("how", DAMAGES)
def test_a_damaged_exit_wave_store_stops_the_images_job(tmp_path, how):
    store = simulation_store(tmp_path / "sim.zarr")
    damage(store, "full", 1, how)
    output = tmp_path / "img.zarr"
    with pytest.raises(SystemExit) as stop:
        images_job(store, output)
    message = str(stop.value)
    assert "Traceback" not in message and str(store) in message and DAMAGES[how] in message
    assert not output.exists()


def test_a_damaged_simulated_store_stops_match_before_measuring(tmp_path):
    from test_curation import _write_stores

    store = _write_stores(tmp_path)[0]
    damage(store, "images", 0, "truncated")
    refused(_match([REAL / "micrographs" / "train00.png"], tmp_path / "out", "--simulated",
                   store), f"--simulated {store}", "cannot be decoded")  # fmt: skip
    assert not (tmp_path / "out").exists()


def test_the_cases_number_at_least_sixty():
    import inspect
    import sys

    module = sys.modules[__name__]
    count = 0
    for name, function in inspect.getmembers(module, inspect.isfunction):
        if not name.startswith("test_"):
            continue
        sizes = [
            len(m.args[1]) for m in getattr(function, "pytestmark", []) if m.name == "parametrize"
        ]
        count += int(np.prod(sizes)) if sizes else 1
    assert count >= 60, count
