# Helpers for the rules: block specs (the params that decide an output) and target lists.
# Input functions read only the config, never the filesystem.
import json
import os
import shlex

from hrtem_wf.codeversion import code_version
from hrtem_wf.config import calibration_real_set as calibrated_on
from hrtem_wf.config import structure_ids, structures_of
from hrtem_wf.images.calibration import PILOT_STRUCTURES

RESULTS = "results"
REAL_SETS = config["real_sets"]
REPORT = [
    f"{RESULTS}/report/summary.md",
    f"{RESULTS}/report/training_curves.png",
    f"{RESULTS}/report/examples.png",
    f"{RESULTS}/report/data_distributions.png",
] + (
    # the real-set examples show the first segmentation model's predictions; the sizes, the
    # particles of each model's masks against the hand masks'
    [f"{RESULTS}/report/real_set_examples.png", f"{RESULTS}/report/real_set_sizes.png"]
    if REAL_SETS and any(m["task"] == "segmentation" for m in config["models"].values())
    else []
)


wildcard_constraints:
    structures=r"[A-Za-z][A-Za-z0-9_-]*",
    simulations=r"[A-Za-z][A-Za-z0-9_-]*",
    images=r"[A-Za-z][A-Za-z0-9_-]*",
    datasets=r"[A-Za-z][A-Za-z0-9_-]*",
    models=r"[A-Za-z][A-Za-z0-9_-]*",
    real_set=r"[A-Za-z][A-Za-z0-9_-]*",
    item=r"\d{5}",
    seed=r"\d+",


def block_spec(section, name, drop=()):
    """The block's config as canonical JSON: exactly what decides the block's outputs."""
    block = {k: v for k, v in config[section][name].items() if k not in drop}
    return json.dumps(block, sort_keys=True, separators=(",", ":"))


def image_stores(dataset):
    return [
        f"{RESULTS}/images/{block}/{item}.zarr"
        for block in config["datasets"][dataset]["images"]
        for item in structure_ids(config, structures_of(config, "images", block))
    ]


def model_runs():
    return [(m, s) for m, block in config["models"].items() for s in block["seeds"]]


def score_runs():
    """(real set, model, seed) of every score: each real set against its models' seeds."""
    return [
        (r, m, s) for r, block in REAL_SETS.items() for m, s in model_runs() if m in block["models"]
    ]


def realism_runs():
    """(real set, dataset) of every realism comparison: each real set against the datasets its
    models were trained on."""
    return [
        (r, d)
        for r, block in REAL_SETS.items()
        for d in dict.fromkeys(config["models"][m]["dataset"] for m in block["models"])
    ]


def real_set_files(wc):
    return real_set_paths(wc.real_set)


def real_set_paths(name):
    """The real set's files (hdf5) or folders (pairs) as named in the config."""
    block = REAL_SETS[name]
    return [block["path"]] if block["format"] == "hdf5" else [block["micrographs"], block["masks"]]


def calibration_real_set(images):
    """The real set an images block's label width and blur are calibrated against, or None."""
    return calibrated_on(config["images"][images])


def calibration_json(images):
    """The calibration JSON of an images block that asks for one ({calibrate: ...}), else []."""
    if images is None or calibration_real_set(images) is None:
        return []
    return f"{RESULTS}/calibrations/{images}.json"


def calibration_jsons():
    """The calibration JSON of every images block a model trains on (dataset or on the fly)."""
    blocks = dict.fromkeys(
        [
            *(
                i
                for m, _ in model_runs()
                for i in config["datasets"][config["models"][m]["dataset"]]["images"]
            ),
            *(on_the_fly_images(m) for m, _ in model_runs()),
        ]
    )
    return [calibration_json(b) for b in blocks if calibration_json(b)]


def pilot_items(images):
    """The items of an images block its calibration draws: its first PILOT_STRUCTURES."""
    return structure_ids(config, structures_of(config, "images", images))[:PILOT_STRUCTURES]


def dataset_parquets():
    """The parquet of every dataset a model trains on, in model order."""
    names = dict.fromkeys(config["models"][m]["dataset"] for m, _ in model_runs())
    return [f"{RESULTS}/datasets/{name}.parquet" for name in names]


def dataset_of(wc):
    name = config["models"][wc.models]["dataset"]
    return {
        "zarr": f"{RESULTS}/datasets/{name}.zarr",
        "parquet": f"{RESULTS}/datasets/{name}.parquet",
    }


def column_structure(images, item):
    """The structure an images block's column targets are made from (none without them)."""
    if config["images"][images]["targets"].get("columns") is None:
        return []
    simulations = config["simulations"][config["images"][images]["simulations"]]
    return f"{RESULTS}/structures/{simulations['structures']}/{item}.extxyz"


def on_the_fly_images(model):
    """The images block an on_the_fly model draws its training images with, or None."""
    fly = config["models"][model]["on_the_fly"]
    return None if fly is None else fly["images"]


def on_the_fly_simulations(model):
    """The simulation stores an on_the_fly model draws from: every structure of its images
    block (which of them train is the dataset's split, decided when it is built)."""
    images = on_the_fly_images(model)
    if images is None:
        return []
    simulations = config["images"][images]["simulations"]
    return [
        f"{RESULTS}/simulations/{simulations}/{item}.zarr"
        for item in structure_ids(config, structures_of(config, "images", images))
    ]


def on_the_fly_arguments(model):
    """`hrtem-wf models` arguments of an on_the_fly model: the images block's spec (so that
    changing it retrains) and the folder of its simulation stores; '' without on_the_fly."""
    images = on_the_fly_images(model)
    if images is None:
        return ""
    simulations = config["images"][images]["simulations"]
    calibration = calibration_json(images)
    return (
        f"--images-spec {shlex.quote(block_spec('images', images))}"
        f" --simulations-dir {RESULTS}/simulations/{simulations}"
    ) + (f" --calibration-json {calibration}" if calibration else "")


def first_dataset():
    name = config["models"][model_runs()[0][0]]["dataset"]
    return {
        "zarr": f"{RESULTS}/datasets/{name}.zarr",
        "parquet": f"{RESULTS}/datasets/{name}.parquet",
    }


def on_gpu(section, name):
    return config[section][name]["device"] == "gpu"


def gpus(section, name):
    """GPUs a job of this block asks for: SLURM (--gpus) and --resources gpu=N count them."""
    return 1 if on_gpu(section, name) else 0


def bind_gpu_flag(section, name):
    """A GPU job binds its own device (hrtem_wf.gpu): Snakemake only counts GPUs."""
    return "--bind-gpu" if on_gpu(section, name) else ""


def slurm_account(section, name):
    """Perlmutter charges GPU nodes to a separate account (<project>_g): SLURM_GPU_ACCOUNT."""
    return os.environ.get("SLURM_GPU_ACCOUNT" if on_gpu(section, name) else "SLURM_ACCOUNT", "")


def node_constraint(section, name):
    """Perlmutter-style node type (sbatch -C); ignored by local runs."""
    return "gpu" if on_gpu(section, name) else "cpu"
