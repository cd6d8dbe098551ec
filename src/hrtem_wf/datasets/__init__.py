"""Curated datasets: images and masks from one or more image blocks, split by structure."""

from hrtem_wf.datasets.gather import assign_splits, build_dataset

__all__ = ["assign_splits", "build_dataset"]
