"""`hrtem-wf predict` with a column model and an exit-wave model, on a tile of a real HRTEM
micrograph with lattice fringes (tests/data/real_au, CC-BY-4.0: see its README).

A seeded untrained network exercises the whole path (reading, tiling, focal series, writing); a
network whose confidence maps are known (Gaussians at chosen places) checks that the columns
written are those places, in pixels and in A."""

from __future__ import annotations

import csv
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from conftest import TINY_MODEL_BLOCK
from hrtem_wf.cli import main
from hrtem_wf.models.model import TrainedModel, build_model
from hrtem_wf.real.micrographs import read_micrograph

REAL_TILE = "tests/data/real_au/micrographs/train00.png"
COLUMNS_BLOCK = {
    **TINY_MODEL_BLOCK,
    "task": "columns",
    "encoder": "resnet18",
    "encoder_depth": 3,
    "decoder_channels": [16, 8, 4],
}
WAVES_BLOCK = {"task": "exit_wave", "architecture": "MSDNet", "options": {"depth": 4, "width": 2}}
TARGETS = {"columns": {"sigma_A": 0.5, "classes": {"kind": "element", "names": ["Au"]}}}


def _model_dir(path, block: dict, channels: tuple[int, int], **extra) -> str:
    torch.manual_seed(0)
    block = {**TINY_MODEL_BLOCK, **block}
    model = build_model(block, *channels).eval()
    path.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path / "weights.pt")
    metadata = {
        "block": block,
        "model": "t",
        "seed": 0,
        "dataset": None,
        "pixel_size_A": 0.2,
        "best_epoch": 1,
        "in_channels": channels[0],
        "out_channels": channels[1],
        **extra,
    }
    (path / "metadata.json").write_text(json.dumps(metadata))
    return str(path)


@pytest.fixture(scope="module")
def tiles(tmp_path_factory):
    """Three 96 x 128 crops of a real micrograph (lattice fringes), as .npy files."""
    image, _ = read_micrograph(REAL_TILE)
    folder = tmp_path_factory.mktemp("tiles")
    paths = []
    for index, (y, x) in enumerate(((200, 180), (204, 184), (196, 176))):
        path = folder / f"tile{index}.npy"
        np.save(path, image[y : y + 96, x : x + 128].astype(np.float32))
        paths.append(str(path))
    return paths


class KnownMaps(torch.nn.Module):
    """Logits whose softmax is a Gaussian column (sigma 2 px) at each of COLUMNS_PX, over the
    whole input (one tile)."""

    COLUMNS_PX = [(20.0, 30.0), (40.5, 70.25), (70.0, 100.0)]

    def __init__(self):
        super().__init__()
        self.encoder = SimpleNamespace(_depth=0)  # no poolings: any tile

    def forward(self, images):
        rows, cols = np.indices(images.shape[-2:])
        column = sum(np.exp(-((rows - y) ** 2 + (cols - x) ** 2) / 8.0) for y, x in self.COLUMNS_PX)
        column = np.clip(column, 1e-4, 1 - 1e-4)
        logits = np.stack([np.log(column), np.log(1 - column)]).astype(np.float32)
        return torch.from_numpy(np.broadcast_to(logits, (len(images), *logits.shape)).copy())


def test_predict_with_a_columns_model_writes_the_columns_it_finds(tiles, tmp_path, monkeypatch):
    model_dir = _model_dir(tmp_path / "columns", COLUMNS_BLOCK, (1, 2), targets=TARGETS)
    monkeypatch.setattr(TrainedModel, "load_network", lambda self, device="cpu": KnownMaps())
    out = tmp_path / "out"
    tiling = ["--tile-px", "128", "--overlap-px", "0"]
    assert main(["predict", model_dir, tiles[0], "--out", str(out), *tiling]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["tile0_columns.csv", "tile0_columns.png"]
    with open(out / "tile0_columns.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["y_px", "x_px", "y_A", "x_A", "class", "confidence"]
    found = np.array([[float(r["y_px"]), float(r["x_px"])] for r in rows])
    np.testing.assert_allclose(found, KnownMaps.COLUMNS_PX, atol=0.05)
    assert {r["class"] for r in rows} == {"Au"}
    assert all(0.5 < float(r["confidence"]) <= 1 for r in rows)
    assert all(r["y_A"] == "" for r in rows)  # a .npy carries no pixel size


def test_predict_with_an_untrained_columns_model_on_a_real_tile(tiles, tmp_path):
    model_dir = _model_dir(tmp_path / "columns", COLUMNS_BLOCK, (1, 2), targets=TARGETS)
    out = tmp_path / "out"
    assert main(["predict", model_dir, *tiles[:2], "--out", str(out), "--tile-px", "64",
                 "--overlap-px", "32"]) == 0  # fmt: skip
    for stem in ("tile0", "tile1"):
        assert (out / f"{stem}_columns.png").stat().st_size > 5_000
        with open(out / f"{stem}_columns.csv") as handle:
            assert next(csv.reader(handle))[0] == "y_px"


def test_predict_with_an_exit_wave_model_takes_focal_series(tiles, tmp_path, caplog):
    series = {"offsets_A": [-50.0, 0.0, 50.0]}
    model_dir = _model_dir(tmp_path / "waves", WAVES_BLOCK, (3, 2), focal_series=series)
    out = tmp_path / "out"
    assert main(["predict", model_dir, *tiles, "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["tile0_exit_wave.npy", "tile0_exit_wave.png"]
    wave = np.load(out / "tile0_exit_wave.npy")
    assert wave.dtype == np.complex64 and wave.shape == (96, 128)
    # the MSD-net without poolings predicts the whole series at once: the same wave
    from hrtem_wf.real.inference import predict_micrograph

    network = TrainedModel.read(model_dir).load_network()
    stack = np.stack([np.load(t) for t in tiles])
    parts = predict_micrograph(network, stack, task="exit_wave", tile_px=256, overlap_px=0)
    np.testing.assert_allclose(wave.real, parts[0], atol=1e-5)
    np.testing.assert_allclose(wave.imag, parts[1], atol=1e-5)
    # two files are not a series of three: one line naming the model and the count
    with pytest.raises(SystemExit, match="focal series of 3 micrographs .* 2 files given"):
        main(["predict", model_dir, *tiles[:2], "--out", str(tmp_path / "two")])


def test_predict_refuses_analyze_for_a_columns_model(tiles, tmp_path):
    model_dir = _model_dir(tmp_path / "columns", COLUMNS_BLOCK, (1, 2), targets=TARGETS)
    with pytest.raises(SystemExit, match="--analyze measures particles .* columns model"):
        main(["predict", model_dir, tiles[0], "--out", str(tmp_path / "o"), "--analyze"])
