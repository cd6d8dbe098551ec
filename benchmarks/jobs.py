"""Per-job overhead: a job's wall time (Snakemake's benchmark file) minus its library time (the
`<stage> done in <s> s` line `hrtem-wf` logs around the stage's work).

    .venv/bin/python benchmarks/jobs.py [--count 12] [--keep DIR]

Runs the tiny test config (tests/configs/tiny.yaml, `count` structures) up to the images stage
in a fresh temporary copy of the workflow, one job at a time (`--cores 1`: no two jobs share the
CPU), and prints per rule the median wall, library and overhead seconds. The library time is
the item's work; the overhead is what every job pays around it: starting the shell and Python,
importing the stage's libraries (timed apart in the same log line), reading the inputs'
metadata. Goal: a job's wall time within about 1 s of its library time.
"""

from __future__ import annotations

import argparse
import re
import statistics
import tempfile
from pathlib import Path

import yaml
from dag import ROOT, run_snakemake

RULES = ("structures", "simulations", "images")
# imports timed apart since 2026-12-02; before, the work's time included them
DONE = re.compile(r"(\w+) done in ([0-9.]+) s(?: \(after ([0-9.]+) s of imports\))?")


def job_times(results: Path, rule: str) -> list[tuple[float, float, float]]:
    """(wall, library, imports) seconds of each job of a rule: its benchmark file and its log."""
    times = []
    for bench in sorted((results / "benchmarks" / rule).rglob("*.tsv")):
        if bench.stem == "preview":
            continue
        wall = float(bench.read_text().splitlines()[1].split("\t")[0])
        log = results / "logs" / rule / bench.relative_to(results / "benchmarks" / rule)
        match = DONE.search(log.with_suffix(".log").read_text())
        times.append((wall, float(match.group(2)), float(match.group(3) or "nan")))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=12, help="structures (one job each per rule)")
    parser.add_argument("--keep", type=Path, help="run in this folder and keep it")
    args = parser.parse_args()

    config = yaml.safe_load((ROOT / "tests" / "configs" / "tiny.yaml").read_text())
    config["structures"]["tiny"]["count"] = args.count
    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.keep or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        targets = ["--until", "images", "--cores", "1", "--profile", "profiles/local"]
        wall, _, output, code = run_snakemake(workdir, config, targets)
        if code:
            raise SystemExit(f"snakemake failed:\n{output[-3000:]}")
        print(f"tiny config, {args.count} structures, one job at a time: {wall:.1f} s in all\n")
        print(
            "| rule | jobs | wall s | library s | overhead s (max) | of it: the stage's imports s |"
        )
        print("|---|---|---|---|---|---|")
        for rule in RULES:
            wall, library, imports = zip(*job_times(workdir / "results", rule))
            overhead = [w - lib for w, lib in zip(wall, library)]
            print(
                f"| {rule} | {len(wall)} | {statistics.median(wall):.2f} "
                f"| {statistics.median(library):.2f} "
                f"| {statistics.median(overhead):.2f} ({max(overhead):.2f}) "
                f"| {statistics.median(imports):.2f} |"
            )
        print(
            "\nmedians over the jobs; overhead = wall (Snakemake's benchmark) - library (the log)"
        )


if __name__ == "__main__":
    main()
