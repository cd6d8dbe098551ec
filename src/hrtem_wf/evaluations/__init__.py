"""Scoring trained particle segmenters and reporting on them."""

from .evaluate import evaluate_model, predict_particle_probability
from .metrics import (
    SegmentationCounts,
    metrics_from_counts,
    segmentation_counts,
    segmentation_metrics,
)
from .report import write_report

__all__ = [
    "SegmentationCounts",
    "evaluate_model",
    "metrics_from_counts",
    "predict_particle_probability",
    "segmentation_counts",
    "segmentation_metrics",
    "write_report",
]
