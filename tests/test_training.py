"""Training: model building, loss, D4 augmentation, the loop's outputs, determinism and checks."""

from __future__ import annotations

import json
import math
from importlib.metadata import version as metadata_version
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import segmentation_models_pytorch as smp
import torch
import yaml

from conftest import TINY_MODEL_BLOCK
from hrtem_wf.codeversion import code_version, provenance
from hrtem_wf.config import validate_block
from hrtem_wf.models import (
    HISTORY_COLUMNS,
    SegmentationDataset,
    TrainedModel,
    build_model,
    d4_transform,
    evaluate_loss,
    random_d4,
    read_split,
    segmentation_loss,
    train_model,
)
from hrtem_wf.models.data import (
    DatasetSplit,
    normalize_min_max,
    photometric_transform,
    random_photometric,
)
from hrtem_wf.models.synthetic import write_synthetic_dataset
from hrtem_wf.models.train import _nominal_pixel_size_A

CONFIG = Path(__file__).resolve().parents[1] / "config" / "config.yaml"

TINY_BLOCK = {**TINY_MODEL_BLOCK, "seeds": [0], "epochs": 4}
MODELS_STAGE = "hrtem_wf.models.stage:run"
STUDY_LOSS = {"cross_entropy": 1.0, "soft_f1": 1.0}  # the study's loss weights


