"""`hrtem-wf plan`: the dry-run parser on captured Snakemake 9 output, and the plan of the default
config (and of a grown one) on a temporary copy of the workflow. Dry runs only."""

from __future__ import annotations

import pytest
import yaml

from hrtem_wf import cli
from hrtem_wf.plan import (
    PlanError,
    categorize,
    format_plan,
    parse_dry_run,
    parse_job_stats,
    parse_rulegraph,
    plan,
    read_dry_run,
    summarize,
    total,
)

PARAMS_CHANGE = (
    "Params have changed since last execution: Union of exclusive params before and now across "
    'all output: before: \'{"crop_px":[64,64],"note":"a; b"}\' now: '
    '\'{"crop_px":[64,64],"note":"a; c"}\' '
)

# Shaped like `snakemake --dry-run --profile profiles/local` (Snakemake 9.27.1): header, job
# stats, job blocks (one with printshellcmds' "Shell command:" line, a local rule as on a
# cluster), the job stats again and the "Reasons:" summary, whose indented lines belong to no job.
SAMPLE = f"""\
Assuming unrestricted shared filesystem usage.

SNAKEMAKE
=========
  Snakemake version: 9.27.1
  Config file(s): ['config/config.yaml']

Building DAG of jobs...
Job stats:
job          count
---------  -------
structures       2
simulations      1
images           2
datasets         1
all              1
total            7


[Sat Nov 21 12:03:04 2026]
rule structures:
    output: results/structures/tiny/00003.extxyz
    log: results/logs/structures/tiny/00003.log
    jobid: 9
    benchmark: results/benchmarks/structures/tiny/00003.tsv
    reason: Missing output files: results/structures/tiny/00003.extxyz
    wildcards: structures=tiny, item=00003
    resources: tmpdir=/tmp
Shell command: hrtem-wf --log results/logs/structures/tiny/00003.log structures --spec '{{"a":1}}' --seed 7 --block tiny --index 00003 --output results/structures/tiny/00003.extxyz

[Sat Nov 21 12:03:04 2026]
rule structures:
    output: results/structures/tiny/00004.extxyz
    jobid: 10
    reason: Forced execution
    wildcards: structures=tiny, item=00004
    resources: tmpdir=/tmp
[Sat Nov 21 12:03:04 2026]
rule simulations:
    input: results/structures/tiny/00001.extxyz
    output: results/simulations/tiny_fp/00001.zarr
    jobid: 5
    reason: Updated input files: results/structures/tiny/00001.extxyz; Code has changed since last execution
    wildcards: simulations=tiny_fp, item=00001
    resources: tmpdir=/tmp
[Sat Nov 21 12:03:04 2026]
rule images:
    input: results/simulations/tiny_fp2/00000.zarr
    output: results/images/tiny_hrtem/00000.zarr
    jobid: 4
    reason: Set of input files has changed since last execution; {PARAMS_CHANGE}
    wildcards: images=tiny_hrtem, item=00000
    resources: tmpdir=/tmp
[Sat Nov 21 12:03:04 2026]
rule images:
    input: results/simulations/tiny_fp/00001.zarr
    output: results/images/tiny_hrtem/00001.zarr
    jobid: 6
    reason: Input files updated by another job: results/simulations/tiny_fp/00001.zarr
    wildcards: images=tiny_hrtem, item=00001
    resources: tmpdir=/tmp
[Sat Nov 21 12:03:04 2026]
rule datasets:
    input: results/images/tiny_hrtem/00000.zarr, results/images/tiny_hrtem/00001.zarr
    output: results/datasets/tiny_set.zarr, results/datasets/tiny_set.parquet
    jobid: 2
    reason: Missing output files: results/datasets/tiny_set.zarr, results/datasets/tiny_set.parquet; Input files updated by another job: results/images/tiny_hrtem/00001.zarr, results/images/tiny_hrtem/00000.zarr
    wildcards: datasets=tiny_set
    resources: tmpdir=/tmp
[Sat Nov 21 12:03:04 2026]
localrule all:
    input: results/report/summary.md
    jobid: 0
    reason: Input files updated by another job: results/report/summary.md
    resources: tmpdir=/tmp
Job stats:
job          count
---------  -------
structures       2
simulations      1
images           2
datasets         1
all              1
total            7

Reasons:
    (check individual jobs above for details)
    code has changed since last execution:
        simulations
    params have changed since last execution:
        images
    reason: not a job
Some jobs were triggered by provenance information, see 'reason' section in the rule displays above.
This was a dry-run (flag -n). The order of jobs does not reflect the order of execution.
"""

