"""Config validation and the block graph (structures -> simulations -> images -> datasets -> models).

`validate` runs before Snakemake builds any job: the JSON schema checks keys, types and ranges;
`check_references` checks what a schema cannot (parents exist, splits sum to 1, shapes fit the
network). Every message names the offending key as a dotted path.
"""

from __future__ import annotations

import math
from pathlib import Path

import yaml
from jsonschema import Draft202012Validator

from hrtem_wf.sampling import support

PARENT_KEY = {"simulations": "structures", "images": "simulations", "datasets": "images",
              "models": "dataset"}
PARENT_SECTION = {"simulations": "structures", "images": "simulations", "datasets": "images",
                  "models": "datasets"}
SUBSTRATE_ELEMENTS = {"amorphous_carbon": "C"}
#: smp architectures whose decoder takes one width per encoder stage (hrtem_wf.training.model
#: .takes_decoder_channels; named here so validation does not import torch).
PER_STAGE_DECODER_ARCHITECTURES = ("MAnet", "Unet", "UnetPlusPlus")


def structure_elements(block: dict) -> set[str]:
    """Chemical elements of a structures block's scenes (particles and substrate)."""
    if block.get("family") == "flake":
        from hrtem_wf.structures.flake import flake_elements

        return flake_elements(block)
    if block.get("lattice") == "cif":
        from hrtem_wf.structures.cif import elements_of

        particle = set(elements_of(block["cif"]))
    else:
        particle = set(block.get("elements") or [block["material"]])
    return particle | {SUBSTRATE_ELEMENTS[block["substrate"]["material"]]}


class ConfigError(ValueError):
    """A config that must not run; the message names the key."""


def _dotted(path) -> str:
    return ".".join(str(p) for p in path) or "<top level>"


def load_schema(path: str | Path) -> dict:
    return yaml.safe_load(Path(path).read_text())


def validate(config: dict, schema_path: str | Path) -> dict:
    """Raise ConfigError listing every problem, each with the key path; return the config."""
    validator = Draft202012Validator(load_schema(schema_path))
    errors = sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        lines = [f"  {_dotted(e.absolute_path)}: {_message(e)}" for e in errors]
        raise ConfigError("invalid config:\n" + "\n".join(lines))
    check_references(config)
    apply_device_override(config)
    if config.get("smoke"):
        apply_smoke(config)
    return config


def apply_device_override(config: dict) -> dict:
    """A top-level `device` (e.g. `--config device=cpu`) replaces every block's device: run a
    GPU recipe on a laptop, or a CPU config on GPU nodes."""
    device = config.get("device")
    if device is not None:
        for section in ("simulations", "images", "models"):
            for block in config[section].values():
                block["device"] = device
    return config


# `smoke: true`: the cheapest run that still executes every job of a config through the real
# code (same structures, multislice, image effects, training and report), for trying a GPU-days
# recipe on a laptop before submitting it.
SMOKE_STRUCTURES = 3  # per structures block: one each for training, validation and test
SMOKE_FROZEN_PHONONS = 2
SMOKE_MIN_POTENTIAL_SAMPLING_A = 0.2  # 4x fewer grid points than the study's 0.1
SMOKE_FOCAL_SPREAD_SAMPLES = 5
SMOKE_CROP_PX = 256
SMOKE_EPOCHS = 2


def apply_smoke(config: dict) -> dict:
    """Shrink every block to smoke size in place: phonons <= 2, potential sampling >= 0.2 A (never
    coarser than the stored exit waves), focal-spread samples <= 5, crops <= 256 px, the first
    model seed only, 2 epochs; and (`scaled_count`) at most 3 structures per structures block."""
    for block in config["simulations"].values():
        block["frozen_phonons"] = min(block["frozen_phonons"], SMOKE_FROZEN_PHONONS)
        block["potential_sampling_A"] = max(block["potential_sampling_A"],
                                            min(SMOKE_MIN_POTENTIAL_SAMPLING_A,
                                                block["exit_wave_sampling_A"]))
    for block in config["images"].values():
        block["focal_spread"]["samples"] = min(block["focal_spread"]["samples"],
                                               SMOKE_FOCAL_SPREAD_SAMPLES)
        if block["crop_px"] is not None:
            block["crop_px"] = [min(n, SMOKE_CROP_PX) for n in block["crop_px"]]
    for block in config["models"].values():
        block["epochs"] = min(block["epochs"], SMOKE_EPOCHS)
        block["seeds"] = block["seeds"][:1]
    return config


