"""The README's tables of measured figures, generated from docs/results/*.json (`make docs`).

Each file is a list of rows {..., metric, value, seeds, date, commit, command}; the README's block
between the markers `<!-- <file name> -->` and `<!-- /<file name> -->` is the table this module
renders from it, the newest row of each metric:
- tasks.json, rows {task, ...} that benchmarks/other_tasks.py appends to: per task, beside the
  papers' figure;
- real.json, rows {config, real_set, ...}: per config and real set, the networks' F1, precision
  and recall on the real micrographs and their particles against the hand masks' (count and mean
  diameter, relative errors; hrtem_wf.real.sizes).

    python -m hrtem_wf.results_tables README.md docs/results/tasks.json docs/results/real.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def markers(name: str) -> tuple[str, str]:
    """The README's markers around the table of the results file `name` (e.g. real.json)."""
    return f"<!-- {name} -->", f"<!-- /{name} -->"


BEGIN, END = markers("tasks.json")

#: What each task is, and the papers' figure to set beside ours.
TASKS = {
    "madsen_columns": (
        "Au column detection, <110>/<111>, 0-5 deg tilt (Madsen 2018)",
        "columns found 'confidently' (no F1 given); goal here: F1 >= 0.90",
    ),
    "mos2_exit_wave": (
        "MoS2 exit wave from a focal series of 3 (Larsen 2023)",
        "RMSE 0.0062 (unsupported MoS2); goal here: <= 0.02",
    ),
}
METRICS = ("f1", "precision", "recall", "position_rmse_A", "rmse", "y_scramble_rmse")


def newest(rows: list[dict], keys: tuple[str, ...] = ("task",)) -> dict[tuple, dict]:
    """The newest row (by date, then order) of each (*keys, metric)."""
    chosen: dict[tuple, dict] = {}
    for row in rows:
        key = (*(row[k] for k in keys), row["metric"])
        if key not in chosen or row["date"] >= chosen[key]["date"]:
            chosen[key] = row
    return chosen


def table(rows: list[dict]) -> str:
    """The markdown table of the newest figures per task (empty rows list: a placeholder)."""
    best = newest(rows)
    lines = [
        "| task | measured here | training | date, commit | the paper |",
        "|---|---|---|---|---|",
    ]
    for task, (what, paper) in TASKS.items():
        figures = [
            f"{metric} {best[(task, metric)]['value']:.3g}"
            for metric in METRICS
            if (task, metric) in best
        ]
        if not figures:
            lines.append(f"| {what} | not measured yet | | | {paper} |")
            continue
        any_row = next(best[(task, m)] for m in METRICS if (task, m) in best)
        seen = best.get((task, "training_images_seen"), {}).get("value")
        minutes = best.get((task, "training_minutes"), {}).get("value")
        training = "" if seen is None else f"{seen} images seen"
        training += "" if minutes is None else f", {minutes} min on 2 CPU cores"
        lines.append(
            f"| {what} | {', '.join(figures)} (seeds {any_row['seeds']}) | {training} | "
            f"{any_row['date']}, {any_row['commit']} | {paper} |"
        )
    return "\n".join(lines)


#: real.json's metrics, in the table's order, and how each is shown.
REAL_METRICS = {
    "f1": "F1 {:.3f}",
    "precision": "precision {:.3f}",
    "recall": "recall {:.3f}",
    "count_error": "count {:+.1%}",
    "mean_diameter_error": "mean diameter {:+.1%}",
}


def real_table(rows: list[dict]) -> str:
    """The markdown table of real.json: per (config, real set), the newest figure of each metric;
    each cell names its seeds, date and commit where they differ from the F1's."""
    best = newest(rows, ("config", "real_set"))
    lines = [
        "| config | real set | segmentation (pixels) | particles against the hand masks "
        "(network - hand) / hand | seeds, date, commit |",
        "|---|---|---|---|---|",
    ]
    for config, real_set in dict.fromkeys((r["config"], r["real_set"]) for r in rows):
        cells = {
            metric: best[(config, real_set, metric)]
            for metric in REAL_METRICS
            if (config, real_set, metric) in best
        }

        first = next(iter(cells.values()))
        pixels = [_shown(m, cells, first) for m in ("f1", "precision", "recall") if m in cells]
        particles = [
            _shown(m, cells, first) for m in ("count_error", "mean_diameter_error") if m in cells
        ]
        lines.append(
            f"| {config} | {real_set} | {', '.join(pixels) or '-'} | "
            f"{', '.join(particles) or 'not measured yet'} | "
            f"{first['seeds']}, {first['date']}, {first['commit']} |"
        )
    return "\n".join(lines)


def _shown(metric: str, cells: dict[str, dict], first: dict) -> str:
    """A real.json figure, with its seeds, date and commit where they differ from `first`'s."""
    row = cells[metric]
    text = REAL_METRICS[metric].format(row["value"])
    stamp = ("seeds", "date", "commit")
    if [row[k] for k in stamp] != [first[k] for k in stamp]:
        text += f" (seeds {row['seeds']}, {row['date']}, {row['commit']})"
    return text


TABLES = {"tasks.json": table, "real.json": real_table}


def render(readme: str, rows: list[dict], name: str = "tasks.json") -> str:
    """`readme` with the block between the markers of `name` replaced by its table of `rows`."""
    begin, end = markers(name)
    start, stop = readme.index(begin) + len(begin), readme.index(end)
    return readme[:start] + "\n" + TABLES[name](rows) + "\n" + readme[stop:]


def main(argv: list[str] | None = None) -> int:
    readme_path, *rows_paths = (Path(a) for a in (argv or sys.argv[1:]))
    readme = readme_path.read_text()
    for rows_path in rows_paths:
        rows = json.loads(rows_path.read_text()) if rows_path.exists() else []
        readme = render(readme, rows, rows_path.name)
        print(f"wrote the table of {rows_path} into {readme_path}")
    readme_path.write_text(readme)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