@pytest.fixture(scope="module")
def trained(dataset, tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("models") / "tiny" / "seed0"
    log_lines: list[str] = []
    summary = train_model(
        TINY_BLOCK,
        *dataset,
        seed=0,
        out_dir=str(out_dir),
        log=log_lines.append,
        provenance=provenance(MODELS_STAGE),
    )
    return out_dir, summary, log_lines


def test_default_block_builds_a_two_class_unet_with_input_sized_output():
    block = validate_block("models", yaml.safe_load(CONFIG.read_text())["models"]["unet_demo"])
    model = build_model(block)
    assert isinstance(model, smp.Unet)
    assert model.segmentation_head[0].out_channels == 2
    model.eval()
    with torch.no_grad():
        output = model(torch.rand(2, 1, 64, 96))
    assert output.shape == (2, 2, 64, 96)


def test_decoder_channels_must_match_encoder_depth():
    with pytest.raises(ValueError, match="models.block.decoder_channels: needs 3 entries"):
        validate_block("models", {**TINY_BLOCK, "decoder_channels": [16, 8]})


def test_loss_is_cross_entropy_plus_one_minus_soft_f1_by_hand():
    # pixel 0 is particle with p1 = 3/4 (logits 0, ln 3); pixel 1 is background with p1 = 1/2
    logits = torch.tensor([[[[0.0, 0.0]], [[math.log(3.0), 0.0]]]])  # (B=1, C=2, H=1, W=2)
    mask = torch.tensor([[[1, 0]]])
    cross_entropy = (-math.log(0.75) - math.log(0.5)) / 2
    soft_f1 = 2 * 0.75 / (0.75 + 0.5 + 1.0)  # 2 sum(p y) / (sum p + sum y) = 2/3
    expected = cross_entropy + 1.0 - soft_f1
    assert float(segmentation_loss(logits, mask, STUDY_LOSS)) == pytest.approx(expected, abs=1e-6)


def test_column_losses_by_hand():
    """Madsen's MSE of the softmax maps, and the soft cross-entropy of `column_loss`."""
    from hrtem_wf.models.loss import task_loss

    # one pixel, column logit ln 3 (p = 3/4), target column 0.6 / background 0.4
    logits = torch.tensor([[[[math.log(3.0)]], [[0.0]]]])
    target = torch.tensor([[[[0.6]], [[0.4]]]])
    mse = ((0.75 - 0.6) ** 2 + (0.25 - 0.4) ** 2) / 2
    assert float(task_loss("columns", logits, target, {})) == pytest.approx(mse, abs=1e-6)
    entropy = -(0.6 * math.log(0.75) + 0.4 * math.log(0.25))
    weights = {"column_loss": "cross_entropy"}
    assert float(task_loss("columns", logits, target, weights)) == pytest.approx(entropy, 1e-6)
    # where the softmax saturates the wrong way, the MSE's gradient fades, the entropy's not
    wrong = torch.tensor([[[[-8.0]], [[8.0]]]], requires_grad=True)
    grads = {}
    for name, spec in (("mse", {}), ("cross_entropy", weights)):
        (grad,) = torch.autograd.grad(task_loss("columns", wrong, target, spec), wrong)
        grads[name] = float(grad.abs().max())
    assert grads["mse"] < 1e-5 < 0.5 < grads["cross_entropy"]


def test_column_loss_is_a_columns_models_key():
    from hrtem_wf.config import ConfigError

    with pytest.raises(ConfigError, match="column_loss: is a columns model's; this is a segm"):
        validate_block("models", {**TINY_MODEL_BLOCK, "column_loss": "cross_entropy"})
    block = {**TINY_MODEL_BLOCK, "task": "columns", "column_loss": "cross_entropy"}
    assert validate_block("models", block)["column_loss"] == "cross_entropy"


def test_loss_is_small_for_a_confident_correct_prediction():
    mask = torch.tensor([[[1, 0], [0, 1]]])
    logits = torch.stack([(1 - mask) * 20.0, mask * 20.0], dim=1).float()
    assert float(segmentation_loss(logits, mask, STUDY_LOSS)) < 1e-6


def test_d4_elements_keep_image_and_mask_aligned():
    rng = np.random.default_rng(3)
    image = rng.random((8, 8)).astype(np.float32)  # no symmetry: all 8 elements differ
    mask = (image > 0.5).astype(np.uint8)
    seen = set()
    for quarter_turns in range(4):
        for flip in (False, True):
            moved_image, moved_mask = d4_transform(image, mask, quarter_turns, flip)
            np.testing.assert_array_equal(moved_mask, moved_image > 0.5)
            seen.add(moved_image.tobytes())
    assert len(seen) == 8
    for _ in range(20):
        moved_image, moved_mask = random_d4(image, mask, rng)
        np.testing.assert_array_equal(moved_mask, moved_image > 0.5)


def test_augmented_dataset_items_stay_aligned_and_normalized():
    rng = np.random.default_rng(4)
    masks = (rng.random((6, 16, 16)) > 0.5).astype(np.uint8)
    # particle pixels well above 275 counts, background well below: no pixel sits on the threshold
    images = np.where(masks, rng.uniform(300, 500, masks.shape), rng.uniform(50, 250, masks.shape))
    images = images.astype(np.float32)
    split = DatasetSplit(images, masks, np.arange(6), pd.DataFrame({"row": np.arange(6)}))
    dataset = SegmentationDataset(split, augment_d4=True, rng=np.random.default_rng(0))
    moved = 0
    for index in range(len(dataset)):
        for _ in range(4):
            image, mask = dataset[index]
            assert image.shape == (1, 16, 16) and mask.dtype == torch.int64
            assert float(image.min()) == 0.0 and float(image.max()) == 1.0
            # min-max scaling is monotonic, so the threshold moves with it
            threshold = (275 - images[index].min()) / (images[index].max() - images[index].min())
            np.testing.assert_array_equal(mask.numpy(), (image[0].numpy() > threshold))
            moved += not np.array_equal(mask.numpy(), masks[index])
    assert moved > 0  # the augmentation did change something


def test_training_lowers_the_loss_and_writes_its_outputs(trained):
    out_dir, summary, log_lines = trained
    history = pd.read_csv(out_dir / "history.csv")
    assert tuple(history.columns) == HISTORY_COLUMNS
    assert list(history["epoch"]) == [1, 2, 3, 4]
    assert history["train_loss"].iloc[-1] < history["train_loss"].iloc[0]
    np.testing.assert_allclose(history["lr"], 1.0e-3 * 0.8 ** np.arange(4), rtol=1e-9)
    assert len(log_lines) >= 4 and any("epoch 4/4" in line for line in log_lines)

    state = torch.load(out_dir / "weights.pt", weights_only=True)
    model = build_model(TINY_BLOCK)
    model.load_state_dict(state)

    metadata = json.loads((out_dir / "metadata.json").read_text())
    assert metadata == json.loads(json.dumps(summary))
    assert metadata["model"] == "tiny" and metadata["seed"] == 0
    assert metadata["block"]["decoder_channels"] == [16, 8, 8]
    assert (metadata["n_train"], metadata["n_val"]) == (16, 4)
    assert metadata["parameter_count"] == sum(p.numel() for p in model.parameters())
    # the models stage's code version and the libraries its code imports
    assert metadata["provenance"]["code_version"] == code_version(MODELS_STAGE)
    libraries = {
        name.replace("-", "_"): v for name, v in metadata["provenance"]["libraries"].items()
    }
    for package in ("torch", "segmentation_models_pytorch", "numpy"):
        assert libraries[package] == metadata_version(package)
    assert not list(out_dir.glob("*.partial"))


def test_saved_weights_are_those_of_the_lowest_validation_loss(trained, dataset):
    out_dir, summary, _ = trained
    history = pd.read_csv(out_dir / "history.csv")
    best_index = int(history["val_loss"].idxmin())
    assert summary["best_epoch"] == int(history["epoch"][best_index])
    assert summary["best_val_loss"] == pytest.approx(history["val_loss"][best_index])
    validation = torch.utils.data.DataLoader(
        SegmentationDataset(read_split(*dataset, "validation")), batch_size=TINY_BLOCK["batch_size"]
    )
    network = TrainedModel.read(out_dir).load_network()
    val_loss, val_f1 = evaluate_loss(network, validation, torch.device("cpu"), STUDY_LOSS)
    assert val_loss == pytest.approx(history["val_loss"][best_index], abs=1e-5)
    assert val_f1 == pytest.approx(history["val_f1"][best_index], abs=1e-9)


def test_same_seed_gives_the_same_history(trained, dataset, tmp_path):
    out_dir, _, _ = trained
    train_model(
        TINY_BLOCK, *dataset, seed=0, out_dir=str(tmp_path / "again"), log=lambda line: None
    )
    first = pd.read_csv(out_dir / "history.csv")
    again = pd.read_csv(tmp_path / "again" / "history.csv")
    for column in ("train_loss", "train_f1", "val_loss", "val_f1", "lr"):
        np.testing.assert_allclose(again[column], first[column], rtol=0, atol=1e-6)
    short_block = {**TINY_BLOCK, "epochs": 1}
    train_model(
        short_block, *dataset, seed=1, out_dir=str(tmp_path / "other"), log=lambda line: None
    )
    other = pd.read_csv(tmp_path / "other" / "history.csv")
    assert abs(other["train_loss"][0] - first["train_loss"][0]) > 1e-6


def test_gpu_without_cuda_is_a_clear_error(dataset, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="CUDA"):
        train_model({**TINY_BLOCK, "device": "gpu"}, *dataset, seed=0, out_dir=str(tmp_path / "m"))
    assert not (tmp_path / "m").exists()


def test_image_size_not_divisible_by_the_encoder_is_a_clear_error(tmp_path):
    dataset = write_synthetic_dataset(tmp_path, n_images=12, size=36)
    with pytest.raises(ValueError, match="divisible by 2\\*\\*encoder_depth = 8"):
        train_model(TINY_BLOCK, *dataset, seed=0, out_dir=str(tmp_path / "m"))
    assert not (tmp_path / "m").exists()


def test_recalibrated_batchnorm_holds_the_exact_statistics():
    from hrtem_wf.models.train import recalibrate_batchnorm

    torch.manual_seed(0)
    conv = torch.nn.Conv2d(1, 3, 3)
    norm = torch.nn.BatchNorm2d(3)
    model = torch.nn.Sequential(conv, norm)
    images = torch.rand(10, 1, 8, 8) * 5 + 2
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(images, images), batch_size=5
    )
    recalibrate_batchnorm(model, loader, torch.device("cpu"))
    with torch.no_grad():
        features = conv(images)
    # Equal-size batches: the average of batch means is the mean over all images.
    torch.testing.assert_close(
        norm.running_mean, features.mean(dim=(0, 2, 3)), rtol=1e-5, atol=1e-5
    )
    assert norm.momentum == 0.1  # restored for training


