"""Pixel metrics of a particle segmentation (pure numpy)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class SegmentationCounts:
    """Sums over pixels that every metric below derives from; they add over images."""

    true_positive: int = 0
    false_positive: int = 0
    false_negative: int = 0
    probability_overlap: float = 0.0  # sum(p * y)
    probability_sum: float = 0.0  # sum(p)
    label_sum: float = 0.0  # sum(y)

    def __add__(self, other: SegmentationCounts) -> SegmentationCounts:
        return SegmentationCounts(
            self.true_positive + other.true_positive,
            self.false_positive + other.false_positive,
            self.false_negative + other.false_negative,
            self.probability_overlap + other.probability_overlap,
            self.probability_sum + other.probability_sum,
            self.label_sum + other.label_sum,
        )


def segmentation_counts(
    prob: np.ndarray, target: np.ndarray, threshold: float = 0.5
) -> SegmentationCounts:
    """Confusion counts of ``prob > threshold`` against the particle mask, and soft-F1 sums."""
    prob = np.asarray(prob, dtype=np.float64)
    target = np.asarray(target)
    if prob.shape != target.shape:
        raise ValueError(f"prob {prob.shape} and target {target.shape} must have the same shape")
    labelled = target.astype(bool)
    predicted = prob > threshold
    return SegmentationCounts(
        true_positive=int(np.count_nonzero(predicted & labelled)),
        false_positive=int(np.count_nonzero(predicted & ~labelled)),
        false_negative=int(np.count_nonzero(~predicted & labelled)),
        probability_overlap=float(prob[labelled].sum()),
        probability_sum=float(prob.sum()),
        label_sum=float(np.count_nonzero(labelled)),
    )


def _ratio(numerator: float, denominator: float) -> float:
    # An empty denominator means nothing was labelled and nothing predicted: perfect agreement.
    return float(numerator / denominator) if denominator > 0 else 1.0


def metrics_from_counts(counts: SegmentationCounts) -> dict:
    """f1 = TP / (TP + (FP + FN) / 2), soft_f1 = 2 sum(p y) / (sum p + sum y), precision, recall,
    iou."""
    tp, fp, fn = counts.true_positive, counts.false_positive, counts.false_negative
    empty = tp + fp + fn == 0
    return {
        "f1": _ratio(tp, tp + 0.5 * (fp + fn)),
        "soft_f1": _ratio(
            2.0 * counts.probability_overlap, counts.probability_sum + counts.label_sum
        ),
        "precision": _ratio(tp, tp + fp) if (tp + fp) or empty else 0.0,
        "recall": _ratio(tp, tp + fn) if (tp + fn) or empty else 0.0,
        "iou": _ratio(tp, tp + fp + fn),
    }


def segmentation_metrics(prob: np.ndarray, target: np.ndarray, threshold: float = 0.5) -> dict:
    """Pixel metrics of particle probability ``prob`` against the 0/1 mask ``target``, pooled over
    all pixels.

    Returns f1 (hard: particle where prob > ``threshold``), soft_f1, precision, recall and iou.
    With no particle labelled and none predicted every metric is 1.0; precision is 0.0 when
    nothing is predicted but something is labelled, recall 0.0 in the opposite case.
    """
    return metrics_from_counts(segmentation_counts(prob, target, threshold))
