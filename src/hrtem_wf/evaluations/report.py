"""The report of a set of trained models: the Table 1-style summary (condition x real set, median
and range over seeds, V90 / V95) of particle segmentation, the column-detection and exit-wave
tables of the other tasks (Madsen 2018, Larsen 2023), training curves per condition, example
predictions on the simulated test split (per task) and on each real set, and the data
distributions of each dataset."""

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
from .evaluate import predict_maps
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


def _distribution_text(spec, fmt: str = "{:.2f}") -> str:
    """A drawn value (blur_A, dose_e_per_A2) as the table shows it: a number, 'low-high' for a
    distribution with bounds, else the distribution's name."""
    if not isinstance(spec, dict):
        return fmt.format(float(spec))
    if "low" in spec and "high" in spec:
        return f"{fmt.format(spec['low'])}-{fmt.format(spec['high'])}"
    return str(spec["distribution"])


def _gap_text(gap) -> str:
    return "-" if gap is None else f"{gap:.3g}"


def _calibrations_markdown(calibrations: list[dict]) -> str:
    """Each images block's label width, blur and dose as the calibration rule measured them
    against a real set: how far our labels lay outside the hand-drawn masks before and after,
    the edge-profile and particle-depth gaps."""
    if not calibrations:
        return ""
    header = [
        "images",
        "real set",
        "calibrated",
        "label.grow_A [A]",
        "blur_A [A]",
        "dose [e/A^2]",
        "labels outside masks before [A]",
        "after [A]",
        "edge-profile gap before",
        "after",
        "particle-depth gap before",
        "after",
        "pilot images",
    ]
    rows = [
        [
            c["images"],
            c["real_set"],
            ", ".join(c["calibrated"]),
            f"{c['grow_A']:.2f}",
            _distribution_text(c["blur_A"]),
            _distribution_text(c["dose_e_per_A2"], "{:.0f}"),
            f"{c['label_offset_A']['before']:.2f}",
            f"{c['label_offset_A']['after']:.2f}",
            f"{c['gaps']['before']['edge_profile']:.3g}",
            f"{c['gaps']['after']['edge_profile']:.3g}",
            _gap_text(c["gaps"]["before"]["particle_depth"]),
            _gap_text(c["gaps"]["after"]["particle_depth"]),
            str(c["pilot"]["images"]),
        ]
        for c in calibrations
    ]
    return (
        "\n\n## Calibration against hand-drawn masks\n\n"
        "`label.grow_A`, `blur_A`, `dose_e_per_A2`: `{calibrate: <real set>, ...}`: the image "
        "blur that gives the particles' edges the real set's softness, the labels' outline moved "
        "onto its hand-drawn one and the dose at which the particles stand out of the carbon as "
        "far as the real set's (particle depth), measured on a pilot draw of the block's first "
        "structures (`hrtem_wf.images.calibration`); before: grow_A 0 and, where calibrated, the "
        "least blur tried (0-1 A) and the dose `around`. The pilot's realism figure is "
        "`results/calibrations/<images>.png`.\n\n" + _markdown_table(header, rows) + "\n"
    )


def _particles_markdown(scores: list[dict]) -> str:
    """The particles of the networks' masks against the hand masks' on each real set: counts
    and mean equivalent diameters (median over seeds), their relative errors."""
    scored = [s for s in scores if s.get("particles")]
    if not scored:
        return ""
    header = ["real set", "model", "seeds", "particles (hand)", "particles (network)",
              "count error", "mean diameter [nm] (hand)", "mean diameter [nm] (network)",
              "mean diameter error"]  # fmt: skip

    def median(values, fmt):
        values = [v for v in values if v is not None]
        return fmt.format(float(np.median(values))) if values else "-"

    rows = []
    for real_set, model in dict.fromkeys((s["real_set"], s["model"]) for s in scored):
        group = [s["particles"] for s in scored if (s["real_set"], s["model"]) == (real_set, model)]
        rows.append(
            [
                real_set,
                model,
                str(len(group)),
                str(group[0]["hand"]["count"]),
                median([g["network"]["count"] for g in group], "{:.0f}"),
                median([g["count_error"] for g in group], "{:+.1%}"),
                median([group[0]["hand"]["mean_diameter_nm"]], "{:.2f}"),
                median([g["network"]["mean_diameter_nm"] for g in group], "{:.2f}"),
                median([g["mean_diameter_error"] for g in group], "{:+.1%}"),
            ]
        )
    return (
        "\n\n## Particles on the real sets: network against hand masks\n\n"
        "Each 8-connected part of a mask at least 10 A across is a particle (hrtem_wf.real.sizes); "
        "diameters are equivalent (2 sqrt(area / pi)), of particles not cut by the border; "
        "errors are (network - hand) / hand, the median over seeds. Size distributions: "
        "`real_set_sizes.png`.\n\n" + _markdown_table(header, rows) + "\n"
    )