SAMPLE_CONFIG = {
    "structures": {"tiny": {"count": 5}},
    "simulations": {"tiny_fp": {"structures": "tiny"}},
    "images": {"tiny_hrtem": {"simulations": "tiny_fp"}},
    "datasets": {"tiny_set": {"images": ["tiny_hrtem"]}},
    "models": {"tiny_unet": {"dataset": "tiny_set", "seeds": [0, 1]}},
    "real_sets": {},
}

RULEGRAPH = """\
digraph snakemake_dag {
    graph[bgcolor=white, margin=0];
    node[shape=box, style=rounded, fontname=sans,                 fontsize=10, penwidth=2];
    edge[penwidth=2, color=grey];
	0[label = "all", color = "0.00 0.6 0.85", style="rounded"];
	1[label = "report", color = "0.33 0.6 0.85", style="rounded"];
	2[label = "datasets", color = "0.08 0.6 0.85", style="rounded"];
	1 -> 0
	2 -> 1
}
"""


def _row(rows, rule, block):
    return next(r for r in rows if r["rule"] == rule and r["block"] == block)


def test_categorize_splits_only_at_known_reasons():
    assert categorize(f"Missing output files: a, b; {PARAMS_CHANGE}") == ["missing", "params"]
    assert categorize(
        "Updated input files: x; Set of input files has changed since last "
        "execution; Code has changed since last execution"
    ) == ["code", "upstream"]
    software = "Software environment definition has changed since last execution"
    assert categorize(software) == ["other"]
    assert categorize("Finished (was: Missing output files: a)") == ["missing"]
    assert categorize("") == ["other"]


def test_parse_dry_run_sample():
    jobs = parse_dry_run(SAMPLE)
    assert [j["rule"] for j in jobs] == [
        "structures",
        "structures",
        "simulations",
        "images",
        "images",
        "datasets",
        "all",
    ]
    assert jobs[0]["wildcards"] == {"structures": "tiny", "item": "00003"} and jobs[0]["jobid"] == 9
    assert [j["categories"] for j in jobs] == [
        ["missing"],
        ["other"],
        ["code", "upstream"],
        ["params", "upstream"],
        ["upstream"],
        ["missing", "upstream"],
        ["upstream"],
    ]
    assert jobs[-1]["wildcards"] == {}  # the "Reasons:" summary after it is not read into it
    assert jobs[-1]["reason"].startswith("Input files updated")
    assert parse_job_stats(SAMPLE) == {
        "structures": 2,
        "simulations": 1,
        "images": 2,
        "datasets": 1,
        "all": 1,
        "total": 7,
    }
    assert read_dry_run(SAMPLE) == jobs
    with pytest.raises(PlanError, match="job stats"):
        read_dry_run(SAMPLE.replace("localrule all:", "all:"))  # a job the parser cannot see


