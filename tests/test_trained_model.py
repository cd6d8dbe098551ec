"""A trained model directory as one object: metadata, training pixel size, the network with its
weights, and clear errors for a damaged directory."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import segmentation_models_pytorch as smp
import torch
import yaml

from conftest import TINY_MODEL_BLOCK
from hrtem_wf.config import validate_block
from hrtem_wf.models import TrainedModel, build_model, read_split, train_model
from hrtem_wf.models.data import normalize_min_max

CONFIG = Path(__file__).resolve().parents[1] / "config" / "config.yaml"

TINY_BLOCK = {**TINY_MODEL_BLOCK, "seeds": [0], "epochs": 1}


@pytest.fixture(scope="module")
def trained(dataset, tmp_path_factory):
    """A trained model directory and the metadata train_model returned."""
    out_dir = tmp_path_factory.mktemp("models") / "tiny" / "seed0"
    summary = train_model(TINY_BLOCK, *dataset, seed=0, out_dir=str(out_dir), log=lambda line: None)
    return out_dir, summary


@pytest.fixture
def model_copy(trained, tmp_path) -> Path:
    """A copy of the trained directory to damage."""
    return Path(shutil.copytree(trained[0], tmp_path / "tiny" / "seed0"))


def test_create_model_builds_what_the_architecture_class_builds():
    # The demo's block: the same modules and, under the same seed, the same initial weights.
    block = validate_block("models", yaml.safe_load(CONFIG.read_text())["models"]["unet_demo"])
    torch.manual_seed(0)
    built = build_model(block)
    torch.manual_seed(0)
    by_class = smp.Unet(
        encoder_name="resnet18",
        encoder_depth=3,
        encoder_weights=None,
        in_channels=1,
        classes=2,
        decoder_channels=[128, 64, 32],
    )
    assert str(built) == str(by_class)
    built_state, class_state = built.state_dict(), by_class.state_dict()
    assert list(built_state) == list(class_state)
    for key, tensor in class_state.items():
        assert torch.equal(built_state[key], tensor), key


def test_round_trip_gives_the_trained_weights_and_predictions(trained, dataset):
    out_dir, summary = trained
    model = TrainedModel.read(out_dir)
    assert model.path == out_dir and model.metadata == json.loads(json.dumps(summary))
    assert (model.name, model.seed, model.dataset) == ("tiny", 0, "toy")
    assert model.block == TINY_BLOCK and model.best_epoch == 1
    assert model.pixel_size_A is None  # the synthetic images record none
    assert model.history_path.is_file()

    network = model.load_network("cpu")
    assert not network.training
    saved = torch.load(out_dir / "weights.pt", weights_only=True)
    assert list(network.state_dict()) == list(saved)
    for key, tensor in saved.items():
        assert torch.equal(network.state_dict()[key], tensor), key

    # What loading did before the object: the block's network with weights.pt, in eval mode.
    by_hand = build_model(summary["block"])
    by_hand.load_state_dict(saved)
    by_hand.eval()
    test = read_split(*dataset, "test")
    batch = np.stack([normalize_min_max(np.asarray(test.images[int(r)])) for r in test.rows])
    with torch.no_grad():
        inputs = torch.from_numpy(batch[:, None])
        assert torch.equal(network(inputs), by_hand(inputs))


@pytest.mark.parametrize(
    "recorded, expected",
    [(None, None), (0.2, 0.2), ([0.3, 0.2], [0.2, 0.3]), ([0.2, 0.2], 0.2), ([], None)],
)
def test_training_pixel_size_is_a_number_or_a_range(recorded, expected, tmp_path):
    metadata = {
        "model": "t",
        "seed": 0,
        "block": TINY_BLOCK,
        "dataset": "toy",
        "pixel_size_A": recorded,
        "best_epoch": 1,
    }
    assert TrainedModel(tmp_path, metadata).pixel_size_A == expected


def test_missing_metadata_or_weights_name_the_file(model_copy):
    (model_copy / "weights.pt").unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(str(model_copy / "weights.pt"))):
        TrainedModel.read(model_copy)
    (model_copy / "metadata.json").unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(str(model_copy / "metadata.json"))):
        TrainedModel.read(model_copy)


def test_damaged_metadata_names_the_file(model_copy):
    path = model_copy / "metadata.json"
    metadata = json.loads(path.read_text())
    path.write_text(path.read_text()[:50])
    with pytest.raises(ValueError, match=re.escape(str(path)) + ": not valid JSON"):
        TrainedModel.read(model_copy)
    path.write_text(json.dumps({k: v for k, v in metadata.items() if k != "pixel_size_A"}))
    with pytest.raises(ValueError, match=re.escape(str(path)) + r": lacks \['pixel_size_A'\]"):
        TrainedModel.read(model_copy)


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_corrupt_weights_name_the_file(damage, model_copy):
    path = model_copy / "weights.pt"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"\x00" * 1000)
    model = TrainedModel.read(model_copy)  # reading the metadata does not touch the weights
    with pytest.raises(ValueError, match=re.escape(f"{path}: cannot be read as torch weights")):
        model.load_network()


def test_non_finite_weights_name_the_file_and_tensor(model_copy):
    path = model_copy / "weights.pt"
    state = torch.load(path, weights_only=True)
    key = next(k for k, v in state.items() if v.is_floating_point())
    state[key].view(-1)[0] = float("nan")
    torch.save(state, path)
    with pytest.raises(ValueError, match=re.escape(f"{path}: tensor {key!r} has NaN or infinite")):
        TrainedModel.read(model_copy).load_network()


def test_weights_of_another_network_name_the_file(model_copy):
    path = model_copy / "weights.pt"
    torch.save(build_model({**TINY_BLOCK, "decoder_channels": [8, 8, 8]}).state_dict(), path)
    with pytest.raises(ValueError, match=re.escape(str(path)) + ": does not fit the network"):
        TrainedModel.read(model_copy).load_network()


def test_predict_stops_with_the_file_when_weights_are_missing(model_copy, tmp_path):
    from hrtem_wf.cli import main

    micrograph = tmp_path / "image.npy"
    np.save(micrograph, np.random.default_rng(0).random((64, 64)).astype(np.float32))
    (model_copy / "weights.pt").unlink()
    with pytest.raises(SystemExit, match=re.escape(str(model_copy / "weights.pt"))):
        main(["predict", str(model_copy), str(micrograph), "--out", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()
