"""`hrtem-wf plan`: what a run would do, per stage and block, before it spends any compute.

Runs `snakemake --dry-run` and parses its job listing (one block per job: `rule NAME:` then
indented `reason:` and `wildcards:` lines), maps each job to its stage and config block, counts
the block's targets from the config, and tabulates how many jobs would run and why:

    missing   output files missing
    params    params have changed since the outputs were made
    code      the rule's shell command has changed
    upstream  an input is newer, is rebuilt by another job, or the set of inputs changed
    other     forced, software environment changed, incomplete output, anything else

A job with several reasons counts under each of its categories, so the category columns can
add up to more than "would run". `--rulegraph out.png` also draws `snakemake --rulegraph`
(DOT text) with matplotlib: no graphviz needed.

Library use: `plan(directory, configfile)` returns the table rows as dicts,
`format_plan(rows)` renders them; `parse_dry_run`, `parse_job_stats` and `parse_rulegraph`
work on captured Snakemake output.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from hrtem_wf.config import (
    DAG_MB_PER_JOB,
    NO_BLOCK,
    ConfigError,
    block_jobs,
    check_real_sets,
    planned_jobs,
    read_config_file,
    validate,
)
from hrtem_wf.errors import InputError

# rule -> (stage, the wildcard naming the rule's config block; None: one job per workflow)
RULE_STAGE = {
    "structures": ("structures", "structures"),
    "simulations": ("simulations", "simulations"),
    "images": ("images", "images"),
    "calibration": ("images", "images"),
    "datasets": ("datasets", "datasets"),
    "models": ("models", "models"),
    "evaluations": ("models", "models"),
    "scores": ("real_sets", "real_set"),
    "realism": ("real_sets", "real_set"),
    "report": ("report", None),
    "all": ("report", None),
}
STAGES = ["structures", "simulations", "images", "datasets", "models", "real_sets", "report"]

CATEGORIES = ["missing", "params", "code", "upstream", "other"]
CATEGORY_TITLES = {
    "missing": "missing",
    "params": "params changed",
    "code": "code changed",
    "upstream": "upstream changed",
    "other": "other",
}
# The first words of each reason Snakemake 9 prints (snakemake/jobs.py, Reason.__str__).
REASON_CATEGORY = {
    "Missing output files": "missing",
    "Params have changed": "params",
    "Code has changed": "code",
    "Input files updated by another job": "upstream",
    "Updated input files": "upstream",
    "Set of input files has changed": "upstream",
    "Incomplete output files": "other",
    "Forced execution": "other",
    "Software environment definition has changed": "other",
    "Output file is a pipe": "other",
    "Job provides a service": "other",
    "Rules with neither input nor output": "other",
    "Rules with a run or shell declaration but no output": "other",
}
# Reasons are joined with "; ", but a params reason quotes the params, which may hold "; "
# themselves: split only where a known reason starts.
_REASON_SPLIT = re.compile("; (?=(?:" + "|".join(map(re.escape, REASON_CATEGORY)) + "))")
_JOB_HEADER = re.compile(r"^\s*(?:local)?(?:rule|checkpoint) (?P<rule>[A-Za-z_][\w]*):\s*$")
_JOB_FIELD = re.compile(r"^\s+(?P<key>[a-z_]+): (?P<value>.*)$")
_DOT_NODE = re.compile(r"^\s*(?P<id>\d+)\s*\[(?P<attrs>.*)\];?\s*$")
_DOT_EDGE = re.compile(r"^\s*(?P<a>\d+)\s*->\s*(?P<b>\d+)")
_DOT_ATTR = re.compile(r'(\w+)\s*=\s*"([^"]*)"')


class PlanError(RuntimeError):
    """Snakemake failed, or printed something the plan cannot read; the message says which."""


# --- parsing Snakemake's output ----------------------------------------------------------------


def categorize(reason: str) -> list[str]:
    """The categories of one `reason:` value, in CATEGORIES order (empty reason: ["other"])."""
    reason = reason.strip()
    if reason.startswith("Finished (was: ") and reason.endswith(")"):
        reason = reason[len("Finished (was: ") : -1]
    found = set()
    for part in _REASON_SPLIT.split(reason):
        part = part.strip()
        if part:
            found.add(
                next(
                    (c for prefix, c in REASON_CATEGORY.items() if part.startswith(prefix)), "other"
                )
            )
    return [c for c in CATEGORIES if c in found] or ["other"]


def parse_dry_run(text: str) -> list[dict]:
    """The jobs of a `snakemake --dry-run` listing.

    Each job: {"rule", "jobid" (int or None), "wildcards" (dict), "reason" (str, "" when
    Snakemake printed none), "categories" (list)}. A job's block ends at the next job header or
    at the first line that is not indented (timestamps, "Shell command:", the job-stats table,
    the "Reasons:" summary), so nothing outside a job's block is read as part of it.
    """
    jobs = []
    job = None
    for line in text.splitlines():
        header = _JOB_HEADER.match(line)
        if header:
            job = {"rule": header["rule"], "jobid": None, "wildcards": {}, "reason": ""}
            jobs.append(job)
            continue
        if job is None:
            continue
        if not line.strip() or not line[0].isspace():
            job = None
            continue
        field = _JOB_FIELD.match(line)
        if not field:
            continue
        key, value = field["key"], field["value"].strip()
        if key == "wildcards":
            job["wildcards"] = dict(pair.split("=", 1) for pair in value.split(", ") if "=" in pair)
        elif key == "reason":
            job["reason"] = value
        elif key == "jobid" and value.isdigit():
            job["jobid"] = int(value)
    for job in jobs:
        job["categories"] = categorize(job["reason"])
    return jobs


def parse_job_stats(text: str) -> dict[str, int]:
    """The first "Job stats" table: {rule: count, ..., "total": n}; {} when there is none."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.strip() == "Job stats:":
            counts = {}
            for row in lines[i + 3 :]:
                parts = row.split()
                if len(parts) != 2 or not parts[1].isdigit():
                    break
                counts[parts[0]] = int(parts[1])
            return counts
    return {}


