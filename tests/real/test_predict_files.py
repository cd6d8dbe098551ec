"""`hrtem-wf predict` on a batch with bad files: each bad file gets one line naming it and the
problem, the good ones are predicted, the call ends non-zero with a summary, and nothing half
written (or an empty output folder) is left."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from conftest import TINY_MODEL_BLOCK
from hrtem_wf.cli import main
from hrtem_wf.models.model import build_model

FAST_BLOCK = {**TINY_MODEL_BLOCK, "encoder": "dpn68", "encoder_depth": 1, "decoder_channels": [2]}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> str:
    import json

    path = tmp_path_factory.mktemp("model")
    torch.manual_seed(0)
    torch.save(build_model(FAST_BLOCK).eval().state_dict(), path / "weights.pt")
    metadata = {"block": FAST_BLOCK, "model": "t", "seed": 0, "dataset": None, "best_epoch": 1}
    (path / "metadata.json").write_text(json.dumps({**metadata, "pixel_size_A": None}))
    return str(path)


def _good(path, seed: int) -> str:
    rng = np.random.default_rng(seed)
    np.save(path, (100 + 10 * rng.standard_normal((64, 80))).astype(np.float32))
    return str(path)


def bad_files(folder) -> dict[str, str]:
    """Bad micrographs and a fragment of the message each must give."""
    from PIL import Image

    (folder / "empty.png").write_bytes(b"")
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(folder / "whole.png")
    (folder / "truncated.png").write_bytes((folder / "whole.png").read_bytes()[:60])
    (folder / "text.tif").write_text("not an image\n")
    nan = np.ones((64, 64), np.float32)
    nan[3, 4] = np.nan
    np.save(folder / "nan.npy", nan)
    np.save(folder / "one_pixel.npy", np.ones((1, 1), np.float32))
    (folder / "photo.jpg").write_bytes(b"\xff\xd8")
    return {
        "empty.png": "cannot identify image file",
        "truncated.png": "image file is truncated",
        "text.tif": "not a TIFF file",
        "nan.npy": "NaN or infinite",
        "one_pixel.npy": "1 x 1 px is too small; predict takes micrographs of at least 32 x 32",
        "missing.tif": "no such file",
        "photo.jpg": "unsupported format '.jpg'",
    }


def test_bad_files_are_named_and_the_good_ones_predicted(model_dir, tmp_path, caplog):
    expected = bad_files(tmp_path)
    good = [_good(tmp_path / "first.npy", 0), _good(tmp_path / "last.npy", 1)]
    files = [good[0], *(str(tmp_path / name) for name in expected), good[1]]
    out = tmp_path / "out"
    with caplog.at_level(logging.INFO, logger="hrtem_wf"):
        with pytest.raises(SystemExit) as stop:
            main(
                [
                    "predict",
                    model_dir,
                    *files,
                    "--out",
                    str(out),
                    "--tile-px",
                    "64",
                    "--overlap-px",
                    "32",
                ]
            )
    message = str(stop.value)
    assert message.startswith("hrtem-wf predict: 7 of 9 micrograph(s) failed (2 written to ")
    assert "Traceback" not in message
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 7
    for name, fragment in expected.items():
        (line,) = [e for e in errors if e.startswith(str(tmp_path / name))]
        assert fragment in line, line
        assert fragment in message
    assert sorted(p.name for p in out.iterdir()) == [
        "first_mask.png",
        "first_probability.tif",
        "last_mask.png",
        "last_probability.tif",
    ]  # nothing partial, nothing of the bad files


def test_a_batch_of_bad_files_leaves_no_output_folder(model_dir, tmp_path):
    expected = bad_files(tmp_path)
    out = tmp_path / "out"
    with pytest.raises(SystemExit, match=r"3 of 3 micrograph\(s\) failed \(0 written"):
        main(["predict", model_dir, *(str(tmp_path / n) for n in list(expected)[:3]), "--out",
              str(out)])  # fmt: skip
    assert not out.exists()


def test_tiling_arguments_are_refused_before_any_file(model_dir, tmp_path):
    good = _good(tmp_path / "a.npy", 0)
    with pytest.raises(SystemExit, match="overlap_px 64 must be >= 0 and leave a stride"):
        main(["predict", model_dir, good, "--out", str(tmp_path / "o"), "--tile-px", "64",
              "--overlap-px", "64"])  # fmt: skip
    assert not (tmp_path / "o").exists()
