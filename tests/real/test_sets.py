"""Ensemble summaries (Table S2's min / median / max, Table 1's V90 / V95), real-set
loaders (HDF5 in both layouts, micrograph + PNG pairs) with F1 checked by hand, the pixel-size
check, and the Table 1-style report."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import tifffile

from conftest import TINY_MODEL_BLOCK, train_seeds
from hrtem_wf.config import validate_block
from hrtem_wf.evaluations import evaluate_model, write_report
from hrtem_wf.evaluations.ensembles import (
    epochs_summary,
    epochs_to,
    format_epochs,
    format_summary,
    seed_summary,
)
from hrtem_wf.evaluations.report import condition_table
from hrtem_wf.models import TrainedModel, read_split
from hrtem_wf.models.synthetic import write_synthetic_dataset
from hrtem_wf.real.inference import predict_micrograph
from hrtem_wf.real.micrographs import write_mask_png
from hrtem_wf.real.sets import read_real_set, score_real_set


def _history(val_f1: list[float]) -> pd.DataFrame:
    n = len(val_f1)
    return pd.DataFrame(
        {"epoch": range(1, n + 1), "val_f1": val_f1, "train_loss": [1.0] * n, "val_loss": [1.0] * n}
    )


def test_epochs_to_validation_f1_levels():
    history = _history([0.5, 0.89, 0.90, 0.93, 0.96, 0.94])
    assert epochs_to(history, 0.90) == 3 and epochs_to(history, 0.95) == 5
    assert epochs_to(history, 0.97) is None
    histories = [history, _history([0.91, 0.92, 0.95]), _history([0.2, 0.3, 0.4])]
    v90 = epochs_summary(histories, 0.90)
    assert v90["per_seed"] == [3, 1, None] and v90["n_reached"] == 2
    assert v90["median"] == 3.0  # 1, 3, never: the median is 3
    assert format_epochs(v90) == "3 (2/3)"
    v95 = epochs_summary(histories, 0.95)
    assert v95["per_seed"] == [5, 3, None] and v95["median"] == 5.0
    never = epochs_summary([histories[2], histories[2]], 0.90)
    assert never["median"] is None and format_epochs(never) == "not reached (0/2)"


def test_seed_summaries_as_table_s2():
    summary = seed_summary([0.91, 0.85, 0.88, 0.95, 0.80])
    assert summary == {"n": 5, "min": 0.80, "median": 0.88, "max": 0.95}
    assert format_summary(summary) == "0.880 [0.800-0.950] (5)"
    assert format_summary(seed_summary([0.7])) == "0.700 (1)"


def test_condition_table_rows():
    evaluations = [
        {"model": m, "seed": s, "f1": f, "dataset": d, "training_dataset": d}
        for m, d, s, f in [
            ("a", "da", 0, 0.9),
            ("a", "da", 1, 0.8),
            ("a", "da", 2, 0.7),
            ("b", "db", 0, 0.5),
        ]
    ]
    scores = [
        {"model": "a", "seed": s, "real_set": "exp", "f1": f}
        for s, f in [(0, 0.6), (1, 0.7), (2, 0.65)]
    ]
    histories = {
        ("a", 0): _history([0.95, 0.96]),
        ("a", 1): _history([0.5, 0.91]),
        ("a", 2): _history([0.5, 0.5]),
        ("b", 0): _history([0.92, 0.97]),
    }
    header, rows = condition_table(evaluations, scores, histories)
    assert header == ["condition", "training data", "simulated test F1", "exp F1", "V90", "V95"]
    assert rows[0] == [
        "a",
        "da",
        "0.800 [0.700-0.900] (3)",
        "0.650 [0.600-0.700] (3)",
        "2 (2/3)",
        "not reached (1/3)",
    ]
    assert rows[1] == ["b", "db", "0.500 (1)", "n/a", "1", "2"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    dataset = write_synthetic_dataset(root, n_images=24, size=64)
    dirs = train_seeds(TINY_MODEL_BLOCK, dataset, root)
    test = read_split(*dataset, "test")
    images = np.stack([test.images[int(r)] for r in test.rows])
    masks = np.stack([test.masks[int(r)] for r in test.rows]).astype(np.uint8)
    return root, dataset, dirs, images, masks


def _by_hand(model_dir, images, masks, median_px=3):
    """F1 = TP / (TP + (FP + FN) / 2) of probability > 0.5, counted with numpy."""
    model = TrainedModel.read(model_dir).load_network()
    tp = fp = fn = 0
    per_image = []
    for image, mask in zip(images, masks):
        predicted = predict_micrograph(model, image, median_px=median_px) > 0.5
        t, f_p, f_n = (
            np.sum(predicted & (mask == 1)),
            np.sum(predicted & (mask == 0)),
            np.sum(~predicted & (mask == 1)),
        )
        tp, fp, fn = tp + t, fp + f_p, fn + f_n
        per_image.append(t / (t + 0.5 * (f_p + f_n)))
    return tp / (tp + 0.5 * (fp + fn)), per_image


def _write_real_sets(directory: Path, images, masks) -> dict:
    directory.mkdir(exist_ok=True)
    with h5py.File(directory / "maps.h5", "w") as handle:  # the study's layout: NHWC one-hot
        handle["images"] = images[..., None]
        handle["maps"] = np.stack([1 - masks, masks], axis=-1).astype(np.float32)
    with h5py.File(directory / "labels.h5", "w") as handle:
        handle["images"] = images
        handle["labels"] = masks
    pairs, mask_dir = directory / "micrographs", directory / "masks"
    pairs.mkdir(exist_ok=True)
    mask_dir.mkdir(exist_ok=True)
    for index, (image, mask) in enumerate(zip(images, masks)):
        if index % 2:
            tifffile.imwrite(pairs / f"m{index}.tif", image)
        else:
            np.save(pairs / f"m{index}.npy", image)
        write_mask_png(mask_dir / f"m{index}.png", mask)
    blocks = {
        "maps": {"format": "hdf5", "path": str(directory / "maps.h5"), "pixel_size_A": 0.2},
        "labels": {"format": "hdf5", "path": str(directory / "labels.h5")},
        "pairs": {"format": "pairs", "micrographs": str(pairs), "masks": str(mask_dir)},
    }
    return {name: validate_block("real_sets", block) for name, block in blocks.items()}


def test_loaders_read_every_layout_alike(models, tmp_path):
    _, _, _, images, masks = models
    real_sets = _write_real_sets(tmp_path, images, masks)
    for name, block in real_sets.items():
        items = read_real_set(block)
        assert len(items) == len(images), name
        for item, image, mask in zip(items, images, masks):
            np.testing.assert_array_equal(item.image, image)
            np.testing.assert_array_equal(item.mask, mask)
    assert read_real_set(real_sets["maps"])[0].pixel_size_A == 0.2
    with pytest.raises(ValueError, match="needs 'maps'"):
        with h5py.File(tmp_path / "bad.h5", "w") as handle:
            handle["images"] = images
        read_real_set(
            validate_block("real_sets", {"format": "hdf5", "path": str(tmp_path / "bad.h5")})
        )
    (tmp_path / "masks" / "m0.png").unlink()
    with pytest.raises(ValueError, match="has no mask"):
        read_real_set(real_sets["pairs"])


def test_real_set_f1_equals_a_hand_computation(models, tmp_path):
    _, _, dirs, images, masks = models
    real_sets = _write_real_sets(tmp_path, images, masks)
    f1, per_image = _by_hand(dirs[0], images, masks)
    assert 0 < f1 < 1
    for name, block in real_sets.items():
        result = score_real_set(dirs[0], name, block)
        assert result["f1"] == pytest.approx(f1, abs=1e-12), name
        assert [image["f1"] for image in result["per_image"]] == pytest.approx(per_image, abs=1e-12)
        assert result["n_images"] == len(images) and result["warnings"] == []


def test_pixel_size_mismatch_warns_and_resamples(models, tmp_path):
    _, _, dirs, images, masks = models
    model_dir = tmp_path / "model"
    shutil.copytree(dirs[0], model_dir)
    metadata = json.loads((model_dir / "metadata.json").read_text())
    (model_dir / "metadata.json").write_text(json.dumps({**metadata, "pixel_size_A": 0.2}))
    block = _write_real_sets(tmp_path, images, masks)["maps"]
    matched = score_real_set(model_dir, "maps", block)
    assert matched["warnings"] == [] and matched["training_pixel_size_A"] == 0.2
    coarse = score_real_set(model_dir, "maps", {**block, "pixel_size_A": 0.4})
    assert len(coarse["warnings"]) == len(images) and "resampled x2" in coarse["warnings"][0]
    assert all(image["shape"] == [64, 64] for image in coarse["per_image"])
    kept = score_real_set(model_dir, "maps", {**block, "pixel_size_A": 0.4, "resample": False})
    assert "resampled" not in kept["warnings"][0] and kept["f1"] == pytest.approx(matched["f1"])


def test_drawn_training_pixel_size_passes_its_range_and_resamples_to_its_nominal(monkeypatch):
    """A model trained on pixel sizes drawn from 0.18-0.26 A (nominal 0.22 A): a micrograph in
    that range (and 5 %) is used as it is; one outside is resampled to 0.22 A."""
    import hrtem_wf.real.inference as inference
    from hrtem_wf.real.sets import RealImage, predict_real_image

    seen_shapes = []

    def fake_predict(model, image, **kwargs):
        seen_shapes.append(image.shape)
        return np.zeros(image.shape, np.float32)

    monkeypatch.setattr(inference, "predict_micrograph", fake_predict)
    block = {"median_filter_px": 3, "resample": True}
    image, mask = np.zeros((100, 100), np.float32), np.zeros((100, 100), np.uint8)
    for pixel_size_A, shape, resampled in [(0.25, (100, 100), False), (0.44, (200, 200), True)]:
        probability, warning = predict_real_image(
            None, RealImage("m", image, mask, pixel_size_A), [0.18, 0.26], 0.22, block
        )
        assert seen_shapes.pop() == shape and probability.shape == (100, 100)
        assert (warning is not None) == resampled
    assert "0.18 to 0.26 A" in warning and "(0.22 A)" in warning and "resampled x2" in warning
    # no nominal (trained before it was recorded, on several pixel sizes): warn only
    _, warning = predict_real_image(
        None, RealImage("m", image, mask, 0.44), [0.18, 0.26], None, block
    )
    assert seen_shapes.pop() == (100, 100) and "resampled" not in warning


def test_report_has_the_table_1_layout_and_every_figure(models, tmp_path):
    root, dataset, dirs, images, masks = models
    real_sets = _write_real_sets(tmp_path / "data", images, masks)
    evaluations, scores = [], []
    for model_dir in dirs:
        path = tmp_path / f"eval_{model_dir.name}.json"
        path.write_text(json.dumps(evaluate_model(str(model_dir), *dataset)))
        evaluations.append(str(path))
        for name in ("maps", "pairs"):
            path = tmp_path / f"score_{name}_{model_dir.name}.json"
            path.write_text(json.dumps(score_real_set(model_dir, name, real_sets[name])))
            scores.append(str(path))
    written = write_report(
        evaluations,
        [str(d) for d in dirs],
        *dataset,
        str(tmp_path / "report"),
        score_jsons=scores,
        dataset_parquets=[dataset[1]],
        real_sets={"maps": real_sets["maps"]},
    )
    summary = (tmp_path / "report" / "summary.md").read_text()
    assert (
        "| condition | training data | simulated test F1 | maps F1 | pairs F1 | V90 | V95 |"
        in summary
    )
    f1 = [json.loads(Path(p).read_text())["f1"] for p in scores[::2]]
    assert f"{np.median(f1):.3f} [{min(f1):.3f}-{max(f1):.3f}] (2)" in summary
    assert [p.name for p in written] == [
        "summary.md",
        "training_curves.png",
        "examples.png",
        "data_distributions.png",
        "real_set_examples.png",
        "real_set_sizes.png",
    ]
    for path in written[1:]:
        assert path.read_bytes().startswith(b"\x89PNG")


@pytest.mark.workflow
def test_a_new_real_set_scores_every_seed_without_retraining(tiny_run, tmp_path):
    """Adding a `real_sets` block to a finished run: one score job per model seed and the report
    again, nothing upstream; the report gains the real set's column and example figure."""
    import zarr

    from conftest import job_counts

    flow = tiny_run.clone(tmp_path / "bench")
    config = flow.config
    model, seeds = (
        next(iter(config["models"].items()))[0],
        next(iter(config["models"].values()))["seeds"],
    )
    dataset = flow.path / "results" / "datasets" / config["models"][model]["dataset"]
    table = pd.read_parquet(f"{dataset}.parquet")
    group = zarr.open_group(f"{dataset}.zarr", mode="r")
    (flow.path / "data").mkdir()
    with h5py.File(flow.path / "data" / "exp.h5", "w") as handle:
        handle["images"] = group["images"][...][:2]
        handle["labels"] = group["masks"][...][:2]
    config["real_sets"] = {
        "exp": {
            "format": "hdf5",
            "path": "data/exp.h5",
            "pixel_size_A": float(table["image.pixel_size_A"].iloc[0]),
        }
    }
    flow.write_config(config)
    result = flow.snakemake()
    assert job_counts(result.stdout + result.stderr) == {
        "scores": len(seeds),
        "realism": 1,
        "report": 1,
        "all": 1,
        "total": len(seeds) + 3,
    }
    score = json.loads((flow.path / f"results/scores/exp/{model}/seed{seeds[0]}.json").read_text())
    assert score["n_images"] == 2 and score["warnings"] == [] and 0 <= score["f1"] <= 1
    assert "exp F1" in (flow.path / "results/report/summary.md").read_text()
    assert (flow.path / "results/report/real_set_examples.png").exists()
    # the dataset's own images as the real set: every gap that can be measured is small
    realism = json.loads((flow.path / f"results/realism/exp/{dataset.name}.json").read_text())
    assert realism["n_real"] == 2 and realism["real_set"] == "exp"
    assert realism["statistics"]["intensity"]["gap"] < 0.1
    assert "## Realism" in (flow.path / "results/report/summary.md").read_text()