@pytest.mark.parametrize("architecture", ["UnetPlusPlus", "MAnet", "DeepLabV3Plus", "Linknet"])
def test_other_smp_architectures_from_the_block(architecture):
    from hrtem_wf.models.model import takes_decoder_channels

    block = {**TINY_BLOCK, "architecture": architecture}
    if not takes_decoder_channels(architecture):
        del block["decoder_channels"]
    model = build_model(block).eval()
    assert type(model).__name__ == architecture
    with torch.no_grad():
        assert model(torch.rand(1, 1, 64, 64)).shape == (1, 2, 64, 64)


def test_model_spec_errors_name_the_problem():
    # the block's own values: config validation, before any job
    with pytest.raises(ValueError, match="models.block.architecture"):
        validate_block("models", {**TINY_BLOCK, "architecture": "Resnet"})
    with pytest.raises(ValueError, match="FPN has no per-stage decoder widths"):
        validate_block(
            "models", {**TINY_BLOCK, "architecture": "FPN", "options": {"upsampling": 1}}
        )
    # what only the built network shows: its output size
    without = {k: v for k, v in TINY_BLOCK.items() if k != "decoder_channels"}
    with pytest.raises(ValueError, match="upsampling"):
        build_model({**without, "architecture": "FPN"})  # smp's x4 upsampling at depth 3
    assert build_model({**without, "architecture": "FPN", "options": {"upsampling": 1}})


