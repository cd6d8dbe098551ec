"""Config validation: the default and tiny configs pass; malformed ones stop before any job
with a message that names the key."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from conftest import DEMO_JOBS, SCHEMA
from hrtem_wf.config import ConfigError, validate
from hrtem_wf.sampling import nominal, sample, support


def test_shipped_configs_are_valid(default_config, tiny_config):
    validate(default_config, SCHEMA)
    validate(tiny_config, SCHEMA)


def _set(config, path, value):
    *parents, last = path.split(".")
    node = config
    for key in parents:
        node = node[key]
    if value is KeyError:
        del node[last]
    else:
        node[last] = value
    return config


# (dotted key, new value, words the message must contain)
MALFORMED = [
    ("structures.au_small.colour", "red", ["structures.au_small", "colour"]),
    ("simulations.au_small_fp.frozen_phonons", "four", ["simulations.au_small_fp.frozen_phonons"]),
    (
        "images.au_small_hrtem.detector.median_filter_px",
        0,
        ["images.au_small_hrtem.detector.median_filter_px"],
    ),
    (
        "images.au_small_hrtem.simulations",
        "no_such_sim",
        ["images.au_small_hrtem.simulations", "no_such_sim"],
    ),
    ("datasets.au_small_demo.split.train", 0.9, ["datasets.au_small_demo.split"]),
    ("models.unet_demo.decoder_channels", [64, 32], ["models.unet_demo.decoder_channels"]),
    ("models.unet_demo.architecture", "FPN", ["models.unet_demo.decoder_channels", "FPN"]),
    ("models.unet_demo.architecture", "Unet3D", ["models.unet_demo.architecture"]),
    ("models.unet_demo.checkpoint", "best", ["models.unet_demo.checkpoint"]),
    (
        "images.au_small_hrtem.dose_e_per_A2",
        {"distribution": "uniform", "low": -5, "high": 10},
        ["images.au_small_hrtem.dose_e_per_A2"],
    ),
    (
        "structures.au_small.radius_A",
        {"distribution": "gamma", "k": 2},
        ["structures.au_small.radius_A"],
    ),
    ("models.unet_demo.dataset", KeyError, ["models.unet_demo", "dataset"]),
    ("structures.au_small.cell_A", [20.0, 20.0], ["structures.au_small.cell_A"]),
    (
        "images.au_small_hrtem.aberrations.preset",
        "team99",
        ["images.au_small_hrtem.aberrations.preset"],
    ),
    (
        "images.au_small_hrtem.aberrations.coefficients",
        {"C10": 5.0},
        ["images.au_small_hrtem.aberrations.coefficients"],
    ),
    (
        "images.au_small_hrtem.plasmons",
        {"weight": {"distribution": "uniform", "low": 0.3, "high": 1.5}, "background": 1.0},
        ["images.au_small_hrtem.plasmons.weight"],
    ),
    ("images.au_small_hrtem.plasmons", KeyError, ["images.au_small_hrtem", "plasmons"]),
    (
        "images.au_small_hrtem.focal_spread.method",
        "partial",
        ["images.au_small_hrtem.focal_spread.method"],
    ),
    (
        "images.au_small_hrtem.detector.mtf",
        {"c1": 1.5, "c2": 0.5, "c3": 2.0},
        ["images.au_small_hrtem.detector.mtf"],
    ),
    (
        "images.au_small_hrtem.label.threshold",
        {"CdSe": 0.1},
        ["images.au_small_hrtem.label.threshold", "Au"],
    ),
    ("images.au_small_hrtem.label.lens", "focus", ["images.au_small_hrtem.label.lens"]),
    ("images.au_small_hrtem.label.grow_A", "1 A", ["images.au_small_hrtem.label.grow_A"]),
    ("structures.au_small.substrate", KeyError, ["structures.au_small", "substrate"]),
    ("structures.au_small.family", "flake", ["structures.au_small", "flake", "support"]),
    # these five passed validation once and failed only inside a job, or with a wrong message
    ("models.unet_demo.encoder", "resnet9000", ["models.unet_demo.encoder", "resnet9000"]),
    (
        "images.au_small_hrtem.crop_px",
        [4096, 4096],
        ["images.au_small_hrtem.crop_px", "larger than the detector image [256, 256]"],
    ),
    (
        "images.au_small_hrtem.focal_points",
        3,
        ["images.au_small_hrtem.focal_points", "does not divide draws_per_structure 4"],
    ),
    (
        "structures.au_small.radius_A",
        {
            "distribution": "mixture",
            "weights": [1, 2],
            "components": [{"distribution": "fixed", "value": 10.0}],
        },
        ["structures.au_small.radius_A", "2 weights for 1 components"],
    ),
    (
        "images.au_small_hrtem.dose_e_per_A2",
        {"distribution": "uniform", "low": "5.0e6", "high": 1.0e7},
        ["images.au_small_hrtem.dose_e_per_A2", "'5.0e6' is text, not a number", "5.0e+6"],
    ),
    # and more kinds
    ("models.unet_demo.learning_rate", "1e-3", ["models.unet_demo.learning_rate", "not a number"]),
    ("structures.au_small.material", "CdSe", ["structures.au_small.material", "FCC metal"]),
    (
        "structures.au_small.lattice",
        "wurtzite",
        ["structures.au_small.elements", "c_A", "structures.au_small.planar_defects.kinds"],
    ),
    (
        "structures.au_small.planar_defects.kinds",
        ["grain_boundary"],
        ["structures.au_small.planar_defects.kinds"],
    ),
    ("structures.au_small.shape", "layered", ["structures.au_small.shape", "layered"]),
    ("structures.au_small.particles", {"count": 0}, ["structures.au_small.particles.count"]),
    ("structures.au_small.embedding_fraction", 1.5, ["structures.au_small.embedding_fraction"]),
    (
        "structures.au_small.radius_A",
        {"distribution": "loguniform", "low": 0.0, "high": 12.0},
        ["structures.au_small.radius_A", "loguniform needs low > 0"],
    ),
    (
        "structures.au_small.radius_A",
        {"distribution": "normal", "mean": 12.0, "sd": 1.0, "min": 14.0, "max": 10.0},
        ["structures.au_small.radius_A", "min 14.0 > max 10.0"],
    ),
    ("seed", -1, ["seed"]),
    (
        "simulations.au_small_fp.debye_waller_sigma_A",
        {"Au": 0.1},
        ["simulations.au_small_fp.debye_waller_sigma_A", "['C']"],
    ),
    (
        "images.au_small_hrtem.defocus_A",
        {"distribution": "uniform", "low": 100.0, "high": -100.0},
        ["images.au_small_hrtem.defocus_A", "low 100.0 > high -100.0"],
    ),
    (
        "images.au_small_hrtem.focal_spread.sigma_A",
        {"distribution": "normal", "mean": 10.0, "sd": 5.0},
        ["images.au_small_hrtem.focal_spread.sigma_A", "must lie in [0.0, inf]"],
    ),
    (
        "images.au_small_hrtem.detector.pixel_size_A",
        0,
        ["images.au_small_hrtem.detector.pixel_size_A"],
    ),
    ("datasets.au_small_demo.images", ["nope"], ["datasets.au_small_demo.images", "nope"]),
    ("models.unet_demo.encoder_depth", 6, ["models.unet_demo.encoder_depth"]),
    ("models.unet_demo.seeds", [], ["models.unet_demo.seeds"]),
    (
        "real_sets",
        {"real": {"format": "pairs", "micrographs": "m", "masks": "k", "models": ["nope"]}},
        ["real_sets.real.models", "nope"],
    ),
    ("real_sets", {"real": {"format": "hdf5"}}, ["real_sets.real", "path"]),
    # the detector as distributions: the crop must fit at the largest pixel size
    (
        "images.au_small_hrtem.detector.pixel_size_A",
        {"distribution": "uniform", "low": 0.3, "high": 0.5},
        [
            "images.au_small_hrtem.crop_px",
            "larger than the detector image [205, 205]",
            "at the largest pixel_size_A 0.5",
        ],
    ),
    (
        "images.au_small_hrtem.detector.pixel_size_A",
        {"distribution": "normal", "mean": 0.4, "sd": 0.02, "min": 0.3},
        ["images.au_small_hrtem.detector.pixel_size_A", "needs a largest value"],
    ),
    (
        "images.au_small_hrtem.detector.pixel_size_A",
        {"distribution": "sequence", "values": [0.3, 0.4]},
        ["images.au_small_hrtem.detector.pixel_size_A", "`sequence`"],
    ),
    (
        "images.au_small_hrtem.detector.mtf",
        {"c1": {"distribution": "uniform", "low": 0.5, "high": 1.0}, "c2": 0.5, "c3": 2.0},
        ["images.au_small_hrtem.detector.mtf.c1", "[0, 1)"],
    ),
    (
        "images.au_small_hrtem.detector.mtf",
        {"c1": 0.1, "c2": {"distribution": "uniform", "low": 0.0, "high": 0.5}, "c3": 2.0},
        ["images.au_small_hrtem.detector.mtf.c2", "must be > 0"],
    ),
    (
        "images.au_small_hrtem.detector.blur_sigma_px",
        {"distribution": "normal", "mean": 0.5, "sd": 0.2},
        ["images.au_small_hrtem.detector.blur_sigma_px", "must lie in [0.0, inf]"],
    ),
    # photometric augmentation
    (
        "models.unet_demo.augment_photometric",
        {"contrast": 1.2},
        ["models.unet_demo.augment_photometric", "unknown key", "'contrast'"],
    ),
    (
        "models.unet_demo.augment_photometric",
        "on",
        ["models.unet_demo.augment_photometric", "not of type 'object', 'null'"],
    ),
    (
        "models.unet_demo.augment_photometric",
        {"gamma": {"distribution": "uniform", "low": -0.5, "high": 2.0}},
        ["models.unet_demo.augment_photometric.gamma", "must be > 0"],
    ),
    (
        "models.unet_demo.augment_photometric",
        {"contrast_factor": 0.0},
        ["models.unet_demo.augment_photometric.contrast_factor", "must be > 0"],
    ),
    (
        "models.unet_demo.augment_photometric",
        {"noise_relative_sd": {"distribution": "normal", "mean": 0.1, "sd": 0.1}},
        ["models.unet_demo.augment_photometric.noise_relative_sd", "must lie in [0.0, inf]"],
    ),
    (
        "models.unet_demo.augment_photometric",
        {"brightness_offset": {"distribution": "sequence", "values": [-0.1, 0.1]}},
        ["models.unet_demo.augment_photometric.brightness_offset", "`sequence`"],
    ),
    (
        "models.unet_demo.augment_photometric",
        {"gamma": {"distribution": "gamma", "k": 2}},
        ["models.unet_demo.augment_photometric.gamma"],
    ),
    # the tasks beyond particle masks (Madsen 2018, Larsen 2023)
    ("models.unet_demo.task", "columns", ["models.unet_demo.task", "targets.columns"]),
    ("models.unet_demo.task", "exit_waves", ["models.unet_demo.task"]),
    ("models.unet_demo.architecture", "MSDNet", ["models.unet_demo.decoder_channels", "MSDNet"]),
    (
        "images.au_small_hrtem.targets",
        {"columns": {"classes": {"kind": "height", "names": ["Au"]}}},
        ["images.au_small_hrtem.targets.columns.classes.names", "integers"],
    ),
    (
        "images.au_small_hrtem.targets",
        {"columns": {"classes": {"kind": "element", "names": [1, 2]}}},
        ["images.au_small_hrtem.targets.columns.classes.names", "names"],
    ),
    (
        "images.au_small_hrtem.targets",
        {"exit_wave": {"low_pass_sigma_A": -1}},
        ["images.au_small_hrtem.targets.exit_wave.low_pass_sigma_A"],
    ),
    ("images.au_small_hrtem.focal_series", {"offsets_A": []}, ["focal_series.offsets_A"]),
    # a oneOf names what is wrong with the form meant, not that the value is not null
    ("images.au_small_hrtem.crop_px", [0, 0], ["crop_px.0: 0 is less than the minimum of 8"]),
    ("images.au_small_hrtem.crop_px", [64, 64, 64], ["crop_px: [64, 64, 64] is too long"]),
    (
        "images.au_small_hrtem.dose_e_per_A2",
        {"distribution": "uniform", "low": "x", "high": 3},
        ["dose_e_per_A2.low: 'x' is not of type 'number'"],
    ),
    (
        "real_sets.real_au_tiles.pixel_size_A",
        0,
        ["real_au_tiles.pixel_size_A: 0 is less than or equal to the minimum of 0"],
    ),
    # a label width calibrated against a real set the config does not have
    (
        "images.au_small_hrtem.label.grow_A",
        {"calibrate": "nowhere"},
        ["label.grow_A.calibrate: 'nowhere' is not a block of 'real_sets'", "real_au_tiles"],
    ),
    (
        "images.au_small_hrtem.label.grow_A",
        {"calibrate_against": "real_au_tiles"},
        ["label.grow_A"],
    ),
    # an image blur calibrated against a real set the config does not have
    (
        "images.au_small_hrtem.blur_A",
        {"calibrate": "nowhere"},
        ["blur_A.calibrate: 'nowhere' is not a block of 'real_sets'", "real_au_tiles"],
    ),
    ("images.au_small_hrtem.blur_A", {"calibrate": 2.0}, ["blur_A"]),
    # a dose calibrated against a real set the config does not have, without the dose it scales,
    # or around a dose that is no dose
    (
        "images.au_small_hrtem.dose_e_per_A2",
        {"calibrate": "nowhere", "around": 100.0},
        ["dose_e_per_A2.calibrate: 'nowhere' is not a block of 'real_sets'", "real_au_tiles"],
    ),
    ("images.au_small_hrtem.dose_e_per_A2", {"calibrate": "real_au_tiles"}, ["dose_e_per_A2"]),
    (
        "images.au_small_hrtem.dose_e_per_A2",
        {"calibrate": "real_au_tiles", "around": {"distribution": "uniform", "low": -5, "high": 5}},
        ["dose_e_per_A2.around"],
    ),
]
# The kinds that once reached a job: through Snakemake, none may start one.
ONCE_REACHED_A_JOB = MALFORMED[22:27]
# A count too large to plan: stopped from the config alone, before Snakemake builds the DAG.
TOO_MANY_JOBS = [
    (
        "structures.au_small.count",
        10**9,
        ["3,000,000,010 jobs", "above max_jobs = 200,000", "structures.au_small.count -> 1,0"],
    )
]
MALFORMED += TOO_MANY_JOBS


@pytest.mark.parametrize("path, value, words", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_config_names_the_key(default_config, path, value, words):
    assert len(MALFORMED) >= 30
    bad = _set(copy.deepcopy(default_config), path, value)
    with pytest.raises(ConfigError) as error:
        validate(bad, SCHEMA)
    for word in words:
        assert word in str(error.value)


@pytest.mark.workflow
@pytest.mark.parametrize(
    "path, value, words",
    MALFORMED[:5] + ONCE_REACHED_A_JOB + TOO_MANY_JOBS,
    ids=[m[0] for m in MALFORMED[:5] + ONCE_REACHED_A_JOB + TOO_MANY_JOBS],
)
def test_snakemake_stops_before_any_job(default_config, workflow_copy, path, value, words):
    flow = workflow_copy(_set(copy.deepcopy(default_config), path, value))
    result = flow.snakemake(check=False)
    assert result.returncode != 0
    for word in words:
        assert word in result.stderr + result.stdout
    assert 'File "' not in result.stderr, result.stderr  # the message, not a traceback
    assert not (flow.path / "results").exists(), "a job ran although the config is invalid"


def test_drawn_detector_and_photometric_augmentation_validate(default_config):
    config = copy.deepcopy(default_config)
    image_block, model_block = config["images"]["au_small_hrtem"], config["models"]["unet_demo"]
    image_block["detector"] = {
        "pixel_size_A": {"distribution": "uniform", "low": 0.36, "high": 0.44},  # 233 px: > 224
        "mtf": {"c1": {"distribution": "uniform", "low": 0.0, "high": 0.2}, "c2": 0.5, "c3": 2.5},
        "blur_sigma_px": {"distribution": "uniform", "low": 0.0, "high": 0.5},
        "median_filter_px": 3,
    }
    model_block["augment_photometric"] = {
        "gamma": {"distribution": "loguniform", "low": 0.7, "high": 1.4}
    }
    validate(config, SCHEMA)
    assert model_block["augment_photometric"] == {
        "gamma": {"distribution": "loguniform", "low": 0.7, "high": 1.4},
        "contrast_factor": None,  # the schema's defaults: off
        "brightness_offset": None,
        "noise_relative_sd": None,
    }
    default = validate(copy.deepcopy(default_config), SCHEMA)
    assert default["models"]["unet_demo"]["augment_photometric"] is None  # off by default


@pytest.mark.parametrize(
    "spec, median",
    [
        (0.2, 0.2),
        ({"distribution": "fixed", "value": 0.3}, 0.3),
        ({"distribution": "uniform", "low": 0.18, "high": 0.26}, 0.22),
        ({"distribution": "loguniform", "low": 0.1, "high": 0.4}, 0.2),
        ({"distribution": "normal", "mean": 0.2, "sd": 0.02, "min": 0.16, "max": 0.24}, 0.2),
        ({"distribution": "choice", "values": [0.2, 0.4, 0.5]}, 0.4),
        ({"distribution": "choice", "values": [0.2, 0.4]}, 0.3),  # numpy.median's midpoint
        ({"distribution": "sequence", "values": [1.0, 2.0, 9.0], "jitter_sd": 0.0}, 2.0),
        (  # CDF 1/2 between the components: the midpoint of the gap
            {
                "distribution": "mixture",
                "weights": [1, 1],
                "components": [
                    {"distribution": "uniform", "low": 0.0, "high": 1.0},
                    {"distribution": "uniform", "low": 2.0, "high": 3.0},
                ],
            },
            1.5,
        ),
        (
            {
                "distribution": "mixture",
                "weights": [3, 1],
                "components": [0.2, {"distribution": "normal", "mean": 0.3, "sd": 0.05}],
            },
            0.2,
        ),
    ],
)
def test_nominal_is_the_median(spec, median):
    assert nominal(spec) == pytest.approx(median, rel=1e-12)
    low, high = support(spec)
    assert low <= nominal(spec) <= high


@pytest.mark.parametrize(
    "spec",
    [
        {"distribution": "normal", "mean": 0.2, "sd": 0.05, "min": 0.17},  # skewed by the cut
        {"distribution": "sequence", "values": [1.0, 2.0, 9.0], "jitter_sd": 1.0},
        {
            "distribution": "mixture",
            "weights": [1, 2],
            "components": [
                {"distribution": "loguniform", "low": 0.1, "high": 0.3},
                {"distribution": "normal", "mean": 0.3, "sd": 0.05},
            ],
        },
    ],
)
def test_nominal_matches_the_median_of_draws(spec):
    rng = np.random.default_rng(0)
    draws = [sample(spec, rng, index=i) for i in range(20000)]
    spread = np.subtract(*np.percentile(draws, [75, 25]))
    assert abs(nominal(spec) - np.median(draws)) < 0.03 * spread


def test_a_column_model_is_not_scored_on_real_sets_and_draws_its_targets_on_the_fly(
    default_config,
):
    """Real sets score particle masks; a columns model keeps its best column F1 and draws on the
    fly only with the column targets its dataset holds; an exit-wave model has no F1."""
    config = copy.deepcopy(default_config)
    config["images"]["au_small_hrtem"]["targets"] = {
        "columns": {"classes": {"kind": "element", "names": ["Au"]}}
    }
    model = config["models"]["unet_demo"]
    model.update(task="columns", checkpoint="best_val_f1")
    for real_set in config.get("real_sets", {}).values():
        real_set["models"] = ["unet_demo"]
    if config.get("real_sets"):
        with pytest.raises(ConfigError, match="real sets score particle masks"):
            validate(copy.deepcopy(config), SCHEMA)
    for real_set in config.get("real_sets", {}).values():
        del real_set["models"]
    validated = validate(copy.deepcopy(config), SCHEMA)  # by default: segmentation models only
    assert all(r["models"] == [] for r in validated.get("real_sets", {}).values())
    model["on_the_fly"] = {"images": "au_small_hrtem"}
    validate(copy.deepcopy(config), SCHEMA)  # the dataset's own block: its targets
    config["images"]["fly_plain"] = copy.deepcopy(config["images"]["au_small_hrtem"])
    config["images"]["fly_plain"]["targets"] = {}
    model["on_the_fly"] = {"images": "fly_plain"}
    with pytest.raises(ConfigError, match=r"fly_plain.targets.columns must be that of the dat"):
        validate(copy.deepcopy(config), SCHEMA)
    model.update(task="exit_wave", on_the_fly=None)
    config["images"]["au_small_hrtem"]["targets"] = {"exit_wave": {"low_pass_sigma_A": 0.15}}
    with pytest.raises(ConfigError, match="models.unet_demo.checkpoint: best_val_f1 scores"):
        validate(copy.deepcopy(config), SCHEMA)


def test_planned_jobs_count_what_rule_all_reaches(default_config):
    """The demo's 82 jobs, per rule, from its blocks; a block no dataset uses adds none."""
    from hrtem_wf.config import planned_jobs

    expected = DEMO_JOBS
    assert planned_jobs(default_config) == expected
    config = copy.deepcopy(default_config)
    config["images"]["unused"] = copy.deepcopy(config["images"]["au_small_hrtem"])
    config["structures"]["au_small"]["count"] = 5
    assert planned_jobs(validate(config, SCHEMA)) == {
        **expected,
        **dict.fromkeys(("structures", "simulations", "images"), 5),
    }


def test_max_jobs_is_the_ceiling(default_config):
    """A huge count passes where max_jobs admits it: the check lists nothing, so it costs no
    memory either way."""
    config = _set(copy.deepcopy(default_config), "structures.au_small.count", 10**9)
    config["max_jobs"] = 4 * 10**9
    assert validate(config, SCHEMA)["structures"]["au_small"]["count"] == 10**9


def test_one_calibration_measures_every_calibrated_value_against_one_real_set(default_config):
    config = copy.deepcopy(default_config)
    config["real_sets"]["other"] = copy.deepcopy(config["real_sets"]["real_au_tiles"])
    images = config["images"]["au_small_hrtem"]
    images["label"]["grow_A"] = {"calibrate": "real_au_tiles"}
    images["dose_e_per_A2"] = {"calibrate": "other", "around": images["dose_e_per_A2"]}
    with pytest.raises(ConfigError, match="label.grow_A, dose_e_per_A2 calibrate against"):
        validate(config, SCHEMA)
    images["dose_e_per_A2"]["calibrate"] = "real_au_tiles"
    validate(config, SCHEMA)