def test_summarize_sample():
    rows = summarize(parse_dry_run(SAMPLE), SAMPLE_CONFIG)
    assert [(r["stage"], r["block"], r["rule"]) for r in rows] == [
        ("structures", "tiny", "structures"),
        ("simulations", "tiny_fp", "simulations"),
        ("images", "tiny_hrtem", "images"),
        ("datasets", "tiny_set", "datasets"),
        ("models", "tiny_unet", "models"),
        ("models", "tiny_unet", "evaluations"),
        ("report", "-", "report"),
        ("report", "-", "all"),
    ]
    counts = {
        r["rule"]: (
            r["targets"],
            r["would_run"],
            r["missing"],
            r["params"],
            r["code"],
            r["upstream"],
            r["other"],
        )
        for r in rows
    }
    assert counts == {
        "structures": (5, 2, 1, 0, 0, 0, 1),
        "simulations": (5, 1, 0, 0, 1, 1, 0),
        "images": (5, 2, 0, 1, 0, 2, 0),
        "datasets": (1, 1, 1, 0, 0, 1, 0),
        "models": (2, 0, 0, 0, 0, 0, 0),
        "evaluations": (2, 0, 0, 0, 0, 0, 0),
        "report": (1, 0, 0, 0, 0, 0, 0),
        "all": (1, 1, 0, 0, 0, 1, 0),
    }
    assert total(rows)["targets"] == 22 and total(rows)["would_run"] == 7
    text = format_plan(rows)
    lines = text.splitlines()
    assert lines[0].split()[:5] == ["stage", "block", "rule", "targets", "would"]
    assert lines[-1].split() == ["total", "22", "7", "2", "1", "1", "5", "1"]
    assert len({len(line) for line in lines[:2]}) == 1  # header and rule line up


def test_parse_rulegraph_sample():
    nodes, edges = parse_rulegraph(RULEGRAPH)
    assert {n["label"] for n in nodes.values()} == {"all", "report", "datasets"}
    assert nodes["1"]["color"] == "0.33 0.6 0.85"
    assert edges == [("1", "0"), ("2", "1")]


def test_quiet_is_refused_before_running():
    with pytest.raises(PlanError, match="--quiet"):
        plan(".", snakemake_args=["--quiet", "rules"])


@pytest.fixture(scope="module")
def default_flow(tmp_path_factory):
    from conftest import WorkflowCopy, load_config

    return WorkflowCopy(tmp_path_factory.mktemp("plan"), load_config())


@pytest.mark.workflow
def test_default_config_plan(default_flow):
    rows = plan(default_flow.path)
    table = {
        (r["stage"], r["block"], r["rule"]): (
            r["targets"],
            r["would_run"],
            r["missing"],
            r["params"],
            r["code"],
            r["upstream"],
            r["other"],
        )
        for r in rows
    }
    assert table == {
        ("structures", "au_small", "structures"): (24, 24, 24, 0, 0, 0, 0),
        ("simulations", "au_small_fp", "simulations"): (24, 24, 24, 0, 0, 24, 0),
        ("images", "au_small_hrtem", "images"): (24, 24, 24, 0, 0, 24, 0),
        ("datasets", "au_small_demo", "datasets"): (1, 1, 1, 0, 0, 1, 0),
        ("models", "unet_demo", "models"): (2, 2, 2, 0, 0, 2, 0),
        ("models", "unet_demo", "evaluations"): (2, 2, 2, 0, 0, 2, 0),
        ("real_sets", "real_au_tiles", "scores"): (2, 2, 2, 0, 0, 2, 0),
        ("real_sets", "real_au_tiles", "realism"): (1, 1, 1, 0, 0, 1, 0),
        ("report", "-", "report"): (1, 1, 1, 0, 0, 1, 0),
        ("report", "-", "all"): (1, 1, 0, 0, 0, 1, 0),
    }
    assert total(rows)["would_run"] == 82