def parse_rulegraph(dot: str) -> tuple[dict[str, dict], list[tuple[str, str]]]:
    """Nodes {id: {"label", "color" (DOT "h s v" string or "")}} and edges [(from, to)] of
    `snakemake --rulegraph` output (the digraph Snakemake 9 prints on stdout)."""
    nodes, edges = {}, []
    for line in dot.splitlines():
        edge = _DOT_EDGE.match(line)
        if edge:
            edges.append((edge["a"], edge["b"]))
            continue
        node = _DOT_NODE.match(line)
        if node:
            attrs = dict(_DOT_ATTR.findall(node["attrs"]))
            nodes[node["id"]] = {
                "label": attrs.get("label", node["id"]),
                "color": attrs.get("color", ""),
            }
    for a, b in edges:
        for n in (a, b):
            nodes.setdefault(n, {"label": n, "color": ""})
    return nodes, edges


# --- the config's targets ----------------------------------------------------------------------


def _merge(base: dict, overlay: dict) -> dict:
    """Snakemake's update_config: nested mappings merge, everything else is replaced."""
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base


def load_config(
    directory: str | Path = ".", configfile: str | Path | None = None, replace: bool = False
) -> dict:
    """The config a run would see: the workflow's config/config.yaml with the --configfile
    merged over it, as Snakemake does (or the --configfile alone with --replace-workflow-config),
    validated and filled, its real sets' files checked, as the Snakefile does."""
    default = Path(directory) / "config" / "config.yaml"
    config = {}
    try:
        if default.exists() and not (configfile and replace):
            config = read_config_file(default)
        if configfile:
            _merge(config, read_config_file(configfile))
        if not config:
            raise PlanError(f"no config: {default} does not exist and no --configfile was given")
        validate(config)
        check_real_sets(config)
        return config
    except ConfigError as error:
        raise PlanError(str(error)) from None