def _message(error) -> str:
    if error.validator == "additionalProperties":
        return f"unknown key ({error.message})"
    if error.validator == "oneOf" and error.context:
        # A distribution that matches no form: show the closest form's complaint.
        best = min(error.context, key=lambda e: len(e.message))
        return f"{best.message} (expected a number or a distribution mapping)"
    return error.message


def check_references(config: dict) -> None:
    problems = []
    for section, parent_key in PARENT_KEY.items():
        parent_section = PARENT_SECTION[section]
        for name, block in config[section].items():
            parents = block[parent_key]
            for parent in parents if isinstance(parents, list) else [parents]:
                if parent not in config[parent_section]:
                    problems.append(f"{section}.{name}.{parent_key}: {parent!r} is not a block of "
                                    f"'{parent_section}' (have: {sorted(config[parent_section])})")
    problems += _check_ranges(config)
    if problems:
        raise ConfigError("invalid config:\n" + "\n".join(f"  {p}" for p in problems))


def _check_ranges(config: dict) -> list[str]:
    problems = []
    for name, block in config["structures"].items():
        if block.get("family") == "flake":
            continue  # checked by hrtem_wf.structures.flake when the block is built
        problems += _check_distribution(f"structures.{name}.substrate.thickness_A",
                                        block["substrate"]["thickness_A"], positive=True)
        if "radius_A" not in block:
            if block.get("shape", "sphere") == "sphere":
                problems.append(f"structures.{name}.radius_A: required for spherical particles")
            continue
        problems += _check_distribution(f"structures.{name}.radius_A", block["radius_A"],
                                        positive=True)
        r_max = support(block["radius_A"])[1]
        needed = 2 * (r_max + block["edge_margin_A"])
        if math.isfinite(r_max) and min(block["cell_A"]) < needed:
            problems.append(f"structures.{name}.cell_A: {block['cell_A']} is smaller than "
                            f"2 x (largest radius {r_max} + edge_margin_A) = {needed}")
    for name, block in config["simulations"].items():
        parent = config["structures"].get(block["structures"])
        if parent is not None:
            missing = sorted(structure_elements(parent) - set(block["debye_waller_sigma_A"]))
            if missing:
                problems.append(f"simulations.{name}.debye_waller_sigma_A: no entry for {missing}")
    for name, block in config["images"].items():
        key = f"images.{name}"
        problems += _check_distribution(f"{key}.defocus_A", block["defocus_A"])
        problems += _check_distribution(f"{key}.dose_e_per_A2", block["dose_e_per_A2"], positive=True)
        problems += _check_distribution(f"{key}.focal_spread.sigma_A",
                                        block["focal_spread"]["sigma_A"], nonnegative=True)
        aberrations = block["aberrations"]
        for symbol, spec in (aberrations.get("coefficients") or {}).items():
            problems += _check_distribution(f"{key}.aberrations.coefficients.{symbol}", spec)
        for extra in ("magnitude_scale", "rotation_shift_rad"):
            if extra in aberrations:
                problems += _check_distribution(f"{key}.aberrations.{extra}", aberrations[extra])
        if block["plasmons"] is not None:
            problems += _check_distribution(f"{key}.plasmons.weight", block["plasmons"]["weight"],
                                            bounds=(0.0, 1.0))
            problems += _check_distribution(f"{key}.plasmons.background",
                                            block["plasmons"]["background"], nonnegative=True)
        threshold = block["label"]["threshold"]
        if isinstance(threshold, dict) and block["simulations"] in config["simulations"]:
            material = config["structures"].get(structures_of(config, "images", name), {}).get("material")
            if material is not None and material not in threshold:
                problems.append(f"{key}.label.threshold: no entry for the particles' material "
                                f"{material!r} (has {sorted(threshold)})")
    for name, block in config["datasets"].items():
        total = sum(block["split"].values())
        if abs(total - 1) > 1e-6:
            problems.append(f"datasets.{name}.split: fractions sum to {total}, not 1")
        crops = {tuple(config["images"][i]["crop_px"] or ()) for i in block["images"]
                 if i in config["images"]}
        if len(crops) > 1:
            problems.append(f"datasets.{name}.images: image blocks have different crop_px {sorted(crops)}")
    for name, block in (config.get("benchmarks") or {}).items():
        for model in block.get("models", []):
            if model not in config["models"]:
                problems.append(f"benchmarks.{name}.models: {model!r} is not a block of 'models' "
                                f"(have: {sorted(config['models'])})")
    for name, block in config["models"].items():
        depth = block["encoder_depth"]
        architecture = block.get("architecture", "Unet")
        if architecture in PER_STAGE_DECODER_ARCHITECTURES:
            if "decoder_channels" not in block:
                problems.append(f"models.{name}.decoder_channels: {architecture} needs one width "
                                f"per encoder stage ({depth})")
            elif len(block["decoder_channels"]) != depth:
                problems.append(f"models.{name}.decoder_channels: needs {depth} entries "
                                f"(one per encoder_depth), has {len(block['decoder_channels'])}")
        elif "decoder_channels" in block:
            problems.append(f"models.{name}.decoder_channels: {architecture} has no per-stage "
                            f"decoder widths (set its decoder through `options`)")
        dataset = config["datasets"].get(block["dataset"], {"images": []})
        for image_block in dataset["images"]:
            crop = config["images"].get(image_block, {}).get("crop_px") or []
            if any(size % 2**depth for size in crop):
                problems.append(f"models.{name}.encoder_depth: images.{image_block}.crop_px {crop} "
                                f"is not divisible by 2**{depth}")
    return problems


