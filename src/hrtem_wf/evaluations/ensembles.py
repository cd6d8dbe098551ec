"""Summaries over the seeds of a condition (a models block): min / median / max of a score as in
the study's Table S2, and epochs to a validation F1 of 0.90 / 0.95 (Table 1's V90 / V95)."""

from __future__ import annotations

import numpy as np
import pandas as pd

V_LEVELS = (0.90, 0.95)


def epochs_to(history: pd.DataFrame, level: float) -> int | None:
    """The first epoch whose validation F1 reaches `level`; None if none does."""
    reached = history.loc[history["val_f1"] >= level, "epoch"]
    return int(reached.iloc[0]) if len(reached) else None


def seed_summary(values: list[float]) -> dict:
    """n, min, median, max of one score over seeds."""
    values = [float(v) for v in values]
    if not values:
        return {"n": 0, "min": None, "median": None, "max": None}
    return {
        "n": len(values),
        "min": min(values),
        "median": float(np.median(values)),
        "max": max(values),
    }


def epochs_summary(histories: list[pd.DataFrame], level: float) -> dict:
    """Median over seeds of the epochs to `level`, with how many seeds got there; seeds that
    never do count as beyond their last epoch (so the median is None when most never do)."""
    reached = [epochs_to(h, level) for h in histories]
    never = [int(h["epoch"].max()) + 1 for h, r in zip(histories, reached) if r is None]
    values = sorted([r for r in reached if r is not None] + [float("inf")] * len(never))
    median = float(np.median(values)) if values else None
    return {
        "level": level,
        "n_reached": sum(r is not None for r in reached),
        "n": len(histories),
        "median": None if median is None or not np.isfinite(median) else median,
        "per_seed": reached,
    }


def format_summary(summary: dict) -> str:
    """'0.912 [0.890-0.925] (5)': median [min-max] (seeds)."""
    if not summary["n"]:
        return "n/a"
    if summary["n"] == 1:
        return f"{summary['median']:.3f} (1)"
    return f"{summary['median']:.3f} [{summary['min']:.3f}-{summary['max']:.3f}] ({summary['n']})"


def format_epochs(summary: dict) -> str:
    if summary["median"] is None:
        return f"not reached ({summary['n_reached']}/{summary['n']})"
    median = summary["median"]
    text = f"{median:.0f}" if float(median).is_integer() else f"{median:.1f}"
    return text + (
        f" ({summary['n_reached']}/{summary['n']})" if summary["n_reached"] < summary["n"] else ""
    )


__all__ = [
    "V_LEVELS",
    "epochs_summary",
    "epochs_to",
    "format_epochs",
    "format_summary",
    "seed_summary",
]
