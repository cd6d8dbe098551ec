"""The study's datasets by name (config/recipes/study.yaml): sizes as in the SI, a full-size dry
run with the exact job set, and the `scale` and `device` overrides."""

from __future__ import annotations

import copy

import pytest

from conftest import SCHEMA, job_counts, load_config
from hrtem_wf.config import ConfigError, check_references, scaled_count, validate

RECIPE = "config/recipes/study.yaml"

# SI section 1.1: (structures, simulations, images). The SI counts a simulation per defocus (the
# defocus was applied in Prismatic) for Baseline / Thermal and their derived sets, and one per
# structure for the later sets; here that is structures x focal points, resp. structures.
SI_SIZES = {
    "baseline": (512, 2048, 10240),
    "thermal": (512, 2048, 10240),
    "dose_variation": (512, 2048, 14336),
    "simulation_effects_plasmonic": (512, 2048, 10240),
    "simulation_effects_aberrations": (512, 2048, 10240),
    "simulation_effects_all": (512, 2048, 10240),
    "varying_substrate": (1024, 1024, 11264),
    "smaller_nps": (512, 512, 11264),
    "optimal_au": (2000, 2000, 8000),
    "optimal_cdse": (2000, 2000, 8000),
    "optimal_mixed": (4000, 4000, 16000),
}
PER_DEFOCUS_SIMULATIONS = {
    "baseline",
    "thermal",
    "dose_variation",
    "simulation_effects_plasmonic",
    "simulation_effects_aberrations",
    "simulation_effects_all",
}


@pytest.fixture(scope="module")
def recipe():
    return validate(load_config(RECIPE), SCHEMA)


def dataset_sizes(config: dict, dataset: str) -> tuple[int, int, int, int]:
    """(structures, exit-wave stores, focal conditions, images) of a dataset."""
    structures, stores, focal, images = set(), set(), 0, 0
    for image_block in config["datasets"][dataset]["images"]:
        block = config["images"][image_block]
        simulation = block["simulations"]
        parent = config["simulations"][simulation]["structures"]
        n = scaled_count(config, parent)
        structures.add(parent)
        stores.add(simulation)
        focal += n * int(block.get("focal_points") or block["draws_per_structure"])
        images += n * block["draws_per_structure"]
    n_structures = sum(scaled_count(config, s) for s in structures)
    n_stores = sum(scaled_count(config, config["simulations"][m]["structures"]) for m in stores)
    return n_structures, n_stores, focal, images


@pytest.mark.parametrize("dataset", sorted(SI_SIZES))
def test_recipe_sizes_match_the_si(recipe, dataset):
    structures, stores, focal, images = dataset_sizes(recipe, dataset)
    si_structures, si_simulations, si_images = SI_SIZES[dataset]
    assert structures == si_structures
    assert (focal if dataset in PER_DEFOCUS_SIMULATIONS else stores) == si_simulations
    assert images == si_images


def test_recipes_share_structures_and_simulations_as_the_study(recipe):
    parents = {
        name: recipe["simulations"][block["simulations"]]["structures"]
        for name, block in recipe["images"].items()
    }
    for image_block in (
        "baseline_img",
        "thermal_img",
        "dose_variation_img",
        "plasmonic_img",
        "aberrations_img",
        "all_effects_img",
    ):
        assert parents[image_block] == "baseline_au"
    for image_block in (
        "thermal_img",
        "dose_variation_img",
        "plasmonic_img",
        "aberrations_img",
        "all_effects_img",
    ):
        assert recipe["images"][image_block]["simulations"] == "thermal_sim"
    assert set(recipe["datasets"]) == set(SI_SIZES)


@pytest.mark.workflow
def test_study_recipe_dry_run_job_set(recipe, workflow_copy):
    flow = workflow_copy(copy.deepcopy(recipe))
    result = flow.snakemake("-n", "--quiet", "rules")
    counts = job_counts(result.stdout)
    n_structures = sum(b["count"] for b in recipe["structures"].values())
    n_simulations = sum(
        recipe["structures"][b["structures"]]["count"] for b in recipe["simulations"].values()
    )
    n_images = sum(
        recipe["structures"][recipe["simulations"][b["simulations"]]["structures"]]["count"]
        for b in recipe["images"].values()
    )
    n_models = sum(len(b["seeds"]) for b in recipe["models"].values())
    assert counts["structures"] == n_structures == 6048
    assert counts["simulations"] == n_simulations
    assert counts["images"] == n_images
    assert counts["datasets"] == len(recipe["datasets"]) == 11
    assert counts["models"] == counts["evaluations"] == n_models == 55