def _check_distribution(key: str, spec, positive=False, nonnegative=False,
                        bounds: tuple[float, float] | None = None) -> list[str]:
    low, high = support(spec)
    problems = []
    if isinstance(spec, dict) and spec["distribution"] in ("uniform", "loguniform") and low > high:
        problems.append(f"{key}: low {low} > high {high}")
    if isinstance(spec, dict) and spec["distribution"] == "normal" and low > high:
        problems.append(f"{key}: min {low} > max {high}")
    if isinstance(spec, dict) and spec["distribution"] == "loguniform" and low <= 0:
        problems.append(f"{key}: loguniform needs low > 0")
    if positive and low <= 0:
        problems.append(f"{key}: values must be > 0 (the distribution allows {low}; set min/low)")
    if nonnegative and low < 0:
        problems.append(f"{key}: values must be >= 0 (the distribution allows {low})")
    if bounds is not None and (low < bounds[0] or high > bounds[1]):
        problems.append(f"{key}: values must lie in [{bounds[0]}, {bounds[1]}] "
                        f"(the distribution allows [{low}, {high}])")
    return problems


# --- the block graph, used by the Snakefile's input functions ---------------------------------

def structures_of(config: dict, section: str, name: str) -> str:
    """The structures block at the root of a simulations or images block."""
    if section == "images":
        return structures_of(config, "simulations", config["images"][name]["simulations"])
    if section == "simulations":
        return config["simulations"][name]["structures"]
    raise ValueError(section)


def structure_ids(config: dict, structures_block: str) -> list[str]:
    """Zero-padded item ids 00000 .. count-1: file names sort in item order."""
    return [f"{i:05d}" for i in range(scaled_count(config, structures_block))]


def scaled_count(config: dict, structures_block: str) -> int:
    """The block's `count` times the config's `scale` (default 1), at least 1, and at most
    SMOKE_STRUCTURES with `smoke`: a smaller run keeps the full run's first structures, identical
    to them (seeds are per item)."""
    count = config["structures"][structures_block]["count"]
    count = max(1, int(round(count * float(config.get("scale", 1.0)))))
    return min(count, SMOKE_STRUCTURES) if config.get("smoke") else count