def targets(config: dict) -> list[dict]:
    """One row per (stage, block, rule) that a run reaches, with the number of jobs the config
    asks for (hrtem_wf.config.block_jobs: counted from the blocks, never listed)."""
    return [
        {"stage": stage, "block": block, "rule": rule, "targets": n}
        for stage, block, rule, n in block_jobs(config)
    ]


def summarize(jobs: list[dict], config: dict) -> list[dict]:
    """Table rows: the config's targets per (stage, block, rule) with the dry run's jobs counted
    in. Row keys: stage, block, rule, targets (None for jobs outside the config's blocks),
    would_run, and one count per CATEGORIES entry."""
    rows = targets(config)
    index = {(r["rule"], r["block"]): r for r in rows}
    for row in rows:
        row.update({"would_run": 0, **{c: 0 for c in CATEGORIES}})
    for job in jobs:
        stage, wildcard = RULE_STAGE.get(job["rule"], ("other", None))
        block = job["wildcards"].get(wildcard, NO_BLOCK) if wildcard else NO_BLOCK
        row = index.get((job["rule"], block))
        if row is None:  # a rule this table does not know, or a block outside the config
            row = {
                "stage": stage,
                "block": block,
                "rule": job["rule"],
                "targets": None,
                "would_run": 0,
                **{c: 0 for c in CATEGORIES},
            }
            index[(job["rule"], block)] = row
            rows.append(row)
        row["would_run"] += 1
        for category in job["categories"]:
            row[category] += 1
    order = {stage: i for i, stage in enumerate(STAGES)}
    return sorted(rows, key=lambda r: order.get(r["stage"], len(STAGES)))  # stable: config order


def total(rows: list[dict]) -> dict:
    """The column sums (targets: None if any row's is unknown)."""
    counts = [r["targets"] for r in rows]
    return {
        "stage": "total",
        "block": "",
        "rule": "",
        "targets": None if None in counts else sum(counts),
        **{k: sum(r[k] for r in rows) for k in ["would_run", *CATEGORIES]},
    }


def format_plan(rows: list[dict]) -> str:
    """Fixed-width text: one line per row, then the total."""
    titles = [
        "stage",
        "block",
        "rule",
        "targets",
        "would run",
        *(CATEGORY_TITLES[c] for c in CATEGORIES),
    ]
    keys = ["stage", "block", "rule", "targets", "would_run", *CATEGORIES]
    table = [titles] + [
        ["?" if r[k] is None else str(r[k]) for k in keys] for r in [*rows, total(rows)]
    ]
    widths = [max(len(line[i]) for line in table) for i in range(len(titles))]

    def render(line):
        cells = [
            cell.ljust(w) if i < 3 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(line, widths))
        ]
        return "  ".join(cells).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([render(table[0]), rule, *map(render, table[1:-1]), rule, render(table[-1])])


# --- running Snakemake -------------------------------------------------------------------------


def snakemake_executable() -> str:
    """The `snakemake` of this environment (next to the Python running hrtem-wf)."""
    local = Path(sys.executable).parent / "snakemake"
    if local.exists():
        return str(local)
    found = shutil.which("snakemake")
    if found is None:
        raise PlanError(
            f"snakemake not found (looked in {local.parent} and on PATH); "
            "install hrtem_wf[workflow]"
        )
    return found


