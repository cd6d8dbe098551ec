"""The report of a set of trained models: a markdown summary, training curves and example predictions."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure  # a bare Figure renders with Agg and leaves pyplot's state alone
from matplotlib.ticker import MaxNLocator

from ..training.data import normalize_min_max, read_split
from ..training.model import load_model
from .evaluate import predict_particle_probability
from .metrics import segmentation_metrics

METRIC_COLUMNS = (("f1", "F1"), ("soft_f1", "soft F1"), ("precision", "precision"), ("recall", "recall"), ("iou", "IoU"))
N_EXAMPLES = 4


def _markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _mean_sd(values: list[float]) -> str:
    if len(values) < 2:
        return f"{values[0]:.3f} ± n/a"  # one seed: no spread to report
    return f"{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f}"


def _match_model_dirs(evaluations: list[dict], model_dirs: list[str]) -> list[Path]:
    """The model directory of each evaluation, matched on (model, seed) from metadata.json."""
    by_model_and_seed = {}
    for model_dir in model_dirs:
        metadata = json.loads((Path(model_dir) / "metadata.json").read_text())
        by_model_and_seed[(metadata["model"], metadata["seed"])] = Path(model_dir)
    matched = []
    for evaluation in evaluations:
        key = (evaluation["model"], evaluation["seed"])
        if key not in by_model_and_seed:
            raise ValueError(f"no model directory among {model_dirs} holds model {key[0]!r} seed {key[1]}")
        matched.append(by_model_and_seed[key])
    return matched


def _summary_markdown(evaluations: list[dict], metadatas: list[dict]) -> str:
    split = evaluations[0].get("split", "test")
    header = ["model", "seed", "dataset", f"n {split} images", *(label for _, label in METRIC_COLUMNS), "best epoch"]
    rows = [
        [str(e["model"]), str(e["seed"]), str(e["dataset"]), str(e["n_images"]),
         *(f"{e[key]:.3f}" for key, _ in METRIC_COLUMNS), str(m["best_epoch"])]
        for e, m in zip(evaluations, metadatas)
    ]
    grouped = defaultdict(list)
    for evaluation in evaluations:
        grouped[(evaluation["model"], evaluation["dataset"])].append(evaluation)
    mean_header = ["model", "dataset", "seeds", *(f"{label} (mean ± sd)" for _, label in METRIC_COLUMNS)]
    mean_rows = [
        [str(model), str(dataset), str(len(group)),
         *(_mean_sd([e[key] for e in group]) for key, _ in METRIC_COLUMNS)]
        for (model, dataset), group in grouped.items()
    ]
    return (
        "# Evaluation report\n\n"
        f"Pixel metrics on the {split} split, pooled over all its pixels; particle = softmax "
        f"probability > {evaluations[0].get('threshold', 0.5)}. F1 = TP / (TP + (FP + FN) / 2), "
        "soft F1 = 2 sum(p y) / (sum p + sum y).\n\n"
        "## Per model and seed\n\n" + _markdown_table(header, rows) + "\n\n"
        "## Mean ± sd over seeds\n\n" + _markdown_table(mean_header, mean_rows) + "\n"
    )


def _plot_training_curves(histories: list[pd.DataFrame], labels: list[str], path: Path) -> None:
    figure = Figure(figsize=(11, 4), layout="constrained")
    loss_axes, f1_axes = figure.subplots(1, 2)
    colors = [f"C{i % 10}" for i in range(len(histories))]
    for history, label, color in zip(histories, labels, colors):
        loss_axes.plot(history["epoch"], history["train_loss"], color=color, label=f"{label} train")
        loss_axes.plot(history["epoch"], history["val_loss"], color=color, linestyle="--", label=f"{label} validation")
        f1_axes.plot(history["epoch"], history["val_f1"], color=color, marker="o", markersize=3, label=label)
    loss_axes.set(xlabel="epoch", ylabel="loss (CE + 1 - soft F1)", title="training (solid) / validation (dashed) loss")
    f1_axes.set(xlabel="epoch", ylabel="validation F1", title="validation F1", ylim=(0, 1))
    for axes in (loss_axes, f1_axes):
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    loss_axes.legend(fontsize="small")
    f1_axes.legend(fontsize="small")
    figure.savefig(path, dpi=120)


def _plot_examples(model_dir: Path, label: str, dataset_zarr: str, dataset_parquet: str, split: str, path: Path) -> None:
    data = read_split(dataset_zarr, dataset_parquet, split)
    rows = data.rows[:N_EXAMPLES]
    raw_images = np.stack([np.asarray(data.images[int(r)]) for r in rows])
    masks = np.stack([np.asarray(data.masks[int(r)]) for r in rows])
    probabilities = predict_particle_probability(load_model(model_dir), raw_images)
    figure = Figure(figsize=(9, 3 * len(rows)), layout="constrained")
    axes = np.atleast_2d(figure.subplots(len(rows), 3))
    for index, (image, mask, probability) in enumerate(zip(raw_images, masks, probabilities)):
        table_row = data.table.iloc[index]
        f1 = segmentation_metrics(probability, mask)["f1"]
        axes[index, 0].imshow(normalize_min_max(image), cmap="gray")
        axes[index, 0].set_title(f"row {int(table_row['row'])} {table_row.get('structure_id', '')}", fontsize="small")
        axes[index, 1].imshow(mask, cmap="gray", vmin=0, vmax=1)
        axes[index, 1].set_title("label (particle mask)", fontsize="small")
        axes[index, 2].imshow(probability, cmap="magma", vmin=0, vmax=1)
        axes[index, 2].set_title(f"{label}: particle probability, F1 {f1:.3f}", fontsize="small")
        for axis in axes[index]:
            axis.set_axis_off()
    figure.savefig(path, dpi=100)


def write_report(
    evaluation_jsons: list[str],
    model_dirs: list[str],
    dataset_zarr: str,
    dataset_parquet: str,
    out_dir: str,
) -> None:
    """Write ``summary.md``, ``training_curves.png`` and ``examples.png`` (first model) to ``out_dir``."""
    if not evaluation_jsons:
        raise ValueError("write_report needs at least one evaluation JSON")
    evaluations = [json.loads(Path(path).read_text()) for path in evaluation_jsons]
    matched_dirs = _match_model_dirs(evaluations, model_dirs)
    metadatas = [json.loads((d / "metadata.json").read_text()) for d in matched_dirs]
    histories = [pd.read_csv(d / "history.csv") for d in matched_dirs]
    labels = [f"{e['model']} seed {e['seed']}" for e in evaluations]

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "summary.md").write_text(_summary_markdown(evaluations, metadatas))
    _plot_training_curves(histories, labels, out_dir / "training_curves.png")
    _plot_examples(
        matched_dirs[0], labels[0], dataset_zarr, dataset_parquet,
        evaluations[0].get("split", "test"), out_dir / "examples.png",
    )