@pytest.mark.workflow
def test_cli_prints_table_and_draws_rulegraph(default_flow, tmp_path, capsys):
    png = tmp_path / "plan" / "rulegraph.png"
    assert cli.main(["plan", "--directory", str(default_flow.path), "--rulegraph", str(png)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:3] == ["stage", "block", "rule"]
    assert any(line.split()[:2] == ["total", "82"] for line in out.splitlines())
    assert "the config's jobs, counted from its blocks: 82 (max_jobs 200,000;" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


@pytest.mark.workflow
def test_grown_config_via_configfile(default_flow, tmp_path):
    """A --configfile is merged over config/config.yaml, as Snakemake does."""
    overlay = tmp_path / "grow.yaml"
    overlay.write_text(
        yaml.safe_dump(
            {"structures": {"au_small": {"count": 5}}, "models": {"unet_demo": {"seeds": [0, 3]}}}
        )
    )
    rows = plan(default_flow.path, configfile=overlay)
    counts = {r["rule"]: (r["targets"], r["would_run"]) for r in rows}
    assert counts == {
        "structures": (5, 5),
        "simulations": (5, 5),
        "images": (5, 5),
        "datasets": (1, 1),
        "models": (2, 2),
        "evaluations": (2, 2),
        "scores": (2, 2),
        "realism": (1, 1),
        "report": (1, 1),
        "all": (1, 1),
    }


@pytest.mark.workflow
def test_the_configs_job_count_is_snakemakes(default_flow, tmp_path):
    """hrtem_wf.config.planned_jobs, counted from the blocks, equals the dry run's job stats,
    also with a block that no dataset uses (Snakemake plans none of its jobs)."""
    from hrtem_wf.config import planned_jobs
    from hrtem_wf.plan import dry_run, load_config, parse_job_stats

    overlay = tmp_path / "unused.yaml"
    images = default_flow.config["images"]["au_small_hrtem"]
    overlay.write_text(yaml.safe_dump({"images": {"unused": images}, "seed": 7}))
    for configfile in (None, overlay):
        stats = parse_job_stats(dry_run(default_flow.path, configfile))
        jobs = planned_jobs(load_config(default_flow.path, configfile))
        assert stats == {**jobs, "total": sum(jobs.values())}


@pytest.mark.workflow
def test_snakemake_failure_is_reported(default_flow, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"structures": {"au_small": {"count": "many"}}}))
    with pytest.raises(PlanError, match="structures.au_small.count"):
        plan(default_flow.path, configfile=bad)


def test_real_set_scores_are_planned_per_model_seed():
    from conftest import load_config
    from hrtem_wf.config import validate
    from hrtem_wf.plan import targets

    config = load_config("config/config.yaml")
    config["models"]["second"] = {**config["models"]["unet_demo"], "seeds": [4, 5, 6]}
    config["real_sets"] = {
        "all_models": {"format": "hdf5", "path": "a.h5"},
        "one_model": {"format": "hdf5", "path": "b.h5", "models": ["second"]},
    }
    validate(config)
    rows = {(r["stage"], r["block"], r["rule"]): r["targets"] for r in targets(config)}
    assert rows[("real_sets", "all_models", "scores")] == 2 + 3
    assert rows[("real_sets", "one_model", "scores")] == 3
    # realism: one comparison per real set and dataset its models trained on (both: one)
    assert rows[("real_sets", "all_models", "realism")] == 1
    assert rows[("real_sets", "one_model", "realism")] == 1


@pytest.mark.parametrize(
    "text, words",
    [
        ("seed: 1\nstructures: {a: [1, 2\nmodels: 3\n", ["line 3, column", "not valid YAML"]),
        ("", ["is empty"]),
        ("- 1\n- 2\n", ["holds a list, not a mapping"]),
        ("seed: 1\n\tmodels: {}\n", ["line 2, column 1", "not valid YAML"]),
    ],
    ids=["unclosed", "empty", "list", "tab"],
)
def test_a_config_file_that_is_no_config_is_named_with_its_line(tmp_path, text, words):
    """hrtem-wf plan names the --configfile and the line (Snakemake's own message names
    neither)."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    with pytest.raises(SystemExit) as stop:
        cli.main(
            ["plan", "--configfile", str(bad), "--snakemake-args", "--replace-workflow-config"]
        )
    message = str(stop.value)
    assert f"config file {bad}" in message
    for word in words:
        assert word in message


@pytest.mark.workflow
def test_a_broken_workflow_config_is_named_in_a_dry_run(default_flow, tmp_path):
    flow = default_flow.clone(tmp_path / "broken")
    (flow.path / "config" / "config.yaml").write_text("seed: 1\nstructures: {a: [1\n")
    result = flow.snakemake("-n", check=False)
    assert result.returncode != 0
    assert "config file config/config.yaml, line 3, column 1: not valid YAML" in (
        result.stdout + result.stderr
    )
