"""Curated datasets: images and masks from one or more image blocks, selected by metadata
(`select`) and split by structure."""

from hrtem_wf.datasets.curate import curate, distributions, scaled_select, selection_report
from hrtem_wf.datasets.gather import assign_splits, build_dataset

__all__ = [
    "assign_splits",
    "build_dataset",
    "curate",
    "distributions",
    "scaled_select",
    "selection_report",
]