@pytest.mark.workflow
def test_scale_device_and_smoke_overrides(recipe, workflow_copy):
    """`scale` keeps the first structures of every block; `smoke` (the documented small run of
    every recipe) at most 3 per block and one seed per model, on the CPU with `device`."""
    scaled = validate({**copy.deepcopy(recipe), "scale": 0.01, "device": "cpu"}, SCHEMA)
    per_block = {name: scaled_count(scaled, name) for name in recipe["structures"]}
    assert per_block == {
        "baseline_au": 5,
        "varying_substrate_au": 10,
        "small_au_1nm": 3,
        "small_au_2p5nm": 3,
        "optimal_au": 20,
        "optimal_cdse": 20,
    }
    assert all(
        b["device"] == "cpu"
        for section in ("simulations", "images", "models")
        for b in scaled[section].values()
    )
    flow = workflow_copy(copy.deepcopy(recipe))
    result = flow.snakemake("-n", "--quiet", "rules", "--config", "device=cpu", "smoke=True")
    counts = job_counts(result.stdout)
    assert counts["structures"] == 3 * len(recipe["structures"]) == 18
    assert counts["simulations"] == 3 * len(recipe["simulations"]) == 21
    assert counts["images"] == 3 * len(recipe["images"]) == 33
    assert counts["datasets"] == 11 and counts["models"] == counts["evaluations"] == 11


def test_smoke_shrinks_cost_not_structures(recipe):
    smoked = validate({**load_config(RECIPE), "smoke": True}, SCHEMA)
    assert smoked["structures"] == recipe["structures"]
    for name, block in smoked["simulations"].items():
        full = recipe["simulations"][name]
        assert block["frozen_phonons"] == min(full["frozen_phonons"], 2)
        assert block["potential_sampling_A"] == 0.2 == block["exit_wave_sampling_A"]
        assert {
            k: v for k, v in block.items() if k not in ("frozen_phonons", "potential_sampling_A")
        } == {k: v for k, v in full.items() if k not in ("frozen_phonons", "potential_sampling_A")}
    for name, block in smoked["images"].items():
        full = recipe["images"][name]
        assert block["focal_spread"]["samples"] == min(full["focal_spread"]["samples"], 5)
        assert block["crop_px"] == [256, 256]
        for key in (
            "defocus_A",
            "dose_e_per_A2",
            "aberrations",
            "plasmons",
            "label",
            "draws_per_structure",
        ):
            assert block[key] == full[key]
    for block in smoked["models"].values():
        assert block["seeds"] == [0] and block["epochs"] == 2
    check_references(smoked)  # crops still fit every network
    with pytest.raises(ConfigError, match="smoke"):
        validate({**load_config(RECIPE), "smoke": "yes"}, SCHEMA)


@pytest.mark.workflow
def test_other_families_recipe_dry_run(workflow_copy):
    """config/recipes/other_families.yaml (Madsen 2018 particles, Larsen 2023 MoS2 flakes, and
    their column and exit-wave tasks)."""
    recipe = validate(load_config("config/recipes/other_families.yaml"), SCHEMA)
    flow = workflow_copy(copy.deepcopy(recipe))
    counts = job_counts(flow.snakemake("-n", "--quiet", "rules", "--config", "scale=0.02").stdout)
    assert counts["structures"] == counts["simulations"] == 30
    # 3 image blocks of Madsen's particles, 3 of the free MoS2 flakes, 1 of those on graphene
    assert counts["images"] == 70
    # 6 networks on the stored datasets; 2 (the GPU recipes) drawing images and targets anew
    assert counts["datasets"] == 6 and counts["models"] == 8
    for name in ("madsen_columns_fly", "mos2_exit_wave_fly"):
        fly = recipe["models"][name]
        assert fly["on_the_fly"]["images_per_structure"] == 8 and fly["device"] == "gpu"


def test_other_families_build(tmp_path):
    """One structure of each block of the recipe, built for real."""
    from hrtem_wf.structures import build_structure

    recipe = validate(load_config("config/recipes/other_families.yaml"), SCHEMA)
    for name, block in recipe["structures"].items():
        atoms = build_structure(block, 1)
        assert (atoms.arrays["particle"] == 1).sum() > 50, name


@pytest.mark.workflow
def test_on_the_fly_overlay_trains_two_networks_on_one_simulation_budget(workflow_copy):
    """config/recipes/on_the_fly_au.yaml on top of conventional_au.yaml, merged as Snakemake
    merges two --configfile: one network on the frozen dataset, one drawing on the fly, alike
    but for `on_the_fly`, from one set of structures and exit waves."""
    import yaml
    from snakemake.utils import update_config

    from conftest import ROOT

    merged = yaml.safe_load((ROOT / "config/recipes/conventional_au.yaml").read_text())
    update_config(merged, yaml.safe_load((ROOT / "config/recipes/on_the_fly_au.yaml").read_text()))
    recipe = validate(merged, SCHEMA)
    frozen, fly = recipe["models"]["unet_conventional"], recipe["models"]["unet_conventional_fly"]
    assert fly["on_the_fly"]["images"] in recipe["datasets"][fly["dataset"]]["images"]
    assert {**fly, "on_the_fly": None} == frozen and frozen["seeds"] == [0]
    recipe["real_sets"] = {}  # the real micrographs live in ../shared, beside the checkout
    flow = workflow_copy(copy.deepcopy(recipe))
    counts = job_counts(flow.snakemake("-n", "--quiet", "rules").stdout)
    assert counts == {
        "structures": 64,
        "simulations": 64,
        "images": 64,
        "datasets": 1,
        "models": 2,
        "evaluations": 2,
        "report": 1,
        "all": 1,
        "total": 199,
    }