def test_config_knows_which_architectures_take_per_stage_decoder_widths():
    from hrtem_wf.config import PER_STAGE_DECODER_ARCHITECTURES
    from hrtem_wf.models.model import architectures, takes_decoder_channels

    assert set(PER_STAGE_DECODER_ARCHITECTURES) == {
        a for a in architectures() if takes_decoder_channels(a)
    }
    schema = yaml.safe_load((CONFIG.parents[1] / "src/hrtem_wf/config.schema.yaml").read_text())
    assert set(
        schema["properties"]["models"]["additionalProperties"]["properties"]["architecture"]["enum"]
    ) == set(architectures()) | {"MSDNet"}  # smp's, and ours (hrtem_wf.models.msdnet)


def test_schema_knows_every_smp_encoder():
    import segmentation_models_pytorch as smp

    schema = yaml.safe_load((CONFIG.parents[1] / "src/hrtem_wf/config.schema.yaml").read_text())
    encoder = schema["properties"]["models"]["additionalProperties"]["properties"]["encoder"]
    assert set(encoder["anyOf"][1]["enum"]) == set(smp.encoders.get_encoder_names())
    assert encoder["anyOf"][0] == {"pattern": "^tu-.+"}  # any timm model, checked with timm


def test_loss_weights_reweight_the_two_terms():
    torch.manual_seed(0)
    logits, mask = torch.randn(2, 2, 8, 8), (torch.rand(2, 8, 8) > 0.5).long()
    cross_entropy = segmentation_loss(logits, mask, {"cross_entropy": 1.0, "soft_f1": 0.0})
    f1_term = segmentation_loss(logits, mask, {"cross_entropy": 0.0, "soft_f1": 1.0})
    assert cross_entropy == pytest.approx(float(torch.nn.functional.cross_entropy(logits, mask)))
    assert segmentation_loss(logits, mask, STUDY_LOSS) == pytest.approx(
        float(cross_entropy + f1_term)
    )
    assert segmentation_loss(logits, mask, {"cross_entropy": 2.0, "soft_f1": 0.5}) == pytest.approx(
        float(2 * cross_entropy + 0.5 * f1_term)
    )


