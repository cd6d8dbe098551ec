"""Evaluation: pixel metrics by hand, scoring a tiny trained model, and the report files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import TINY_MODEL_BLOCK, train_seeds
from hrtem_wf.evaluations import (
    evaluate_model,
    predict_particle_probability,
    segmentation_metrics,
    write_report,
)
from hrtem_wf.models import TrainedModel, read_split
from hrtem_wf.models.synthetic import write_synthetic_dataset


def test_perfect_prediction_scores_one():
    target = np.zeros((8, 8), np.uint8)
    target[2:5, 3:7] = 1
    metrics = segmentation_metrics(target.astype(np.float32), target)
    assert metrics == pytest.approx(
        {"f1": 1.0, "soft_f1": 1.0, "precision": 1.0, "recall": 1.0, "iou": 1.0}
    )


def test_all_wrong_prediction_scores_zero():
    target = np.zeros((8, 8), np.uint8)
    target[2:5, 3:7] = 1
    metrics = segmentation_metrics(1.0 - target, target)
    assert metrics == pytest.approx(
        {"f1": 0.0, "soft_f1": 0.0, "precision": 0.0, "recall": 0.0, "iou": 0.0}
    )


def test_known_counts_give_the_paper_f1_and_iou():
    target = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    prob = np.array([0.9, 0.8, 0.7, 0.2, 0.6, 0.5, 0.1, 0.0, 0.3, 0.4])
    true_positive, false_positive, false_negative = 3, 1, 1  # 0.5 is not above the threshold
    metrics = segmentation_metrics(prob, target)
    assert metrics["f1"] == pytest.approx(
        true_positive / (true_positive + 0.5 * (false_positive + false_negative))
    )
    assert metrics["iou"] == pytest.approx(
        true_positive / (true_positive + false_positive + false_negative)
    )
    assert metrics["precision"] == pytest.approx(3 / 4)
    assert metrics["recall"] == pytest.approx(3 / 4)
    assert metrics["soft_f1"] == pytest.approx(2 * (0.9 + 0.8 + 0.7 + 0.2) / (prob.sum() + 4))
    assert segmentation_metrics(prob, target, threshold=0.15)["recall"] == pytest.approx(1.0)


def test_empty_label_and_empty_prediction_agree_perfectly():
    metrics = segmentation_metrics(np.zeros((4, 4)), np.zeros((4, 4), np.uint8))
    assert metrics["f1"] == 1.0 and metrics["iou"] == 1.0


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="same shape"):
        segmentation_metrics(np.zeros((4, 4)), np.zeros((4, 5)))


@pytest.fixture(scope="module")
def trained_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluation")
    dataset = write_synthetic_dataset(root)
    model_dirs = [str(model_dir) for model_dir in train_seeds(TINY_MODEL_BLOCK, dataset, root)]
    return root, dataset, model_dirs


def test_evaluate_model_pools_metrics_over_the_test_split(trained_models):
    _, dataset, model_dirs = trained_models
    evaluation = evaluate_model(model_dirs[0], *dataset, split="test")
    assert (evaluation["model"], evaluation["seed"], evaluation["split"]) == ("tiny", 0, "test")
    assert evaluation["n_images"] == 4 and len(evaluation["per_image"]) == 4
    for key in ("f1", "soft_f1", "precision", "recall", "iou", "mean_image_f1"):
        assert 0.0 <= evaluation[key] <= 1.0
    # the pooled numbers equal the metrics of all test pixels at once
    test = read_split(*dataset, "test")
    raw_images = np.stack([test.images[int(r)] for r in test.rows])
    masks = np.stack([test.masks[int(r)] for r in test.rows])
    network = TrainedModel.read(model_dirs[0]).load_network()
    probabilities = predict_particle_probability(network, raw_images)
    expected = segmentation_metrics(probabilities, masks)
    for key, value in expected.items():
        assert evaluation[key] == pytest.approx(value, abs=1e-6)
    json.dumps(evaluation)  # the CLI writes it as JSON


def test_write_report_makes_a_summary_table_and_two_figures(trained_models):
    root, dataset, model_dirs = trained_models
    evaluation_jsons = []
    for model_dir in model_dirs:
        path = Path(model_dir) / "evaluation_test.json"
        path.write_text(json.dumps(evaluate_model(model_dir, *dataset)))
        evaluation_jsons.append(str(path))
    out_dir = root / "report"
    write_report(evaluation_jsons, model_dirs, *dataset, str(out_dir))

    summary = (out_dir / "summary.md").read_text()
    assert (
        "| model | seed | dataset | n test images | F1 | soft F1 | precision | recall | IoU "
        "| best epoch |" in summary
    )
    assert "| tiny | 0 | toy | 4 |" in summary and "| tiny | 1 | toy | 4 |" in summary
    assert "| tiny | toy | 2 |" in summary and "±" in summary
    for name in ("training_curves.png", "examples.png"):
        data = (out_dir / name).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 1000


def test_evaluating_an_empty_split_is_a_clear_error(trained_models, tmp_path):
    _, dataset, model_dirs = trained_models
    table = pd.read_parquet(dataset[1])
    table["split"] = table["split"].replace("test", "validation")
    table.to_parquet(tmp_path / "no_test.parquet")
    with pytest.raises(ValueError, match="no images in the 'test' split"):
        evaluate_model(model_dirs[0], dataset[0], str(tmp_path / "no_test.parquet"))