def _plot_real_set_sizes(scores: list[dict], path: Path) -> None:
    """Per real set, the hand masks' size histogram beside each model's first seed's."""
    from hrtem_wf.real.sizes import plot_sizes

    scored = [s for s in scores if s.get("particles")]
    real_sets = list(dict.fromkeys(s["real_set"] for s in scored))
    first = {}
    for s in scored:
        first.setdefault((s["real_set"], s["model"]), s)
    diameters, summaries, counts = {}, {}, {}
    for (real_set, model), s in first.items():
        prefix = f"{real_set}: " if len(real_sets) > 1 else ""
        for side, name in (("hand", f"{prefix}hand masks"), ("network", f"{prefix}{model}")):
            diameters[name] = s["particles"]["diameters_nm"][side]
            summaries[name] = s["particles"][side]
            counts[name] = {
                f"{prefix}{image['image']}": image.get(f"{side}_particles", 0)
                for image in s["per_image"]
            }
    plot_sizes(diameters, counts, path, summaries=summaries)


def _training_data(dataset: str, on_the_fly: dict | None) -> str:
    """The dataset column: the dataset, and for on-the-fly training what drew its images."""
    if not on_the_fly:
        return dataset
    return (
        f"{dataset} (train: drawn on the fly by images.{on_the_fly['images']}, "
        f"{on_the_fly['images_per_epoch']} per epoch)"
    )


def _task(evaluation: dict) -> str:
    return evaluation.get("task", "segmentation")


