"""The report of a set of trained models: the Table 1-style summary (condition x real set, median
and range over seeds, V90 / V95), training curves per condition, example predictions on the
simulated test split and on each real set, and the data distributions of each
dataset."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import (
    Figure,  # a bare Figure renders with Agg and leaves pyplot's state alone
)
from matplotlib.ticker import MaxNLocator

from ..datasets.curate import DISTRIBUTION_COLUMNS
from ..models.data import normalize_min_max, read_split
from ..models.model import TrainedModel
from .ensembles import V_LEVELS, epochs_summary, format_epochs, format_summary, seed_summary
from .evaluate import predict_particle_probability
from .metrics import segmentation_metrics

METRIC_COLUMNS = (
    ("f1", "F1"),
    ("soft_f1", "soft F1"),
    ("precision", "precision"),
    ("recall", "recall"),
    ("iou", "IoU"),
)
N_EXAMPLES = 4
N_REAL_SET_EXAMPLES = 2
HISTOGRAM_COLUMNS = (
    "image.dose_e_per_A2",
    "image.defocus_A",
    "structure.substrate_thickness_A",
    "structure.radius_A",
)


def _markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _mean_sd(values: list[float]) -> str:
    if len(values) < 2:
        return f"{values[0]:.3f} ± n/a"  # one seed: no spread to report
    return f"{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f}"


def _match_models(evaluations: list[dict], model_dirs: list[str]) -> list[TrainedModel]:
    """The trained model of each evaluation, matched on (model, seed)."""
    by_model_and_seed = {}
    for model_dir in model_dirs:
        trained = TrainedModel.read(model_dir)
        by_model_and_seed[(trained.name, trained.seed)] = trained
    matched = []
    for evaluation in evaluations:
        key = (evaluation["model"], evaluation["seed"])
        if key not in by_model_and_seed:
            raise ValueError(
                f"no model directory among {model_dirs} holds model {key[0]!r} seed {key[1]}"
            )
        matched.append(by_model_and_seed[key])
    return matched


def _realism_markdown(realism: list[dict]) -> str:
    """The realism gaps of each (real set, dataset), one column per statistic (0 = match)."""
    if not realism:
        return ""
    names = list(realism[0]["statistics"])
    header = ["real set", "dataset", *names, "labels outside masks [A]"]

    def cell(value):
        return "-" if value is None else f"{value:.3g}"

    rows = [
        [
            r["real_set"],
            r["dataset"],
            *(cell(r["statistics"][n]["gap"]) for n in names),
            cell(r["label_offset_A"]),
        ]
        for r in realism
    ]
    definitions = "\n".join(f"- {n}: {realism[0]['statistics'][n]['definition']}" for n in names)
    return (
        "\n\n## Realism: simulated vs real micrographs\n\n"
        "The same statistics of each dataset's images and each real set's micrographs, one gap "
        "each (0 = they match; `hrtem-wf match` explains them); figures in "
        "`results/realism/<real set>/<dataset>.png`. A positive label offset means our labels "
        "draw particles wider than the real masks: `label.grow_A` = -offset moves them there.\n\n"
        + _markdown_table(header, rows)
        + "\n\n"
        + definitions
        + "\n"
    )


def _training_data(dataset: str, on_the_fly: dict | None) -> str:
    """The dataset column: the dataset, and for on-the-fly training what drew its images."""
    if not on_the_fly:
        return dataset
    return (
        f"{dataset} (train: drawn on the fly by images.{on_the_fly['images']}, "
        f"{on_the_fly['images_per_epoch']} per epoch)"
    )


def _summary_markdown(
    evaluations: list[dict],
    models: list[TrainedModel],
    scores: list[dict],
    histories: dict[tuple[str, int], pd.DataFrame],
) -> str:
    """The condition table (Table 1), every model and seed, means over seeds, warnings."""
    split = evaluations[0].get("split", "test")
    header = [
        "model",
        "seed",
        "dataset",
        f"n {split} images",
        *(label for _, label in METRIC_COLUMNS),
        "best epoch",
    ]
    rows = [
        [
            str(e["model"]),
            str(e["seed"]),
            _training_data(str(e["dataset"]), m.metadata.get("on_the_fly")),
            str(e["n_images"]),
            *(f"{e[key]:.3f}" for key, _ in METRIC_COLUMNS),
            str(m.best_epoch),
        ]
        for e, m in zip(evaluations, models)
    ]
    grouped = defaultdict(list)
    for evaluation in evaluations:
        grouped[(evaluation["model"], evaluation["dataset"])].append(evaluation)
    mean_header = [
        "model",
        "dataset",
        "seeds",
        *(f"{label} (mean ± sd)" for _, label in METRIC_COLUMNS),
    ]
    mean_rows = [
        [
            str(model),
            str(dataset),
            str(len(group)),
            *(_mean_sd([e[key] for e in group]) for key, _ in METRIC_COLUMNS),
        ]
        for (model, dataset), group in grouped.items()
    ]
    condition_header, condition_rows = condition_table(evaluations, scores, histories)
    warnings = [
        f"- {s['real_set']}, {s['model']} seed {s['seed']}: {w}"
        for s in scores
        for w in s.get("warnings", [])
    ]
    return (
        "# Evaluation report\n\n"
        "## Conditions (Table 1 of the study)\n\n"
        "F1 as median [min-max] (seeds) over the seeds of each condition; the simulated test "
        "split is the condition's own dataset. V90 / V95: median epochs to a validation F1 of "
        "0.90 / 0.95 (seeds that got there / seeds when not all did).\n\n"
        + _markdown_table(condition_header, condition_rows)
        + "\n\n"
        f"Pixel metrics on the {split} split, pooled over all its pixels; particle = softmax "
        f"probability > {evaluations[0].get('threshold', 0.5)}. F1 = TP / (TP + (FP + FN) / 2), "
        "soft F1 = 2 sum(p y) / (sum p + sum y).\n\n"
        "## Per model and seed\n\n" + _markdown_table(header, rows) + "\n\n"
        "## Mean ± sd over seeds\n\n"
        + _markdown_table(mean_header, mean_rows)
        + "\n"
        + ("\n## Real-set warnings\n\n" + "\n".join(warnings) + "\n" if warnings else "")
    )


def condition_table(
    evaluations: list[dict], scores: list[dict], histories: dict[tuple[str, int], pd.DataFrame]
) -> tuple[list[str], list[list[str]]]:
    """Table 1 of the study, per condition (models block): F1 median [min-max] (seeds) on its own
    simulated test split and on each real set, and the median epochs to validation F1 0.90 /
    0.95."""
    real_sets = sorted({s["real_set"] for s in scores})
    header = [
        "condition",
        "training data",
        "simulated test F1",
        *(f"{r} F1" for r in real_sets),
        *(f"V{round(level * 100)}" for level in V_LEVELS),
    ]
    rows = []
    for model in dict.fromkeys(e["model"] for e in evaluations):
        own = [e for e in evaluations if e["model"] == model]
        row = [
            str(model),
            str(own[0].get("training_dataset") or own[0]["dataset"]),
            format_summary(seed_summary([e["f1"] for e in own])),
        ]
        for real_set in real_sets:
            row.append(
                format_summary(
                    seed_summary(
                        [
                            s["f1"]
                            for s in scores
                            if s["model"] == model and s["real_set"] == real_set
                        ]
                    )
                )
            )
        seed_histories = [
            histories[(model, e["seed"])] for e in own if (model, e["seed"]) in histories
        ]
        row += [format_epochs(epochs_summary(seed_histories, level)) for level in V_LEVELS]
        rows.append(row)
    return header, rows


def _plot_training_curves(histories: dict[tuple[str, int], pd.DataFrame], path: Path) -> None:
    """One column per condition: loss (train solid, validation dashed) and validation F1 of
    every seed, with the V90 / V95 levels."""
    models = list(dict.fromkeys(model for model, _ in histories))
    figure = Figure(figsize=(max(5.0, 4.5 * len(models)), 7), layout="constrained")
    axes = np.array(figure.subplots(2, len(models), squeeze=False))
    for column, model in enumerate(models):
        loss_axes, f1_axes = axes[0, column], axes[1, column]
        for index, ((_, seed), history) in enumerate(
            h for h in histories.items() if h[0][0] == model
        ):
            color = f"C{index % 10}"
            loss_axes.plot(
                history["epoch"], history["train_loss"], color=color, label=f"seed {seed}"
            )
            loss_axes.plot(history["epoch"], history["val_loss"], color=color, linestyle="--")
            f1_axes.plot(
                history["epoch"],
                history["val_f1"],
                color=color,
                marker="o",
                markersize=3,
                label=f"seed {seed}",
            )
        for level in V_LEVELS:
            f1_axes.axhline(level, color="0.6", linewidth=0.8, linestyle=":")
        loss_axes.set(
            title=f"{model}: loss (train solid, validation dashed)",
            xlabel="epoch",
            ylabel="CE + 1 - soft F1",
        )
        f1_axes.set(title=f"{model}: validation F1", xlabel="epoch", ylabel="F1", ylim=(0, 1))
        for ax in (loss_axes, f1_axes):
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.title.set_fontsize("small")
        f1_axes.legend(fontsize="x-small")
    figure.savefig(path, dpi=110)


def _distribution_tables(parquets: list[str], model_dirs: list[str]) -> dict[str, str]:
    """name -> Parquet of each row of the data-distribution figure: every dataset, and the
    training images each on-the-fly model drew (its first seed's drawn.parquet, all epochs)."""
    tables = {Path(p).name.removesuffix(".parquet"): p for p in parquets}
    for model_dir in model_dirs:
        drawn, model = Path(model_dir) / "drawn.parquet", Path(model_dir).parent.name
        if drawn.exists() and f"{model} (drawn on the fly)" not in tables:
            tables[f"{model} (drawn on the fly)"] = str(drawn)
    return tables


def _plot_distributions(parquets: dict[str, str], path: Path) -> None:
    """Histograms of dose, defocus, substrate thickness and radius: one row per table."""
    tables = {name: pd.read_parquet(p) for name, p in parquets.items()}
    figure = Figure(figsize=(3.2 * len(HISTOGRAM_COLUMNS), 2.6 * len(tables)), layout="constrained")
    axes = np.array(figure.subplots(len(tables), len(HISTOGRAM_COLUMNS), squeeze=False))
    for row, (name, table) in enumerate(tables.items()):
        for column, key in enumerate(HISTOGRAM_COLUMNS):
            ax = axes[row, column]
            values = pd.to_numeric(table[key], errors="coerce").dropna() if key in table else []
            if len(values):
                ax.hist(values, bins=20, color="C0")
            else:
                ax.text(0.5, 0.5, "not recorded", ha="center", va="center", transform=ax.transAxes)
            ax.set_title(f"{name}\n{DISTRIBUTION_COLUMNS[key]}", fontsize="small")
            ax.set_ylabel("images" if column == 0 else "")
    figure.savefig(path, dpi=100)


def _plot_real_set_examples(trained: TrainedModel, label: str, real_sets: dict, path: Path) -> None:
    """The first images of each real set: micrograph (preprocessed), mask, prediction."""
    from hrtem_wf.inference import preprocess

    from .real_sets import predict_real_image, read_real_set

    model = trained.load_network()
    training = trained.pixel_size_A
    rows = []
    for name, block in real_sets.items():
        for item in read_real_set(block)[:N_REAL_SET_EXAMPLES]:
            probability, _ = predict_real_image(
                model, item, training, trained.nominal_pixel_size_A, block
            )
            image = preprocess(item.image, block["median_filter_px"])
            rows.append(
                (image, f"{name}: {item.name}", item.mask, "hand-labelled mask", probability)
            )
    _plot_prediction_rows(rows, label, path)


def _plot_prediction_rows(rows: list[tuple], label: str, path: Path) -> None:
    """One row per (image in [0, 1], its title, mask, the mask's title, particle probability)."""
    figure = Figure(figsize=(9, 3 * len(rows)), layout="constrained")
    axes = np.array(figure.subplots(len(rows), 3, squeeze=False))
    for index, (image, title, mask, mask_title, probability) in enumerate(rows):
        f1 = segmentation_metrics(probability, mask)["f1"]
        axes[index, 0].imshow(image, cmap="gray")
        axes[index, 0].set_title(title, fontsize="small")
        axes[index, 1].imshow(mask, cmap="gray", vmin=0, vmax=1)
        axes[index, 1].set_title(mask_title, fontsize="small")
        axes[index, 2].imshow(probability, cmap="magma", vmin=0, vmax=1)
        axes[index, 2].set_title(f"{label}: particle probability, F1 {f1:.3f}", fontsize="small")
        for axis in axes[index]:
            axis.set_axis_off()
    figure.savefig(path, dpi=100)


def _plot_examples(
    trained: TrainedModel,
    label: str,
    dataset_zarr: str,
    dataset_parquet: str,
    split: str,
    path: Path,
) -> None:
    data = read_split(dataset_zarr, dataset_parquet, split)
    rows = data.rows[:N_EXAMPLES]
    raw_images = np.stack([np.asarray(data.images[int(r)]) for r in rows])
    masks = np.stack([np.asarray(data.masks[int(r)]) for r in rows])
    probabilities = predict_particle_probability(trained.load_network(), raw_images)
    titles = [
        f"row {int(row['row'])} {row.get('structure_id', '')}"
        for _, row in data.table.iloc[: len(rows)].iterrows()
    ]
    _plot_prediction_rows(
        [
            (normalize_min_max(image), title, mask, "label (particle mask)", p)
            for image, title, mask, p in zip(raw_images, titles, masks, probabilities)
        ],
        label,
        path,
    )


def write_report(
    evaluation_jsons: list[str],
    model_dirs: list[str],
    dataset_zarr: str,
    dataset_parquet: str,
    out_dir: str,
    score_jsons: list[str] = (),
    dataset_parquets: list[str] = (),
    real_sets: dict | None = None,
    realism_jsons: list[str] = (),
) -> list[Path]:
    """Write the report to ``out_dir``: summary.md, training_curves.png, examples.png (simulated
    test split of the first model's dataset), data_distributions.png and, with real sets,
    real_set_examples.png. Returns the paths written."""
    if not evaluation_jsons:
        raise ValueError("write_report needs at least one evaluation JSON")
    evaluations = [json.loads(Path(path).read_text()) for path in evaluation_jsons]
    scores = [json.loads(Path(path).read_text()) for path in score_jsons]
    matched = _match_models(evaluations, model_dirs)
    histories = {
        (e["model"], e["seed"]): pd.read_csv(m.history_path) for e, m in zip(evaluations, matched)
    }
    labels = [f"{e['model']} seed {e['seed']}" for e in evaluations]

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    realism = [json.loads(Path(path).read_text()) for path in realism_jsons]
    (out_dir / "summary.md").write_text(
        _summary_markdown(evaluations, matched, scores, histories) + _realism_markdown(realism)
    )
    written = [
        out_dir / "summary.md",
        out_dir / "training_curves.png",
        out_dir / "examples.png",
        out_dir / "data_distributions.png",
    ]
    _plot_training_curves(histories, written[1])
    _plot_examples(
        matched[0],
        labels[0],
        dataset_zarr,
        dataset_parquet,
        evaluations[0].get("split", "test"),
        written[2],
    )
    _plot_distributions(
        _distribution_tables(list(dataset_parquets) or [dataset_parquet], model_dirs), written[3]
    )
    if real_sets:
        written.append(out_dir / "real_set_examples.png")
        _plot_real_set_examples(matched[0], labels[0], real_sets, written[-1])
    return written
