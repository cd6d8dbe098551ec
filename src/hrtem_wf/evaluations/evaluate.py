"""Scoring a trained model on one split of a dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..models.data import normalize_min_max, read_split
from ..models.model import TrainedModel, check_image_shape, resolve_device
from .metrics import SegmentationCounts, metrics_from_counts, segmentation_counts

#: Bumped when a change here changes what evaluation produces (for the workflow's rerun triggers).
EVALUATION_CODE_VERSION = "1"


def predict_particle_probability(
    model: torch.nn.Module, raw_images: np.ndarray, device: torch.device | str = "cpu"
) -> np.ndarray:
    """Softmax probability of the particle class, (N, H, W), for raw-count images (N, H, W)."""
    # Same per-image [0, 1] scaling as in training.
    batch = np.stack([normalize_min_max(image) for image in raw_images])[:, None]
    model.eval()
    with torch.no_grad():
        logits = model(torch.from_numpy(batch).to(device))
        return torch.softmax(logits, dim=1)[:, 1].cpu().numpy()


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
    data = read_split(dataset_zarr, dataset_parquet, split)
    if len(data) == 0:
        raise ValueError(f"{dataset_parquet} has no images in the {split!r} split")
    check_image_shape(data.image_shape, block["encoder_depth"])
    model = trained.load_network(torch_device)

    batch_size = int(block["batch_size"])
    pooled = SegmentationCounts()
    per_image = []
    for start in range(0, len(data), batch_size):
        rows = data.rows[start : start + batch_size]
        raw_images = np.stack([np.asarray(data.images[int(r)]) for r in rows])
        masks = np.stack([np.asarray(data.masks[int(r)]) for r in rows])
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

    return {
        "model": trained.name,
        "seed": trained.seed,
        "model_dir": str(model_dir),
        "dataset": Path(dataset_zarr).name.removesuffix(".zarr"),
        "training_dataset": trained.dataset,
        "dataset_zarr": str(dataset_zarr),
        "dataset_parquet": str(dataset_parquet),
        "split": split,
        "threshold": threshold,
        "n_images": len(data),
        **metrics_from_counts(pooled),
        "mean_image_f1": float(np.mean([image["f1"] for image in per_image])),
        "best_epoch": trained.best_epoch,
        "evaluation_code_version": EVALUATION_CODE_VERSION,
        "per_image": per_image,
    }