@pytest.mark.parametrize("checkpoint, pick", [("best_val_f1", "idxmax"), ("last", None)])
def test_checkpoint_choice_keeps_that_epoch(checkpoint, pick, dataset, tmp_path):
    block = {**TINY_BLOCK, "epochs": 3, "checkpoint": checkpoint}
    summary = train_model(
        block, *dataset, seed=0, out_dir=str(tmp_path / "m"), log=lambda line: None
    )
    history = pd.read_csv(tmp_path / "m" / "history.csv")
    expected = 3 if pick is None else int(history["epoch"][history["val_f1"].idxmax()])
    assert summary["best_epoch"] == expected and summary["checkpoint"] == checkpoint
    validation = torch.utils.data.DataLoader(
        SegmentationDataset(read_split(*dataset, "validation")), batch_size=4
    )
    network = TrainedModel.read(tmp_path / "m").load_network()
    _, val_f1 = evaluate_loss(network, validation, torch.device("cpu"), STUDY_LOSS)
    assert val_f1 == pytest.approx(history["val_f1"][expected - 1], abs=1e-9)


# --- photometric augmentation (models.<N>.augment_photometric) --------------------------------

PHOTOMETRIC = validate_block(
    "models",
    {
        **TINY_BLOCK,
        "augment_photometric": {
            "gamma": {"distribution": "loguniform", "low": 0.7, "high": 1.4},
            "contrast_factor": {"distribution": "uniform", "low": 0.8, "high": 1.2},
            "brightness_offset": {"distribution": "uniform", "low": -0.1, "high": 0.1},
            "noise_relative_sd": {"distribution": "uniform", "low": 0.0, "high": 0.2},
        },
    },
)["augment_photometric"]


def _raw_split(n_images=4, shape=(16, 16), seed=5) -> DatasetSplit:
    rng = np.random.default_rng(seed)
    masks = (rng.random((n_images, *shape)) > 0.5).astype(np.uint8)
    images = rng.uniform(50.0, 500.0, (n_images, *shape)).astype(np.float32)
    return DatasetSplit(images, masks, np.arange(n_images), pd.DataFrame({"row": range(n_images)}))


def test_photometric_augmentation_off_is_byte_identical_to_before():
    """null (the default), or a block whose keys are all null, draws nothing: the items are the
    ones the dataset gave before the option existed (normalize, then D4 from the same rng)."""
    split = _raw_split()
    all_null = validate_block("models", {**TINY_BLOCK, "augment_photometric": {}})
    assert TINY_BLOCK["augment_photometric"] is None
    for augment_d4 in (False, True):
        before_rng = np.random.default_rng(0)
        datasets = [
            SegmentationDataset(split, augment_d4, np.random.default_rng(0), augment)
            for augment in (None, all_null["augment_photometric"])
        ]
        for _epoch in range(2):
            for index in range(len(split)):
                image = normalize_min_max(split.images[index])
                mask = np.asarray(split.masks[index], dtype=np.int64)
                if augment_d4:
                    image, mask = random_d4(image, mask, before_rng)
                for dataset in datasets:
                    item_image, item_mask = dataset[index]
                    assert item_image.numpy().tobytes() == image[None].tobytes()
                    assert item_mask.numpy().tobytes() == mask.tobytes()


def test_photometric_augmentation_is_deterministic_and_leaves_masks_alone():
    split = _raw_split()

    def epoch(seed):
        dataset = SegmentationDataset(split, False, np.random.default_rng(seed), PHOTOMETRIC)
        return [dataset[index] for index in range(len(split))]

    first, again, other = epoch(3), epoch(3), epoch(4)
    for (image, mask), (image_again, mask_again), (image_other, _) in zip(first, again, other):
        assert image.dtype == torch.float32 and image.shape == (1, 16, 16)
        assert torch.equal(image, image_again) and torch.equal(mask, mask_again)
        assert not torch.equal(image, image_other)
    for index, (image, mask) in enumerate(first):
        np.testing.assert_array_equal(mask.numpy(), split.masks[index])  # untouched
        assert not np.array_equal(image[0].numpy(), normalize_min_max(split.images[index]))


