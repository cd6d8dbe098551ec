"""Scoring a trained model on one split of a dataset: pixel metrics of particle masks, column
detection (Madsen 2018: peaks matched to the true columns, position error, classes) or the
exit wave's RMSE beside a Y-scramble baseline (Larsen 2023), by the model's task."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..models.data import as_channels, normalize_min_max, read_split
from ..models.loss import task_output
from ..models.model import TrainedModel, check_image_shape, resolve_device
from .metrics import SegmentationCounts, metrics_from_counts, segmentation_counts

#: The Y-scramble baseline's derangement is drawn from this seed (reproducible reports).
Y_SCRAMBLE_SEED = 0


def predict_maps(
    model: torch.nn.Module,
    raw_images: np.ndarray,
    task: str = "segmentation",
    device: torch.device | str = "cpu",
) -> np.ndarray:
    """The network's maps for raw-count images (N, [C,] H, W): the particle probability (N, H, W)
    (softmax), column confidence maps (N, K, H, W) (softmax over the classes and background,
    as trained) or the exit wave (N, 2, H, W) (vacuum + the linear output), as
    `hrtem_wf.models.loss.task_output` defines them."""
    # Same per-image [0, 1] scaling as in training.
    batch = np.stack([as_channels(normalize_min_max(image)) for image in raw_images])
    model.eval()
    with torch.no_grad():
        outputs = model(torch.from_numpy(batch).to(device))
        if task == "segmentation":
            return torch.softmax(outputs, dim=1)[:, 1].cpu().numpy()
        return task_output(task, outputs).cpu().numpy()


def predict_particle_probability(
    model: torch.nn.Module, raw_images: np.ndarray, device: torch.device | str = "cpu"
) -> np.ndarray:
    """Softmax probability of the particle class, (N, H, W), for raw-count images (N, H, W)."""
    return predict_maps(model, raw_images, "segmentation", device)


def _batches(data, batch_size: int):
    """(first index, raw images, targets) of the split, batch by batch."""
    for start in range(0, len(data), batch_size):
        rows = data.rows[start : start + batch_size]
        raw_images = np.stack([np.asarray(data.images[int(r)]) for r in rows])
        targets = np.stack([np.asarray(data.masks[int(r)]) for r in rows])
        yield start, raw_images, targets


def evaluate_model(
    model_dir: str,
    dataset_zarr: str,
    dataset_parquet: str,
    split: str = "test",
    threshold: float = 0.5,
    device: str | None = None,
) -> dict:
    """Pixel metrics of the model in ``model_dir`` on ``split`` of a dataset.

    f1, soft_f1, precision, recall and iou are pooled over all pixels of the split;
    mean_image_f1 averages the per-image hard F1; per_image lists row, structure_id and f1.
    ``device`` defaults to the model block's device.
    """
    trained = TrainedModel.read(model_dir)
    block = trained.block
    torch_device = resolve_device(device or block["device"])
    data = read_split(dataset_zarr, dataset_parquet, split, trained.task)
    if len(data) == 0:
        raise ValueError(f"{dataset_parquet} has no images in the {split!r} split")
    check_image_shape(data.image_shape, block["encoder_depth"], block["architecture"])
    model = trained.load_network(torch_device)
    batches = _batches(data, int(block["batch_size"]))
    common = {
        "model": trained.name,
        "seed": trained.seed,
        "task": trained.task,
        "model_dir": str(model_dir),
        "dataset": Path(dataset_zarr).name.removesuffix(".zarr"),
        "training_dataset": trained.dataset,
        "dataset_zarr": str(dataset_zarr),
        "dataset_parquet": str(dataset_parquet),
        "split": split,
        "n_images": len(data),
        "best_epoch": trained.best_epoch,
    }
    if trained.task == "columns":
        return common | _column_metrics(model, data, batches, torch_device)
    if trained.task == "exit_wave":
        return common | _exit_wave_metrics(model, batches, torch_device)

    pooled = SegmentationCounts()
    per_image = []
    for start, raw_images, masks in batches:
        probabilities = predict_particle_probability(model, raw_images, torch_device)
        for offset, (probability, mask) in enumerate(zip(probabilities, masks)):
            counts = segmentation_counts(probability, mask, threshold)
            pooled = pooled + counts
            table_row = data.table.iloc[start + offset]
            per_image.append(
                {
                    "row": int(table_row["row"]),
                    "structure_id": str(table_row.get("structure_id", "")),
                    "f1": metrics_from_counts(counts)["f1"],
                }
            )

    return common | {
        "threshold": threshold,
        **metrics_from_counts(pooled),
        "mean_image_f1": float(np.mean([image["f1"] for image in per_image])),
        "per_image": per_image,
    }


def _column_metrics(model, data, batches, device) -> dict:
    """Columns found in the predicted maps (Madsen's watershed) matched to the true columns
    within the images block's match_radius_A: detection precision / recall / F1 pooled over the
    split, position RMSE and class accuracy of the matched pairs, the confusion matrix."""
    from .columns import ColumnCounts, column_counts, column_metrics, find_columns

    spec = data.attrs["targets"]["columns"]
    names = list(spec["classes"]["names"])
    positions = data.column_positions
    pixel_size_A = data.table["image.pixel_size_A"].to_numpy(dtype=float)
    pooled, per_image = ColumnCounts(), []
    for start, raw_images, _ in batches:
        maps = predict_maps(model, raw_images, "columns", device)
        for offset, image_maps in enumerate(maps):
            row = int(data.table["row"].iloc[start + offset])
            true = positions[positions[:, 0] == row]
            radius_px = spec["match_radius_A"] / pixel_size_A[start + offset]
            counts = column_counts(
                find_columns(image_maps),
                true[:, 1:3],
                true[:, 3].astype(int),
                radius_px,
                len(names),
            )
            pooled = pooled + counts
            image_metrics = column_metrics(counts, pixel_size_A[start + offset])
            per_image.append(
                {"row": row, **{k: image_metrics[k] for k in ("f1", "n_true", "n_detected")}}
            )
    metrics = column_metrics(pooled, float(np.median(pixel_size_A)))
    return {
        **metrics,
        "class_kind": spec["classes"]["kind"],
        "class_names": names,
        "match_radius_A": spec["match_radius_A"],
        "sigma_A": spec["sigma_A"],
        "per_image": per_image,
    }


def _exit_wave_metrics(model, batches, device) -> dict:
    """RMSE of the predicted exit waves' real and imaginary parts (Larsen 2023), per image and
    their mean, beside the Y-scramble baseline: each prediction against another image's wave."""
    from .columns import exit_wave_rmse, y_scramble_rmse

    predictions, targets, per_image = [], [], []
    for _, raw_images, waves in batches:
        predicted = predict_maps(model, raw_images, "exit_wave", device)
        predictions.append(predicted)
        targets.append(waves)
        per_image += [exit_wave_rmse(p, t) for p, t in zip(predicted, waves)]
    predictions, targets = np.concatenate(predictions), np.concatenate(targets)
    scramble = None
    if len(predictions) >= 2:
        scramble = y_scramble_rmse(predictions, targets, np.random.default_rng(Y_SCRAMBLE_SEED))
    return {
        **{key: float(np.mean([m[key] for m in per_image])) for key in per_image[0]},
        "y_scramble_rmse": scramble,
        "per_image": per_image,
    }