def _snakemake(directory, configfile, snakemake_args, *flags) -> subprocess.CompletedProcess:
    quiet = [a for a in snakemake_args if a in ("-q", "--quiet") or a.startswith("--quiet=")]
    if quiet:
        raise PlanError(f"{quiet[0]} hides the per-job listing the plan reads: leave it out")
    command = [snakemake_executable(), *flags]
    if configfile:
        command += ["--configfile", str(Path(configfile).resolve())]
    command += list(snakemake_args)
    bindir = str(Path(sys.executable).parent)
    env = dict(os.environ, PATH=bindir + os.pathsep + os.environ.get("PATH", ""))
    result = subprocess.run(command, cwd=directory, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        output = (result.stdout + "\n" + result.stderr).strip()
        raise PlanError(
            f"{' '.join(command)} failed (exit {result.returncode}) in {directory}:\n"
            + "\n".join(output.splitlines()[-40:])
        )
    return result


def dry_run(directory: str | Path = ".", configfile=None, snakemake_args=()) -> str:
    """The text of `snakemake --dry-run` (stdout, then stderr) run in `directory`."""
    result = _snakemake(directory, configfile, snakemake_args, "--dry-run")
    return result.stdout + "\n" + result.stderr


def plan(
    directory: str | Path = ".",
    configfile: str | Path | None = None,
    snakemake_args=(),
    config: dict | None = None,
) -> list[dict]:
    """The plan of a run in `directory` as table rows (see `summarize`). The config (`config`:
    already loaded with `load_config`) is validated before the dry run: a config too large or
    malformed to plan stops here, in seconds."""
    snakemake_args = list(snakemake_args)
    if config is None:
        replace = "--replace-workflow-config" in snakemake_args
        config = load_config(directory, configfile, replace=replace)
    jobs = read_dry_run(dry_run(directory, configfile, snakemake_args))
    return summarize(jobs, config)


def read_dry_run(text: str) -> list[dict]:
    """`parse_dry_run`, checked against the dry run's own job-stats table."""
    jobs = parse_dry_run(text)
    stats = parse_job_stats(text)
    parsed = {}
    for job in jobs:
        parsed[job["rule"]] = parsed.get(job["rule"], 0) + 1
    expected = {rule: n for rule, n in stats.items() if rule != "total"}
    if stats and parsed != expected:
        raise PlanError(
            f"read {sum(parsed.values())} jobs {parsed} from the dry run, but its job "
            f"stats say {expected}; the output format may have changed"
        )
    return jobs


def rulegraph(directory: str | Path = ".", configfile=None, snakemake_args=()) -> str:
    """The DOT text of `snakemake --rulegraph`."""
    return _snakemake(directory, configfile, list(snakemake_args), "--rulegraph").stdout


# --- drawing the rule graph --------------------------------------------------------------------


def _layers(nodes, edges) -> dict[str, int]:
    """Longest-path layering: a rule sits one layer below its deepest input rule."""
    preds = {n: [a for a, b in edges if b == n] for n in nodes}
    layer = {}

    def depth(n, seen=()):
        if n not in layer:
            if n in seen:  # a cycle cannot come from Snakemake; do not recurse forever
                return 0
            layer[n] = max((depth(p, (*seen, n)) + 1 for p in preds[n]), default=0)
        return layer[n]

    for n in nodes:
        depth(n)
    return layer


def _positions(nodes, edges) -> dict[str, tuple[float, float]]:
    layer = _layers(nodes, edges)
    rows: dict[int, list[str]] = {}
    for n in sorted(nodes, key=lambda n: (layer[n], int(n) if n.isdigit() else n)):
        rows.setdefault(layer[n], []).append(n)
    x = {}
    for depth in sorted(rows):
        if depth > 0:  # order each layer by the mean position of its inputs (fewer crossings)

            def barycenter(n):
                xs = [x[a] for a, b in edges if b == n and a in x]
                return sum(xs) / len(xs) if xs else 0.0

            rows[depth].sort(key=barycenter)
        for i, n in enumerate(rows[depth]):
            x[n] = i - (len(rows[depth]) - 1) / 2
    return {n: (x[n] * 2.2, -layer[n]) for n in nodes}


def draw_rulegraph(
    nodes: dict,
    edges: list,
    png: str | Path,
    job_counts: dict | None = None,
    title: str | None = None,
) -> Path:
    """Draw the rule graph top (first stage) to bottom (`all`) into a PNG; with `job_counts`
    ({rule: n}) each box also says how many of its jobs would run. Edges that skip layers are
    drawn as arcs so that they do not hide behind the boxes in between."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.colors as mcolors
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    inch = 0.9  # inches per data unit: one layer is one unit high
    pos = _positions(nodes, edges)
    xs = [p[0] for p in pos.values()] or [0.0]
    ys = [p[1] for p in pos.values()] or [0.0]
    fig, ax = plt.subplots()
    ax.set_aspect("equal")
    ax.axis("off")
    boxes, widths = {}, {}
    for n, attrs in nodes.items():
        lines = [attrs["label"]]
        if job_counts is not None:
            lines.append(f"{job_counts.get(attrs['label'], 0)} to run")
        w = 0.11 * max(map(len, lines)) + 0.4
        h = 0.22 * len(lines) + 0.12
        try:
            hsv = [float(v) for v in attrs["color"].replace(",", " ").split()]
            color = mcolors.hsv_to_rgb(hsv) if len(hsv) == 3 else "grey"
        except ValueError:
            color = "grey"
        x, y = pos[n]
        box = FancyBboxPatch(
            (x - w / 2, y - h / 2),
            w,
            h,
            boxstyle="round,pad=0.04",
            facecolor="white",
            edgecolor=color,
            linewidth=2,
            zorder=3,
        )
        ax.add_patch(box)
        ax.text(x, y, "\n".join(lines), ha="center", va="center", fontsize=10, zorder=4)
        boxes[n], widths[n] = box, w
    side, reach = 1, 0.0
    for a, b in edges:
        (xa, ya), (xb, yb) = pos[a], pos[b]
        rad = 0.0
        between = [n for n in nodes if pos[n][0] == xa and min(ya, yb) < pos[n][1] < max(ya, yb)]
        if xa == xb and between:  # a straight edge would run through the boxes between
            offset = max(widths[n] for n in between) / 2 + 0.2 + 0.15 * (len(between) - 1)
            rad, side = side * 2 * offset / abs(ya - yb), -side
            reach = max(reach, offset)
        ax.add_patch(
            FancyArrowPatch(
                pos[a],
                pos[b],
                patchA=boxes[a],
                patchB=boxes[b],
                arrowstyle="-|>",
                mutation_scale=14,
                color="grey",
                linewidth=1.5,
                connectionstyle=f"arc3,rad={rad}",
                shrinkA=1,
                shrinkB=1,
                zorder=2,
            )
        )
    margin = max(1.2, reach + 0.4)
    ax.set_xlim(min(xs) - margin, max(xs) + margin)
    ax.set_ylim(min(ys) - 0.6, max(ys) + 0.6)
    fig.set_size_inches(
        (max(xs) - min(xs) + 2 * margin) * inch,
        (max(ys) - min(ys) + 1.2 + 0.4 * bool(title)) * inch,
    )
    ax.set_position([0, 0, 1, 1 - 0.4 * bool(title) / (max(ys) - min(ys) + 1.6)])
    if title:
        fig.suptitle(title)
    png = Path(png)
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=120)
    plt.close(fig)
    return png


# --- the command -------------------------------------------------------------------------------


def run(
    directory: str = ".",
    configfile: str | None = None,
    rulegraph_png: str | None = None,
    snakemake_args: list[str] = (),
) -> None:
    """`hrtem-wf plan`: print the table; with `rulegraph_png` also draw the rule graph. A failed
    or unreadable dry run: InputError."""
    try:
        replace = "--replace-workflow-config" in snakemake_args
        config = load_config(directory, configfile, replace=replace)
        rows = plan(directory, configfile, snakemake_args, config=config)
        print(format_plan(rows))
        total = sum(planned_jobs(config).values())
        print(
            f"\nthe config's jobs, counted from its blocks: {total:,} (max_jobs "
            f"{config['max_jobs']:,}; Snakemake's DAG of them takes about "
            f"{total * DAG_MB_PER_JOB:,.0f} MB)"
        )
        if rulegraph_png:
            nodes, edges = parse_rulegraph(rulegraph(directory, configfile, snakemake_args))
            counts = {}
            for row in rows:
                counts[row["rule"]] = counts.get(row["rule"], 0) + row["would_run"]
            png = draw_rulegraph(nodes, edges, rulegraph_png, job_counts=counts)
            print(f"\nrule graph: {png}")
    except PlanError as error:
        raise InputError(str(error)) from None