def test_each_photometric_transform_does_what_it_says():
    rng = np.random.default_rng(0)
    image = normalize_min_max(rng.uniform(0.0, 1.0, (256, 256)))
    image[0, 0] = 0.25
    gamma = photometric_transform(image, rng, gamma=1.7)
    assert gamma[0, 0] == pytest.approx(0.25**1.7, rel=1e-6)
    np.testing.assert_allclose(gamma, image**1.7, rtol=1e-5, atol=1e-7)
    assert gamma.min() == 0.0 and gamma.max() == 1.0  # the ends of [0, 1] stay
    contrast = photometric_transform(image, rng, contrast_factor=0.6)
    assert contrast.mean() == pytest.approx(image.mean(), abs=1e-6)
    np.testing.assert_allclose(
        contrast - contrast.mean(), 0.6 * (image - image.mean()), rtol=0, atol=1e-6
    )
    brightness = photometric_transform(image, rng, brightness_offset=-0.15)
    np.testing.assert_allclose(brightness, image - 0.15, rtol=0, atol=1e-7)
    noisy = photometric_transform(image, rng, noise_relative_sd=0.2)
    noise = noisy.astype(np.float64) - image
    assert noise.std() == pytest.approx(0.2 * image.std(), rel=0.02)
    assert abs(noise.mean()) < 0.01 * image.std()
    assert noisy.dtype == np.float32
    # all four in the documented order: gamma, contrast, brightness, noise
    rngs = np.random.default_rng(9), np.random.default_rng(9)
    values = {
        "gamma": 0.8,
        "contrast_factor": 1.1,
        "brightness_offset": 0.05,
        "noise_relative_sd": 0.1,
    }
    by_hand = image**0.8
    by_hand = by_hand.mean() + 1.1 * (by_hand - by_hand.mean()) + 0.05
    by_hand = by_hand + rngs[0].normal(0.0, 0.1 * by_hand.std(), by_hand.shape)
    np.testing.assert_allclose(
        photometric_transform(image, rngs[1], **values), by_hand, rtol=0, atol=1e-5
    )


def test_photometric_values_are_drawn_from_their_distributions():
    rng = np.random.default_rng(1)
    image = normalize_min_max(rng.uniform(0.0, 1.0, (8, 8)))
    drawn = [random_photometric(image, PHOTOMETRIC, rng)[1] for _ in range(300)]
    for key, (low, high) in {
        "gamma": (0.7, 1.4),
        "contrast_factor": (0.8, 1.2),
        "brightness_offset": (-0.1, 0.1),
        "noise_relative_sd": (0.0, 0.2),
    }.items():
        values = np.array([d[key] for d in drawn])
        assert low <= values.min() and values.max() <= high
        assert values.max() - values.min() > 0.8 * (high - low)  # spread over the range
    # a fixed value is that value, and a null key is no transform
    fixed = {**PHOTOMETRIC, "gamma": 2.0, "contrast_factor": None, "brightness_offset": None}
    fixed["noise_relative_sd"] = None
    out, values = random_photometric(image, fixed, rng)
    assert values == {
        "gamma": 2.0,
        "contrast_factor": None,
        "brightness_offset": None,
        "noise_relative_sd": None,
    }
    np.testing.assert_allclose(out, image**2, rtol=1e-6)


