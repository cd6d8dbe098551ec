"""The README's tables of measured figures, generated from docs/results/*.json (`make docs`).

docs/results/tasks.json is a list of rows {task, metric, value, seeds, date, commit, command}
that benchmarks/other_tasks.py appends to. The README's block between the markers
`<!-- tasks.json -->` and `<!-- /tasks.json -->` is the table this module renders from it: per
task, the newest row of each metric, beside the papers' figure.

    python -m hrtem_wf.results_tables README.md docs/results/tasks.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

BEGIN, END = "<!-- tasks.json -->", "<!-- /tasks.json -->"

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


def newest(rows: list[dict]) -> dict[tuple[str, str], dict]:
    """The newest row (by date, then order) of each (task, metric)."""
    chosen: dict[tuple[str, str], dict] = {}
    for row in rows:
        key = (row["task"], row["metric"])
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


def render(readme: str, rows: list[dict]) -> str:
    """`readme` with the block between BEGIN and END replaced by `table(rows)`."""
    start, end = readme.index(BEGIN) + len(BEGIN), readme.index(END)
    return readme[:start] + "\n" + table(rows) + "\n" + readme[end:]


def main(argv: list[str] | None = None) -> int:
    readme_path, rows_path = (Path(a) for a in (argv or sys.argv[1:]))
    rows = json.loads(rows_path.read_text()) if rows_path.exists() else []
    readme_path.write_text(render(readme_path.read_text(), rows))
    print(f"wrote the table of {rows_path} into {readme_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
