"""The small tools: `preview` (structures as a PNG), `plan` (what a run would do) and
`gpu-probe` (a diagnostic of the GPU binding)."""

from __future__ import annotations

import argparse
import logging

from .commands import Command, arg

log = logging.getLogger("hrtem_wf")


def gpu_probe(output: str, seconds: float, fail: bool) -> None:
    """`hrtem_wf.gpu.write_probe`; with --fail, then exit 1."""
    from hrtem_wf.gpu import write_probe

    write_probe(output, seconds, failed=fail)
    if fail:  # a failing GPU job: its slot must be freed all the same
        log.error("gpu-probe: failing on purpose (--fail)")
        raise SystemExit(1)


PREVIEW = Command(
    "preview",
    "hrtem_wf.preview:preview_files",
    "PNG of a few structures: top and side views",
    (
        arg("--structures", nargs="+", required=True, help="extxyz files"),
        arg("--title", default=""),
        arg("--output", required=True),
    ),
)
PLAN = Command(
    "plan",
    "hrtem_wf.plan:run",
    "what a run would do: jobs per stage and block, and why",
    (
        arg("--directory", default=".", help="the workflow directory (default: .)"),
        arg("--configfile", help="passed to snakemake (merged over config/config.yaml)"),
        arg(
            "--rulegraph",
            dest="rulegraph_png",
            metavar="PNG",
            help="also draw the rule graph into this PNG",
        ),
        arg(
            "--snakemake-args",
            nargs=argparse.REMAINDER,
            default=[],
            help="everything after this goes to snakemake (e.g. --forceall)",
        ),
    ),
)
GPU_PROBE = Command(
    "gpu-probe",
    "hrtem_wf.cli.tools:gpu_probe",
    "diagnostic: write the GPU binding of this job as JSON",
    (
        arg("--output", required=True),
        arg("--seconds", type=float, default=0.0, help="hold the GPU this long"),
        arg("--fail", action="store_true", help="exit 1 after writing the JSON"),
    ),
)