def test_photometric_augmentation_applies_to_the_training_split_only(
    trained, dataset, tmp_path, monkeypatch
):
    import hrtem_wf.models.train as train

    built = []

    class Recording(SegmentationDataset):
        def __init__(self, split, *args, **kwargs):
            super().__init__(split, *args, **kwargs)
            built.append((split, self.augment_photometric))

    monkeypatch.setattr(train, "SegmentationDataset", Recording)
    block = {**TINY_BLOCK, "epochs": 1, "augment_photometric": PHOTOMETRIC}
    summary = train_model(block, *dataset, seed=0, out_dir=str(tmp_path / "m"), log=lambda _: None)
    assert [augment for _, augment in built] == [PHOTOMETRIC, None, None]
    # the training split (augmented; unaugmented for the BatchNorm statistics), then validation
    assert built[1][0] is built[0][0] and built[2][0] is not built[0][0]
    metadata = json.loads((tmp_path / "m" / "metadata.json").read_text())
    assert metadata["block"]["augment_photometric"] == PHOTOMETRIC
    # the same seed without it (the module's training, TINY_BLOCK): another first epoch
    plain_out_dir, plain, _ = trained
    assert plain["block"]["augment_photometric"] is None
    plain_history = pd.read_csv(plain_out_dir / "history.csv")
    assert summary["final_train_loss"] != pytest.approx(plain_history["train_loss"][0], abs=1e-6)


# --- the training pixel size: its range and its nominal value ---------------------------------


@pytest.mark.parametrize(
    "columns, nominal",
    [
        ({"image.pixel_size_A": [0.2, 0.2, 0.2]}, 0.2),  # before nominal pixel sizes were recorded
        ({"image.pixel_size_A": [0.2, 0.3, 0.25]}, None),  # varied, nominal unknown
        ({}, None),
        (
            {"image.pixel_size_A": [0.21, 0.29, 0.23], "image.nominal_pixel_size_A": [0.25] * 3},
            0.25,
        ),
        # two image blocks: the median over the training images of their block's nominal
        (
            {"image.pixel_size_A": [0.2, 0.4, 0.4], "image.nominal_pixel_size_A": [0.2, 0.4, 0.4]},
            0.4,
        ),
    ],
)
def test_nominal_training_pixel_size(columns, nominal):
    assert _nominal_pixel_size_A(pd.DataFrame({"row": [0, 1, 2], **columns})) == nominal


@pytest.mark.parametrize(
    "recorded, expected",
    [
        ({"pixel_size_A": 0.2}, 0.2),  # written before nominal_pixel_size_A: the one pixel size
        ({"pixel_size_A": [0.2, 0.3]}, None),
        ({"pixel_size_A": None}, None),
        ({"pixel_size_A": [0.2, 0.3], "nominal_pixel_size_A": 0.25}, 0.25),
        ({"pixel_size_A": 0.2, "nominal_pixel_size_A": 0.2}, 0.2),
        ({"pixel_size_A": 0.2, "nominal_pixel_size_A": None}, 0.2),  # edited by hand
    ],
)
def test_trained_model_nominal_pixel_size(recorded, expected, tmp_path):
    metadata = {"model": "t", "seed": 0, "block": TINY_BLOCK, "dataset": "toy", "best_epoch": 1}
    assert TrainedModel(tmp_path, {**metadata, **recorded}).nominal_pixel_size_A == expected


def test_task_outputs_and_losses_of_columns_and_exit_waves():
    """Column maps are a softmax over classes and background; an exit-wave network predicts the
    departure from vacuum, so a zero output is the plane wave 1 + 0j; both train on the MSE."""
    import torch

    from hrtem_wf.models.loss import task_loss, task_output

    outputs = torch.randn(2, 3, 5, 6)
    maps = task_output("columns", outputs)
    torch.testing.assert_close(maps.sum(dim=1), torch.ones(2, 5, 6))
    torch.testing.assert_close(task_loss("columns", outputs, maps.detach(), {}), torch.tensor(0.0))
    zero = torch.zeros(2, 2, 5, 6)
    vacuum = task_output("exit_wave", zero)
    assert bool((vacuum[:, 0] == 1).all()) and bool((vacuum[:, 1] == 0).all())
    target = vacuum + 0.1
    torch.testing.assert_close(task_loss("exit_wave", zero, target, {}), torch.tensor(0.01))
