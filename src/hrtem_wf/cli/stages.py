"""The workflow's stages as subcommands, one row each: the rule's entry in its stage package
(`hrtem_wf.<stage>.stage`), its help and its arguments. A job needs nothing but its inputs and
its params: each item stage takes its config block as JSON (`--spec`), the global seed and the
item's block name and index."""

from __future__ import annotations

import json

from .commands import Command, arg

ITEM = (
    arg("--spec", type=json.loads, required=True, help="the block's config as JSON"),
    arg("--seed", type=int, required=True, help="the config's global seed"),
    arg("--block", required=True, help="the block's name"),
    arg("--index", type=int, required=True, help="the item's index in its block"),
    arg("--output", required=True),
)
REAL_SET = (
    arg("--real-set", required=True, help="the real set's name"),
    arg("--spec", type=json.loads, required=True, help="the real_sets block as JSON"),
)

CALIBRATION_JSON = (
    arg(
        "--calibration-json",
        help="label.grow_A, blur_A, dose_e_per_A2 {calibrate: ...}: the calibration rule's JSON",
    ),
)

STRUCTURES = Command(
    "structures",
    "hrtem_wf.structures.stage:run",
    "build one structure (extxyz)",
    ITEM,
    imports=("ase.io", "hrtem_wf.structures"),
)
SIMULATIONS = Command(
    "simulations",
    "hrtem_wf.simulations.stage:run",
    "simulate one structure (Zarr)",
    (*ITEM, arg("--structure", required=True)),
    imports=("ase.io", "hrtem_wf.simulations"),
)
IMAGES = Command(
    "images",
    "hrtem_wf.images.stage:run",
    "draw the images of one simulation (Zarr)",
    (
        *ITEM,
        arg("--simulation", required=True),
        arg("--structure", help="the simulated structure (extxyz): for targets.columns"),
        *CALIBRATION_JSON,
    ),
    imports=("hrtem_wf.io", "hrtem_wf.images"),
)
CALIBRATION = Command(
    "calibration",
    "hrtem_wf.images.calibration:run",
    "measure an images block's label width against a real set's masks (JSON, PNG)",
    (
        arg("--spec", type=json.loads, required=True, help="the images block's config as JSON"),
        arg("--seed", type=int, required=True, help="the config's global seed"),
        arg("--block", required=True, help="the images block's name"),
        arg("--indices", type=int, nargs="+", required=True, help="the pilot's items"),
        arg("--simulations", nargs="+", required=True, help="their simulation stores"),
        arg("--real-set", required=True, help="the real set's name"),
        arg("--real-set-spec", type=json.loads, required=True, help="its block as JSON"),
        arg("--output", required=True, help="JSON; the figure beside it (.png)"),
    ),
)
MODELS = Command(
    "models",
    "hrtem_wf.models.stage:run",
    "train one model (weights, history, metadata)",
    (
        arg("--spec", type=json.loads, required=True),
        arg("--model-seed", type=int, required=True),
        arg("--dataset-zarr", required=True),
        arg("--dataset-parquet", required=True),
        arg("--out-dir", required=True),
        arg(
            "--images-spec",
            type=json.loads,
            help="on_the_fly: the images block (JSON) that draws the training images",
        ),
        arg("--simulations-dir", help="on_the_fly: the folder of its simulation stores"),
        *CALIBRATION_JSON,
    ),
)
EVALUATIONS = Command(
    "evaluations",
    "hrtem_wf.evaluations.stage:evaluate",
    "metrics of one model on a dataset split (JSON)",
    (
        arg("--model-dir", required=True),
        arg("--dataset-zarr", required=True),
        arg("--dataset-parquet", required=True),
        arg("--split", default="test"),
        arg("--output", required=True),
    ),
)
SCORES = Command(
    "scores",
    "hrtem_wf.evaluations.stage:score",
    "F1 of one model on a real set (JSON)",
    (arg("--model-dir", required=True), *REAL_SET, arg("--output", required=True)),
)
REALISM = Command(
    "realism",
    "hrtem_wf.evaluations.stage:realism_gaps",
    "gaps between a dataset's images and a real set's micrographs (JSON, PNG)",
    (
        *REAL_SET,
        arg("--dataset-zarr", required=True, help="its Parquet table lies beside it"),
        arg("--max-simulated", type=int, default=32, help="simulated images read (32)"),
        arg("--output", required=True, help="JSON; the figure beside it (.png)"),
    ),
)
REPORT = Command(
    "report",
    "hrtem_wf.evaluations.stage:report",
    "summary table and figures for all models",
    (
        arg("--evaluations", nargs="+", required=True),
        arg("--scores", nargs="*", default=[], help="real-set score JSONs"),
        arg("--realism", nargs="*", default=[], help="realism JSONs (real set, dataset)"),
        arg("--calibrations", nargs="*", default=[], help="the calibration rule's JSONs"),
        arg("--model-dirs", nargs="+", required=True),
        arg("--dataset-zarr", required=True),
        arg("--dataset-parquet", required=True),
        arg(
            "--dataset-parquets",
            nargs="*",
            default=[],
            help="every training dataset's table (data distributions)",
        ),
        arg(
            "--real-sets-spec",
            type=json.loads,
            default={},
            help="the config's real_sets section as JSON (example predictions)",
        ),
        arg("--out-dir", required=True),
    ),
)
