"""`hrtem-wf`: one subcommand per workflow stage; each Snakemake rule calls one of them.

The command line only parses and dispatches: each subcommand is a row (`commands.Command`) naming
the library function it calls with its options (stages.py: the stages' entries, in their
packages; predict.py, match.py, tools.py: the user's tools). Stage libraries are imported
lazily: a structure job does not pay for importing torch. An `InputError` of the library becomes
a one-line message (exit status 1).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import time

from hrtem_wf.errors import InputError
from hrtem_wf.memory import huge_pages_for_tensors

from . import stages, tools
from .commands import add_command, call
from .match import MATCH
from .predict import PREDICT

log = logging.getLogger("hrtem_wf")

COMMANDS = (
    stages.STRUCTURES,
    stages.SIMULATIONS,
    stages.IMAGES,
    stages.CALIBRATION,
    tools.PREVIEW,
    stages.MODELS,
    stages.EVALUATIONS,
    stages.SCORES,
    stages.REALISM,
    stages.REPORT,
    PREDICT,
    MATCH,
    tools.PLAN,
    tools.GPU_PROBE,
)


def parser() -> argparse.ArgumentParser:
    """The `hrtem-wf` parser: the options of every job, then one subparser per command."""
    parser = argparse.ArgumentParser(prog="hrtem-wf", description=__doc__.splitlines()[0])
    parser.add_argument("--log", help="append progress to this file (default: stderr)")
    parser.add_argument(
        "--bind-gpu",
        action="store_true",
        help="take one free GPU of the node for this job (sets CUDA_VISIBLE_DEVICES; "
        "for several GPU jobs in one allocation, see hrtem_wf.gpu)",
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        add_command(subparsers, command)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    handler = logging.FileHandler(args.log) if args.log else logging.StreamHandler(sys.stderr)
    logging.basicConfig(
        level=logging.INFO, handlers=[handler], format="%(asctime)s %(levelname)s %(message)s"
    )
    if args.bind_gpu:
        # Before any stage imports CuPy or torch: CUDA reads CUDA_VISIBLE_DEVICES once, at init.
        from hrtem_wf.gpu import bind_gpu

        log.info("--bind-gpu: this job uses GPU %s (CUDA_VISIBLE_DEVICES set to it)", bind_gpu())
    huge_pages_for_tensors()  # before torch is imported (hrtem_wf.memory)
    start = time.perf_counter()
    for module in args.imports:  # before the clock starts: "done in" is the item's work alone
        importlib.import_module(module)
    imported = time.perf_counter()
    try:
        call(args)
    except InputError as error:
        raise SystemExit(f"hrtem-wf {args.command}: {error}") from None
    log.info(
        "%s done in %.3f s (after %.3f s of imports)",
        args.command,
        time.perf_counter() - imported,
        imported - start,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