REAL_AU = Path(__file__).parents[1] / "data" / "real_au"  # 3 real tiles, CC-BY-4.0: see its README


def test_real_micrographs_read_as_the_user_has_them(models):
    """The repository's real bright-field tiles (8-bit RGBA PNG, R = G = B; RGBA masks, 255 =
    particle) through the pairs reader, and scored by a network as the `scores` rule does."""
    from PIL import Image

    block = validate_block(
        "real_sets",
        {
            "format": "pairs",
            "micrographs": str(REAL_AU / "micrographs"),
            "masks": str(REAL_AU / "masks"),
            "pixel_size_A": 0.4,
        },
    )
    items = read_real_set(block)
    assert [item.name for item in items] == ["train00.png", "train07.png", "train13.png"]
    for item in items:
        rgba = np.asarray(Image.open(REAL_AU / "micrographs" / item.name))
        assert rgba.shape == (512, 512, 4) and (rgba[..., 0] == rgba[..., 2]).all()
        np.testing.assert_array_equal(item.image, rgba[..., 0])  # the grey channel, unscaled
        assert set(np.unique(item.mask)) == {0, 1}
        assert 0.1 < item.mask.mean() < 0.25  # about 15 particles of 2-4 nm per tile
        # hand-labelled particles are darker than the carbon around them (bright-field)
        assert item.image[item.mask == 1].mean() < 0.9 * item.image[item.mask == 0].mean()
    _, _, dirs, _, _ = models
    result = score_real_set(dirs[0], "real_au", block)
    f1, per_image = _by_hand(dirs[0], [i.image for i in items], [i.mask for i in items])
    assert result["n_images"] == 3 and result["f1"] == pytest.approx(f1, abs=1e-12)
    assert [image["f1"] for image in result["per_image"]] == pytest.approx(per_image, abs=1e-12)


