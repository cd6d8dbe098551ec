"""Config validation: the default and tiny configs pass; malformed ones stop before any job
with a message that names the key."""

from __future__ import annotations

import copy

import pytest

from conftest import SCHEMA
from hrtem_wf.config import ConfigError, validate


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
    ("images.au_small_hrtem.detector.median_filter_px", 0,
     ["images.au_small_hrtem.detector.median_filter_px"]),
    ("images.au_small_hrtem.simulations", "no_such_sim", ["images.au_small_hrtem.simulations",
                                                           "no_such_sim"]),
    ("datasets.au_small_demo.split.train", 0.9, ["datasets.au_small_demo.split"]),
    ("models.unet_demo.decoder_channels", [64, 32], ["models.unet_demo.decoder_channels"]),
    ("models.unet_demo.architecture", "FPN", ["models.unet_demo.decoder_channels", "FPN"]),
    ("models.unet_demo.architecture", "Unet3D", ["models.unet_demo.architecture"]),
    ("models.unet_demo.checkpoint", "best", ["models.unet_demo.checkpoint"]),
    ("images.au_small_hrtem.dose_e_per_A2", {"distribution": "uniform", "low": -5, "high": 10},
     ["images.au_small_hrtem.dose_e_per_A2"]),
    ("structures.au_small.radius_A", {"distribution": "gamma", "k": 2},
     ["structures.au_small.radius_A"]),
    ("models.unet_demo.dataset", KeyError, ["models.unet_demo", "dataset"]),
    ("structures.au_small.cell_A", [20.0, 20.0], ["structures.au_small.cell_A"]),
    ("images.au_small_hrtem.aberrations.preset", "team99", ["images.au_small_hrtem.aberrations.preset"]),
    ("images.au_small_hrtem.aberrations.coefficients", {"C10": 5.0},
     ["images.au_small_hrtem.aberrations.coefficients"]),
    ("images.au_small_hrtem.plasmons", {"weight": {"distribution": "uniform", "low": 0.3, "high": 1.5},
                                        "background": 1.0}, ["images.au_small_hrtem.plasmons.weight"]),
    ("images.au_small_hrtem.plasmons", KeyError, ["images.au_small_hrtem", "plasmons"]),
    ("images.au_small_hrtem.focal_spread.method", "partial", ["images.au_small_hrtem.focal_spread.method"]),
    ("images.au_small_hrtem.detector.mtf", {"c1": 1.5, "c2": 0.5, "c3": 2.0},
     ["images.au_small_hrtem.detector.mtf"]),
    ("images.au_small_hrtem.label.threshold", {"CdSe": 0.1}, ["images.au_small_hrtem.label.threshold", "Au"]),
    ("structures.au_small.substrate", KeyError, ["structures.au_small", "substrate"]),
    ("structures.au_small.family", "flake", ["structures.au_small", "flake", "support"]),
]


@pytest.mark.parametrize("path, value, words", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_config_names_the_key(default_config, path, value, words):
    bad = _set(copy.deepcopy(default_config), path, value)
    with pytest.raises(ConfigError) as error:
        validate(bad, SCHEMA)
    for word in words:
        assert word in str(error.value)


@pytest.mark.workflow
@pytest.mark.parametrize("path, value, words", MALFORMED[:5], ids=[m[0] for m in MALFORMED[:5]])
def test_snakemake_stops_before_any_job(default_config, workflow_copy, path, value, words):
    flow = workflow_copy(_set(copy.deepcopy(default_config), path, value))
    result = flow.snakemake(check=False)
    assert result.returncode != 0
    for word in words:
        assert word in result.stderr + result.stdout
    assert not (flow.path / "results").exists(), "a job ran although the config is invalid"
