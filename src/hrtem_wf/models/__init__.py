"""Training UNet particle segmenters on curated datasets (DaCosta et al. 2024, methods)."""

from .data import SegmentationDataset, d4_transform, normalize_min_max, random_d4, read_split
from .loss import segmentation_loss, soft_f1
from .model import TrainedModel, build_model, check_image_shape, resolve_device
from .train import HISTORY_COLUMNS, evaluate_loss, train_model

__all__ = [
    "HISTORY_COLUMNS",
    "SegmentationDataset",
    "TrainedModel",
    "build_model",
    "check_image_shape",
    "d4_transform",
    "evaluate_loss",
    "normalize_min_max",
    "random_d4",
    "read_split",
    "resolve_device",
    "segmentation_loss",
    "soft_f1",
    "train_model",
]