def test_score_counts_and_sizes_the_particles_against_the_hand_masks(models, monkeypatch):
    """A network whose mask is the hand mask eroded by 2 px: the same particles, each about
    4 px (1.6 A) narrower; the counts agree and the mean diameter error is that shrink."""
    import scipy.ndimage

    import hrtem_wf.real.sets as sets
    from hrtem_wf.real.sizes import measure_particles, size_summary

    block = {"format": "pairs", "micrographs": str(REAL_AU / "micrographs"),
             "masks": str(REAL_AU / "masks"), "pixel_size_A": 0.4, "median_filter_px": 3,
             "resample": False}  # fmt: skip
    eroded = {}

    def network(model, item, *args, **kwargs):
        eroded[item.name] = scipy.ndimage.binary_erosion(item.mask, iterations=2)
        return eroded[item.name].astype(np.float32), None

    monkeypatch.setattr(sets, "predict_real_image", network)
    result = score_real_set(models[2][0], "real_au", block)
    particles = result["particles"]
    hand = [p for item in read_real_set(block) for p in measure_particles(item.mask, 0.4)[0]]
    ours = [p for mask in eroded.values() for p in measure_particles(mask, 0.4)[0]]
    assert particles["hand"] == size_summary(
        hand, sum(measure_particles(i.mask, 0.4)[1] for i in read_real_set(block))
    )
    assert particles["network"]["count"] == len(ours)
    assert particles["count_error"] == pytest.approx(len(ours) / len(hand) - 1)
    mean_hand = particles["hand"]["mean_diameter_nm"]
    assert particles["mean_diameter_error"] == pytest.approx(
        particles["network"]["mean_diameter_nm"] / mean_hand - 1
    )
    assert -0.2 < particles["mean_diameter_error"] < -0.03  # 1.6 A of 2-4 nm
    assert [i["hand_particles"] for i in result["per_image"]] == [
        len(measure_particles(i.mask, 0.4)[0]) for i in read_real_set(block)
    ]