def _cell(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _columns_markdown(evaluations: list[dict]) -> str:
    """Column detection per model and seed, and each model's first seed's confusion matrix."""
    if not evaluations:
        return ""
    header = ["model", "seed", "dataset", "n images", "true columns", "precision", "recall", "F1"]
    header += ["position RMSE [A]", "class accuracy", "classes"]
    rows = [
        [
            str(e["model"]),
            str(e["seed"]),
            str(e["dataset"]),
            str(e["n_images"]),
            str(e["n_true"]),
            *(_cell(e[key]) for key in ("precision", "recall", "f1", "position_rmse_A")),
            _cell(e["class_accuracy"]),
            f"{e['class_kind']}: {', '.join(map(str, e['class_names']))}",
        ]
        for e in evaluations
    ]
    confusions = []
    for model in dict.fromkeys(e["model"] for e in evaluations):
        first = next(e for e in evaluations if e["model"] == model)
        names = [str(n) for n in first["class_names"]]
        confusions.append(
            f"{model} seed {first['seed']} (rows true, columns detected):\n\n"
            + _markdown_table(
                ["true \\ detected", *names],
                [[n, *map(str, row)] for n, row in zip(names, first["confusion"])],
            )
        )
    e = evaluations[0]
    return (
        "\n\n## Atomic columns (Madsen et al. 2018)\n\n"
        "Columns found in the predicted confidence maps (watershed of the background map, "
        "Madsen's section 2.5) and matched one to one to the true projected columns within "
        f"{e['match_radius_A']} A (Hungarian); precision, recall and F1 of detection pooled over "
        "the split, the matched pairs' position RMSE and class accuracy.\n\n"
        + _markdown_table(header, rows)
        + "\n\n"
        + "\n\n".join(confusions)
        + "\n"
    )


def _exit_waves_markdown(evaluations: list[dict]) -> str:
    """Exit-wave RMSE per model and seed beside the Y-scramble baseline."""
    if not evaluations:
        return ""
    header = ["model", "seed", "dataset", "n images", "RMSE", "RMSE real", "RMSE imaginary"]
    header += ["Y-scramble RMSE"]
    rows = [
        [
            str(e["model"]),
            str(e["seed"]),
            str(e["dataset"]),
            str(e["n_images"]),
            *(_cell(e[key], 4) for key in ("rmse", "rmse_real", "rmse_imag", "y_scramble_rmse")),
        ]
        for e in evaluations
    ]
    return (
        "\n\n## Exit waves (Larsen et al. 2023)\n\n"
        "RMSE of the predicted exit wave's real and imaginary parts against the simulated one "
        "(low-passed as the images block's targets.exit_wave), mean over the split's images; "
        "Y-scramble: each prediction against another image's wave (a network that learned "
        "nothing of the structure).\n\n" + _markdown_table(header, rows) + "\n"
    )


def _summary_markdown(
    evaluations: list[dict],
    models: list[TrainedModel],
    scores: list[dict],
    histories: dict[tuple[str, int], pd.DataFrame],
) -> str:
    """The condition table (Table 1), every model and seed, means over seeds, warnings; then
    the tables of the column and exit-wave models."""
    others = _columns_markdown([e for e in evaluations if _task(e) == "columns"])
    others += _exit_waves_markdown([e for e in evaluations if _task(e) == "exit_wave"])
    kept = [(e, m) for e, m in zip(evaluations, models) if _task(e) == "segmentation"]
    if not kept:
        return "# Evaluation report\n" + others
    evaluations, models = [e for e, _ in kept], [m for _, m in kept]
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
        + others
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


def _plot_training_curves(
    histories: dict[tuple[str, int], pd.DataFrame], path: Path, tasks: dict[str, str]
) -> None:
    """One column per condition: loss (train solid, validation dashed) and the learning curve of
    every seed: validation F1 (pixel F1 of particle masks, the column-detection F1 of a columns
    model; with the V90 / V95 levels) or an exit-wave model's validation RMSE (the root of its
    mean squared error), against the training images seen."""
    models = list(dict.fromkeys(model for model, _ in histories))
    figure = Figure(figsize=(max(5.0, 4.5 * len(models)), 7), layout="constrained")
    axes = np.array(figure.subplots(2, len(models), squeeze=False))
    for column, model in enumerate(models):
        loss_axes, f1_axes = axes[0, column], axes[1, column]
        task = tasks.get(model, "segmentation")
        for index, ((_, seed), history) in enumerate(
            h for h in histories.items() if h[0][0] == model
        ):
            color = f"C{index % 10}"
            loss_axes.plot(
                history["epoch"], history["train_loss"], color=color, label=f"seed {seed}"
            )
            loss_axes.plot(history["epoch"], history["val_loss"], color=color, linestyle="--")
            # histories written before images_seen: epochs
            seen = history["images_seen"] if "images_seen" in history else history["epoch"]
            curve = history["val_f1"] if task != "exit_wave" else np.sqrt(history["val_loss"])
            f1_axes.plot(seen, curve, color=color, marker="o", markersize=3, label=f"seed {seed}")
        loss_axes.set(
            title=f"{model}: loss (train solid, validation dashed)",
            xlabel="epoch",
            ylabel={"segmentation": "CE + 1 - soft F1"}.get(task, "mean squared error"),
        )
        seen_label = "training images seen" if "images_seen" in history else "epoch"
        if task == "exit_wave":
            f1_axes.set(title=f"{model}: validation RMSE", xlabel=seen_label, ylabel="RMSE")
        else:
            for level in V_LEVELS:
                f1_axes.axhline(level, color="0.6", linewidth=0.8, linestyle=":")
            what = "column-detection F1" if task == "columns" else "F1"
            f1_axes.set(
                title=f"{model}: validation {what}", xlabel=seen_label, ylabel="F1", ylim=(0, 1)
            )
        loss_axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        for ax in (loss_axes, f1_axes):
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
    from hrtem_wf.real.inference import preprocess
    from hrtem_wf.real.sets import predict_real_image, read_real_set

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
    evaluations: list[dict], models: list[TrainedModel], labels: list[str], path: Path
) -> None:
    """Predictions on the first images of each task's first model, on its evaluation's split:
    particle probability beside the mask; columns found (x) beside the true ones (o) on the
    image; the exit wave's imaginary part, predicted and simulated, and its Argand plot."""
    rows = []
    for task in dict.fromkeys(m.task for m in models):
        index = next(i for i, m in enumerate(models) if m.task == task)
        trained, label, evaluation = models[index], labels[index], evaluations[index]
        zarr = evaluation["dataset_zarr"]
        split = evaluation.get("split", "test")
        data = read_split(zarr, evaluation["dataset_parquet"], split, task)
        picked = data.rows[:N_EXAMPLES]
        raw_images = np.stack([np.asarray(data.images[int(r)]) for r in picked])
        targets = np.stack([np.asarray(data.masks[int(r)]) for r in picked])
        outputs = predict_maps(trained.load_network(), raw_images, task)
        positions = data.column_positions
        for offset, (image, target, output) in enumerate(zip(raw_images, targets, outputs)):
            row = int(data.table["row"].iloc[offset])
            image = normalize_min_max(image if image.ndim == 2 else image[len(image) // 2])
            title = f"{label}\nrow {row} {data.table['structure_id'].iloc[offset]}"
            rows.append((task, image, title, target, output, positions, row))
    figure = Figure(figsize=(12, 3 * len(rows)), layout="constrained")
    axes = np.array(figure.subplots(len(rows), 4, squeeze=False))
    for index, (task, image, title, target, output, positions, row) in enumerate(rows):
        ax = axes[index]
        ax[0].imshow(image, cmap="gray")
        ax[0].set_title(title, fontsize="small")
        if task == "segmentation":
            f1 = segmentation_metrics(output, target)["f1"]
            ax[1].imshow(target, cmap="gray", vmin=0, vmax=1)
            ax[1].set_title("label (particle mask)", fontsize="small")
            ax[2].imshow(output, cmap="magma", vmin=0, vmax=1)
            ax[2].set_title(f"particle probability, F1 {f1:.3f}", fontsize="small")
        elif task == "columns":
            from .columns import find_columns

            true = positions[positions[:, 0] == row]
            found = find_columns(output)
            ax[1].imshow(image, cmap="gray")
            ax[1].scatter(true[:, 2], true[:, 1], s=14, facecolors="none", edgecolors="C0")
            ax[1].scatter(found.yx_px[:, 1], found.yx_px[:, 0], s=10, marker="x", color="C1")
            ax[1].set_title(
                f"true columns (o, {len(true)}), found (x, {len(found.yx_px)})", fontsize="small"
            )
            ax[2].imshow(1 - output[-1], cmap="magma", vmin=0, vmax=1)
            ax[2].set_title("1 - background confidence", fontsize="small")
        else:
            ax[1].imshow(target[1], cmap="RdBu_r")
            ax[1].set_title("exit wave, imaginary (simulated)", fontsize="small")
            ax[2].imshow(output[1], cmap="RdBu_r", vmin=target[1].min(), vmax=target[1].max())
            ax[2].set_title("exit wave, imaginary (predicted)", fontsize="small")
            step = max(1, target[0].size // 4000)
            ax[3].scatter(target[0].ravel()[::step], target[1].ravel()[::step], s=1, label="true")
            ax[3].scatter(output[0].ravel()[::step], output[1].ravel()[::step], s=1, label="net")
            ax[3].set(xlabel="real", ylabel="imaginary")
            ax[3].set_title("Argand plot", fontsize="small")
            ax[3].legend(fontsize="x-small", markerscale=5)
        for axis in ax[:3]:
            axis.set_axis_off()
        if task != "exit_wave":
            ax[3].set_axis_off()
    figure.savefig(path, dpi=100)


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
    calibration_jsons: list[str] = (),
) -> list[Path]:
    """Write the report to ``out_dir``: summary.md, training_curves.png, examples.png (simulated
    test split of the first model's dataset), data_distributions.png and, with real sets,
    real_set_examples.png and real_set_sizes.png. Returns the paths written."""
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
        _summary_markdown(evaluations, matched, scores, histories)
        + _particles_markdown(scores)
        + _realism_markdown(realism)
        + _calibrations_markdown([json.loads(Path(p).read_text()) for p in calibration_jsons])
    )
    written = [
        out_dir / "summary.md",
        out_dir / "training_curves.png",
        out_dir / "examples.png",
        out_dir / "data_distributions.png",
    ]
    _plot_training_curves(
        histories, written[1], {e["model"]: m.task for e, m in zip(evaluations, matched)}
    )
    _plot_examples(evaluations, matched, labels, written[2])
    _plot_distributions(
        _distribution_tables(list(dataset_parquets) or [dataset_parquet], model_dirs), written[3]
    )
    segmentation = [i for i, m in enumerate(matched) if m.task == "segmentation"]
    if real_sets and segmentation:
        written.append(out_dir / "real_set_examples.png")
        first = segmentation[0]
        _plot_real_set_examples(matched[first], labels[first], real_sets, written[-1])
        written.append(out_dir / "real_set_sizes.png")
        _plot_real_set_sizes(scores, written[-1])
    return written
