"""How the workflow's job graph scales: dry-run time and memory on the study recipe, on the
study with 10x Optimal Au, and the no-op check (every output present and up to date).

    .venv/bin/python benchmarks/dag.py [--skip-10x] [--config RECIPE]

Each case runs Snakemake in a fresh temporary copy of the workflow; nothing is written into
results/. Prints a table with PASS/FAIL against the targets and always exits 0 (it is a report).
"""

from __future__ import annotations

import argparse
import copy
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # the venv's bin: snakemake and hrtem-wf live there
# `--quiet rules` still builds the whole DAG but prints only the job stats and the reasons.
DRY_RUN = ["--dry-run", "--quiet", "rules", "--cores", "2"]
TARGETS = {"dry run": (60.0, 2048.0), "no-op check": (60.0, None)}  # (wall s, peak MB)

# Runs a command as its child and writes "<wall s> <peak RSS KB of the child>" to argv[1].
WRAPPER = """
import resource, subprocess, sys, time
start = time.perf_counter()
code = subprocess.call(sys.argv[2:])
wall = time.perf_counter() - start
peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KB on Linux
open(sys.argv[1], "w").write(f"{wall} {peak_kb}")
sys.exit(code)
"""


def run_snakemake(workdir: Path, config: dict, args: list[str]) -> tuple[float, float, str, int]:
    """Copy the workflow into workdir with config, run snakemake; (wall s, peak MB, output, rc)."""
    for name in ("Snakefile", "workflow", "profiles"):
        source = ROOT / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, workdir / name)
    (workdir / "config").mkdir(exist_ok=True)
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    stats = workdir / "wrapper_stats.txt"
    command = [sys.executable, "-c", WRAPPER, str(stats), str(BIN / "snakemake"), *args]
    result = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True)
    wall, peak_kb = map(float, stats.read_text().split())
    return wall, peak_kb / 1024, result.stdout + result.stderr, result.returncode


def total_jobs(output: str) -> int | None:
    """The 'total' row of the first 'Job stats' table; 0 when there is nothing to do."""
    if "Nothing to be done" in output:
        return 0
    for line in output.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == "total" and parts[1].isdigit():
            return int(parts[1])
    return None


def job_outputs(config: dict) -> list[list[str]]:
    """Every job's outputs, as the workflow itself lists them: a forced dry run prints each job
    with its `output:` line, in an order where a job's inputs come before it. A `.zarr` output
    is a directory (every Zarr store is a `directory()` output in workflow/rules)."""
    with tempfile.TemporaryDirectory(prefix="bench-dag-list-") as tmp:
        _, _, output, rc = run_snakemake(
            Path(tmp), config, ["--dry-run", "--forceall", "--cores", "1"]
        )
    if rc != 0:
        raise SystemExit(f"snakemake --dry-run --forceall exited {rc}:\n{output[-3000:]}")
    jobs, in_job = [], False
    for line in output.splitlines():
        if line.startswith(("rule ", "localrule ")) and line.endswith(":"):
            in_job = True
        elif in_job and line.startswith("    output: "):
            paths = line.removeprefix("    output: ").split(", ")
            jobs.append([f"{path}/" if path.endswith(".zarr") else path for path in paths])
            in_job = False
        elif not line.startswith(" "):
            in_job = False
    return jobs


def make_placeholders(workdir: Path, jobs: list[list[str]]) -> int:
    """Empty outputs, each job's 1 ms newer than the job's before it and all older than now but
    newer than the workflow's sources (a script newer than its outputs triggers a rerun). A
    trailing '/' marks a directory() output: made with the .snakemake_timestamp file that
    Snakemake leaves in one after a job."""
    base = time.time() - 10 - len(jobs) * 1e-3
    count = 0
    for index, paths in enumerate(jobs):
        stamp = (base + index * 1e-3,) * 2
        for path in paths:
            target = workdir / path
            if path.endswith("/"):
                target.mkdir(parents=True)
                (target / ".snakemake_timestamp").touch()
                os.utime(target / ".snakemake_timestamp", stamp)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.touch()
            os.utime(target, stamp)
            count += 1
    return count


def verdict(case: str, wall: float, peak_mb: float, problems: list[str]) -> str:
    """PASS, '-' (no target) or FAIL with every reason: the problems given plus missed targets."""
    max_wall, max_mb = TARGETS.get(case, (None, None))
    if max_wall is not None and wall > max_wall:
        problems = [*problems, f"wall {wall:.1f} s > {max_wall:.0f} s"]
    if max_mb is not None and peak_mb > max_mb:
        problems = [*problems, f"peak {peak_mb:.0f} MB > {max_mb:.0f} MB"]
    if problems:
        return "FAIL: " + "; ".join(problems)
    return "PASS" if case in TARGETS else "-"


def measure(case: str, config: dict, placeholders: bool = False) -> tuple:
    """One row of the table: (case, jobs, wall s, peak MB, result)."""
    print(f"{case}: snakemake {' '.join(DRY_RUN)}", flush=True)
    jobs_outputs = job_outputs(config) if placeholders else []
    with tempfile.TemporaryDirectory(prefix="bench-dag-") as tmp:
        if placeholders:
            count = make_placeholders(Path(tmp), jobs_outputs)
            print(f"  on {count} placeholder outputs of {len(jobs_outputs)} jobs", flush=True)
        wall, peak_mb, output, rc = run_snakemake(Path(tmp), config, DRY_RUN)
    jobs = total_jobs(output)
    problems = []
    if rc != 0 or jobs is None:
        problems.append(f"snakemake exited {rc}")
        print(f"  snakemake exited {rc}; output tail:\n{output[-3000:]}")
    elif placeholders and jobs != 0:
        problems.append(f"{jobs} jobs to run")
        print("  not 'Nothing to be done'; what it would run and why:")
        print(output[output.rfind("Job stats") :])  # --quiet rules prints the table twice
    elif placeholders:
        notes = [line for line in output.splitlines() if "metadata" in line or "arning" in line]
        print("  Nothing to be done.", *notes, sep="\n  ")
    return case, jobs, wall, peak_mb, verdict(case, wall, peak_mb, problems)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="config/recipes/study.yaml", help="recipe to benchmark")
    parser.add_argument("--skip-10x", action="store_true", help="skip the 10x Optimal Au case")
    options = parser.parse_args()
    config = yaml.safe_load(Path(options.config).read_text())

    rows = [measure("dry run", config)]
    if not options.skip_10x and "optimal_au" in config["structures"]:
        bigger = copy.deepcopy(config)
        bigger["structures"]["optimal_au"]["count"] *= 10
        count = bigger["structures"]["optimal_au"]["count"]
        rows.append(measure(f"10x optimal_au ({count})", bigger))
    rows.append(measure("no-op check", config, placeholders=True))

    print(f"\n{options.config}")
    print(f"{'case':<26} {'jobs':>7} {'wall s':>8} {'peak MB':>8}  result")
    for case, jobs, wall, peak_mb, result in rows:
        print(
            f"{case:<26} {'?' if jobs is None else jobs:>7} {wall:>8.1f} {peak_mb:>8.0f}  {result}"
        )
    print("targets: dry run <= 60 s and <= 2048 MB; no-op check <= 60 s; none for the 10x case")
    if any(row[4].startswith("FAIL") for row in rows):
        print("FAIL: at least one case missed its target or did not run cleanly (see above)")


if __name__ == "__main__":
    main()
