"""Config validation, defaults and the block graph (structures -> simulations -> images ->
datasets -> models).

`validate` runs before Snakemake builds any job, and is the one home of every default and every
check of a config:
- defaults are the schema's `default:` values (config.schema.yaml beside this module, package
  data), filled into the config as it is validated, so the user reads them where the keys are
  documented and every stage receives complete blocks; the few defaults that depend on another
  key (an FCC particle's `elements` is [material]; a real set is scored by every segmentation
  model) are filled by `_fill_derived`;
- the schema checks keys, types and ranges;
- `check_references` checks what a schema cannot: parents exist, splits sum to 1, distributions
  are well formed (and a `sequence` only where draws are numbered), crops fit the detector image
  at the largest pixel size, the materials and defects each family builds.
Library functions take validated blocks and keep only invariants of their own arguments.
Every message names the offending key as a dotted path.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import re
import sys
from pathlib import Path

import yaml
from jsonschema import Draft202012Validator, validators

from hrtem_wf.calibration_keys import calibrations_asked
from hrtem_wf.materials import (
    DEFECT_KINDS,
    FCC_METALS,
    FLAKE_MATERIALS,
    SUBSTRATE_ELEMENTS,
    WURTZITE_DEFECT_KINDS,
)
from hrtem_wf.sampling import support

SCHEMA = Path(__file__).resolve().parent / "config.schema.yaml"  # package data (pyproject.toml)
PARENT_KEY = {
    "simulations": "structures",
    "images": "simulations",
    "datasets": "images",
    "models": "dataset",
}
PARENT_SECTION = {
    "simulations": "structures",
    "images": "simulations",
    "datasets": "images",
    "models": "datasets",
}
#: smp architectures whose decoder takes one width per encoder stage (hrtem_wf.models.model
#: .takes_decoder_channels; named here so validation does not import torch).
PER_STAGE_DECODER_ARCHITECTURES = ("MAnet", "Unet", "UnetPlusPlus")
# What YAML 1.1 (PyYAML) reads as text although it looks like a number: an exponent without a
# '.' in the mantissa or without a sign (5.0e6, 1e-3, 1e6).
EXPONENT_AS_TEXT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")


def structure_elements(block: dict) -> set[str]:
    """Chemical elements of a validated structures block's scenes (particles and substrate)."""
    if block["family"] == "flake":
        from hrtem_wf.structures.flake import flake_elements

        return flake_elements(block)
    if block["lattice"] == "cif":
        from hrtem_wf.structures.cif import elements_of

        particle = set(elements_of(block["cif"]))
    else:
        particle = set(block["elements"])
    return particle | {SUBSTRATE_ELEMENTS[block["substrate"]["material"]]}


class ConfigError(ValueError):
    """A config that must not run; the message names the key."""


def _dotted(path) -> str:
    return ".".join(str(p) for p in path) or "<top level>"


def read_config_file(path: str | Path) -> dict:
    """A config file's mapping; ConfigError naming the file (and the line, where YAML gives one)
    when it is missing, not YAML, empty or not a mapping of keys. Snakemake reads the files of
    --configfile itself, before the workflow, with a message that names neither; `hrtem-wf plan`
    and the Snakefile's own config/config.yaml come through here first."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise ConfigError(f"config file {path}: cannot be read ({error.strerror})") from None
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = "" if mark is None else f", line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigError(f"config file {path}{where}: not valid YAML ({problem})") from None
    if config is None:
        raise ConfigError(f"config file {path}: is empty; it needs the config's keys")
    if not isinstance(config, dict):
        raise ConfigError(
            f"config file {path}: holds a {type(config).__name__}, not a mapping of the "
            "config's keys (seed, structures, simulations, ...)"
        )
    return config


def load_schema(path: str | Path = SCHEMA) -> dict:
    return yaml.safe_load(Path(path).read_text())


def schema_default(section: str, key: str):
    """The default of a block key, as the schema gives it (for commands that share it)."""
    block = load_schema()["properties"][section]["additionalProperties"]
    return block["properties"][key]["default"]


def _fill_defaults(validator_class):
    """A validator that also writes each property's schema `default` into the instance (where the
    key is absent), before it validates the property: nested defaults fill in turn."""
    check_properties = validator_class.VALIDATORS["properties"]

    def properties(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for key, subschema in properties.items():
                if "default" in subschema and key not in instance:
                    instance[key] = copy.deepcopy(subschema["default"])
        yield from check_properties(validator, properties, instance, schema)

    return validators.extend(validator_class, {"properties": properties})


DefaultFillingValidator = _fill_defaults(Draft202012Validator)


def validate(config: dict, schema_path: str | Path = SCHEMA) -> dict:
    """Fill defaults and raise ConfigError listing every problem, each with the key path; return
    the config (filled in place)."""
    validator = DefaultFillingValidator(load_schema(schema_path))
    errors = sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        lines = [f"  {_dotted(_where(e))}: {_message(e)}" for e in errors]
        raise ConfigError("invalid config:\n" + "\n".join(lines))
    _fill_derived(config)
    check_references(config)
    apply_device_override(config)
    if config.get("smoke"):
        apply_smoke(config)
    check_job_count(config)
    return config


def validate_block(section: str, block: dict, schema_path: str | Path = SCHEMA) -> dict:
    """One block checked and filled as `validate` would (checks that need other blocks aside), for
    library callers outside the workflow; returns a filled copy."""
    schema = load_schema(schema_path)
    block_schema = {
        **schema["properties"][section]["additionalProperties"],
        "$defs": schema["$defs"],
    }
    block = copy.deepcopy(block)
    errors = sorted(
        DefaultFillingValidator(block_schema).iter_errors(block),
        key=lambda e: list(map(str, e.absolute_path)),
    )
    problems = [f"  {_dotted([section, 'block', *_where(e)])}: {_message(e)}" for e in errors]
    if not problems:
        _fill_derived({section: {"block": block}})
        problems = [f"  {p}" for p in _block_problems(section, "block", block)]
    if problems:
        raise ConfigError("invalid config:\n" + "\n".join(problems))
    return block


def _text_numbers(node, path=()) -> list[tuple[list, str]]:
    """(relative path, text) of the strings in `node` that look like numbers YAML read as text."""
    if isinstance(node, dict):
        return [p for key, value in node.items() for p in _text_numbers(value, [*path, key])]
    if isinstance(node, list):
        return [p for i, value in enumerate(node) for p in _text_numbers(value, [*path, i])]
    if isinstance(node, str) and EXPONENT_AS_TEXT.match(node.strip()):
        return [(list(path), node)]
    return []


def _fill_derived(config: dict) -> None:
    """The defaults that depend on another key of the same block."""
    for block in config.get("structures", {}).values():
        if block.get("family") == "particles" and block.get("lattice") == "fcc":
            block.setdefault("elements", [block["material"]])
    for block in config.get("real_sets", {}).values():
        if "models" in config:  # validate_block checks a block alone
            block.setdefault(
                "models", sorted(n for n in config["models"] if _scores_micrographs(config, n))
            )


def _scores_micrographs(config: dict, model: str) -> bool:
    """Whether a model maps particles in single micrographs (what real sets hold): a
    segmentation model trained on single images, not on focal series."""
    block = config["models"][model]
    dataset = config.get("datasets", {}).get(block.get("dataset"), {})
    return block.get("task", "segmentation") == "segmentation" and not any(
        config.get("images", {}).get(name, {}).get("focal_series")
        for name in dataset.get("images", [])
    )


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
        block["potential_sampling_A"] = max(
            block["potential_sampling_A"],
            min(SMOKE_MIN_POTENTIAL_SAMPLING_A, block["exit_wave_sampling_A"]),
        )
    for block in config["images"].values():
        block["focal_spread"]["samples"] = min(
            block["focal_spread"]["samples"], SMOKE_FOCAL_SPREAD_SAMPLES
        )
        if block["crop_px"] is not None:
            block["crop_px"] = [min(n, SMOKE_CROP_PX) for n in block["crop_px"]]
    for block in config["models"].values():
        block["epochs"] = min(block["epochs"], SMOKE_EPOCHS)
        block["seeds"] = block["seeds"][:1]
    return config


def _closest(error):
    """Of a value that matches no form of a oneOf, the complaint of the form meant: forms that
    reject the value's type ("is not of type 'null'") or its kind (a `distribution` name of
    another form: const or enum; a mapping with none of the form's required keys) say nothing
    of what is wrong and are passed over; of the others, the deepest complaint, then the
    shortest, and within a nested oneOf its closest form's."""
    other_kind = {
        e.relative_schema_path[0]
        for e in error.context
        if (e.validator == "type" and not e.relative_path)
        or e.validator in ("const", "enum")
        or (e.validator == "required" and not e.relative_path and _has_none(e))
    }
    meant = [e for e in error.context if e.relative_schema_path[0] not in other_kind]
    best = min(meant or error.context, key=lambda e: (-len(e.relative_path), len(e.message)))
    return _closest(best) if best.validator == "oneOf" and best.context else best


def _has_none(error) -> bool:
    """A `required` complaint about a mapping with none of the form's required keys: a form of
    another kind ({calibrate: ...} for a distribution, or the other way round)."""
    return isinstance(error.instance, dict) and not set(error.validator_value) & set(error.instance)


def _where(error) -> list:
    """The key path of an error, down to the key the closest form of a oneOf complains of."""
    if error.validator == "oneOf" and error.context:
        return list(_closest(error).absolute_path)  # a context error's path runs from the root
    return list(error.absolute_path)


def _message(error) -> str:
    text_numbers = _text_numbers(error.instance)
    if text_numbers:
        where = ", ".join(
            f"{_dotted(path)}: {text!r}" if path else repr(text) for path, text in text_numbers
        )
        return (
            f"{where} is text, not a number: YAML reads an exponent without a '.' in the "
            f"mantissa or without a sign (5.0e6, 1e-3) as a string; write 5.0e+6 or "
            f"5000000.0, 1.0e-3 or 0.001"
        )
    if error.validator == "additionalProperties":
        return f"unknown key ({error.message})"
    if error.validator == "oneOf" and error.context:
        # A value that matches no form (a distribution, or null or a block): show the closest
        # form's complaint, at its key.
        best = _closest(error)
        forms = json.dumps(error.schema.get("oneOf", []))
        if "calibrate" in forms:
            kinds = "a number, a distribution or" if "distribution" in forms else "a number or"
            return f"{best.message} (expected {kinds} a {{calibrate: ...}} mapping)"
        if "distribution" in forms:
            return f"{best.message} (expected a number or a distribution mapping)"
        return best.message
    return error.message


def check_references(config: dict) -> None:
    """Raise ConfigError listing what the schema cannot check, in a validated, filled config."""
    problems = []
    for section, parent_key in PARENT_KEY.items():
        parent_section = PARENT_SECTION[section]
        for name, block in config[section].items():
            parents = block[parent_key]
            for parent in parents if isinstance(parents, list) else [parents]:
                if parent not in config[parent_section]:
                    problems.append(
                        f"{section}.{name}.{parent_key}: {parent!r} is not a block of "
                        f"'{parent_section}' (have: {sorted(config[parent_section])})"
                    )
    if not problems:  # the checks across blocks below follow these references
        for section in ("structures", "simulations", "images", "datasets", "models", "real_sets"):
            for name, block in (config.get(section) or {}).items():
                problems += _block_problems(section, name, block)
                problems += _linked_problems(config, section, name, block)
    if problems:
        raise ConfigError("invalid config:\n" + "\n".join(f"  {p}" for p in problems))


def _block_problems(section: str, name: str, block: dict) -> list[str]:
    """What one filled block gets wrong on its own."""
    key = f"{section}.{name}"
    problems = [
        p for path, spec in _distributions(block, key) for p in _distribution_problems(path, spec)
    ]
    problems += [
        f"{path}: a `sequence` distribution is a grid and needs numbered draws: only images' "
        f"defocus_A (by focal point) and dose_e_per_A2 (by repeat) have them"
        for path, spec in _distributions(block, key)
        if spec["distribution"] == "sequence"
        and path
        not in (
            f"images.{name}.defocus_A",
            f"images.{name}.dose_e_per_A2",
            f"images.{name}.dose_e_per_A2.around",
        )
    ]
    if section == "structures":
        problems += _structure_problems(key, block)
    elif section == "images":
        problems += _image_problems(key, block)
    elif section == "datasets":
        total = sum(block["split"].values())
        if abs(total - 1) > 1e-6:
            problems.append(f"{key}.split: fractions sum to {total}, not 1")
    elif section == "models":
        problems += _model_problems(key, block)
    return problems


def _structure_problems(key: str, block: dict) -> list[str]:
    if block["family"] == "flake":
        problems = []
        if block["material"] not in FLAKE_MATERIALS:
            problems.append(
                f"{key}.material: {block['material']!r} is not a flake material; "
                f"flakes are 2H {FLAKE_MATERIALS}"
            )
        if block["support"]["material"] == "graphene" and "distance_A" not in block["support"]:
            problems.append(f"{key}.support.distance_A: required on graphene")
        problems += _positive(f"{key}.flake.radius_A", block["flake"]["radius_A"])
        return problems
    problems = _positive(f"{key}.substrate.thickness_A", block["substrate"]["thickness_A"])
    lattice, defects = block["lattice"], block["planar_defects"]
    if lattice in ("fcc", "wurtzite") and "lattice_constant_A" not in block:
        problems.append(f"{key}.lattice_constant_A: required for {lattice} particles")
    if lattice == "cif" and "cif" not in block:
        problems.append(f"{key}.cif: lattice cif needs the crystal's CIF file")
    if lattice == "fcc":
        if block["elements"] != [block["material"]] or block["material"] not in FCC_METALS:
            problems.append(
                f"{key}.material: {block['material']!r} is not an elemental FCC "
                f"metal {FCC_METALS} (elements {block['elements']})"
            )
        allowed_kinds = DEFECT_KINDS
    elif lattice == "wurtzite":
        if len(block.get("elements", [])) != 2 or "c_A" not in block:
            problems.append(
                f"{key}.elements: a wurtzite block needs elements [cation, anion] and c_A"
            )
        allowed_kinds = WURTZITE_DEFECT_KINDS
    else:
        allowed_kinds = DEFECT_KINDS + WURTZITE_DEFECT_KINDS
        if defects["max_count"] != 0:
            problems.append(
                f"{key}.planar_defects.max_count: a CIF crystal takes no planar defects (set 0)"
            )
    unknown = sorted(set(defects["kinds"]) - set(allowed_kinds))
    if unknown:
        problems.append(
            f"{key}.planar_defects.kinds: {unknown} not made for {lattice} particles "
            f"(choose from {allowed_kinds})"
        )
    if lattice != "fcc" and block["grain_boundaries"]["fraction"] > 0:
        problems.append(f"{key}.grain_boundaries: only FCC particles have them here")
    if block["shape"] == "layered" and (lattice != "fcc" or "layered" not in block):
        problems.append(
            f"{key}.shape: layered is FCC only, with a `layered` block (layers, "
            f"added_atoms, temperature)"
        )
    if support(block["particles"]["count"])[0] < 1:
        problems.append(f"{key}.particles.count: must be >= 1")
    if block["shape"] == "sphere":
        if "radius_A" not in block:
            return problems + [f"{key}.radius_A: required for spherical particles"]
        problems += _positive(f"{key}.radius_A", block["radius_A"])
        r_max = support(block["radius_A"])[1]
        needed = 2 * (r_max + block["edge_margin_A"])
        if math.isfinite(r_max) and min(block["cell_A"]) < needed:
            problems.append(
                f"{key}.cell_A: {block['cell_A']} is too small: needs 2 x (largest "
                f"radius {r_max} + edge_margin_A) = {needed}"
            )
    return problems


def _image_problems(key: str, block: dict) -> list[str]:
    dose = block["dose_e_per_A2"]
    if "dose_e_per_A2" in _calibrations_asked(block):
        problems = _positive(f"{key}.dose_e_per_A2.around", dose["around"])
    else:
        problems = _positive(f"{key}.dose_e_per_A2", dose)
    problems += _within(
        f"{key}.focal_spread.sigma_A", block["focal_spread"]["sigma_A"], (0.0, math.inf)
    )
    if block["objective_aperture_mrad"] is not None:
        problems += _positive(f"{key}.objective_aperture_mrad", block["objective_aperture_mrad"])
    if block["illumination_semiangle_mrad"] is not None:
        problems += _within(
            f"{key}.illumination_semiangle_mrad",
            block["illumination_semiangle_mrad"],
            (0.0, math.inf),
        )
    if "blur_A" not in _calibrations_asked(block):
        problems += _within(f"{key}.blur_A", block["blur_A"], (0.0, math.inf))
    problems += _detector_problems(f"{key}.detector", block["detector"], block["crop_px"])
    if block["plasmons"] is not None:
        problems += _within(f"{key}.plasmons.weight", block["plasmons"]["weight"], (0.0, 1.0))
        problems += _within(
            f"{key}.plasmons.background", block["plasmons"]["background"], (0.0, math.inf)
        )
    columns = block["targets"].get("columns")
    if columns is not None:
        kind, names = columns["classes"]["kind"], columns["classes"]["names"]
        if kind == "height" and not all(isinstance(n, int) for n in names):
            problems.append(f"{key}.targets.columns.classes.names: heights must be integers")
        elif kind == "height" and list(names) != sorted(names):
            problems.append(f"{key}.targets.columns.classes.names: heights must ascend")
        elif kind != "height" and not all(isinstance(n, str) for n in names):
            problems.append(
                f"{key}.targets.columns.classes.names: {kind} classes are names (e.g. Au, Mo1)"
            )
    focal_points, draws = block["focal_points"], block["draws_per_structure"]
    if focal_points is not None and draws % focal_points:
        problems.append(
            f"{key}.focal_points: {focal_points} does not divide "
            f"draws_per_structure {draws} (each lens is imaged draws / focal_points "
            f"times)"
        )
    return problems


def _detector_problems(key: str, detector: dict, crop_px) -> list[str]:
    """The detector's values, each a number or a distribution drawn per image."""
    pixel_size_A = detector["pixel_size_A"]
    problems = _positive(f"{key}.pixel_size_A", pixel_size_A)
    low, high = support(pixel_size_A)
    if low != high and not math.isfinite(high):
        problems.append(
            f"{key}.pixel_size_A: needs a largest value (set max / high): the crop must fit the "
            f"detector image at the largest pixel size"
        )
    if low != high and crop_px is None:
        problems.append(
            f"{key}.pixel_size_A: a drawn pixel size needs crop_px (the detector image's size "
            f"changes with the pixel size; the images of a store share one shape)"
        )
    if detector["mtf"] is not None:
        c1_low, c1_high = support(detector["mtf"]["c1"])
        if c1_low < 0 or c1_high >= 1:
            problems.append(
                f"{key}.mtf.c1: values must lie in [0, 1) (the distribution allows "
                f"[{c1_low}, {c1_high}])"
            )
        problems += _positive(f"{key}.mtf.c2", detector["mtf"]["c2"])
        problems += _positive(f"{key}.mtf.c3", detector["mtf"]["c3"])
    problems += _within(f"{key}.blur_sigma_px", detector["blur_sigma_px"], (0.0, math.inf))
    return problems


def _model_problems(key: str, block: dict) -> list[str]:
    problems = []
    augment = block["augment_photometric"]
    if augment is not None:
        for name, check in (
            ("gamma", _positive),
            ("contrast_factor", _positive),
            ("noise_relative_sd", lambda k, spec: _within(k, spec, (0.0, math.inf))),
        ):
            if augment[name] is not None:
                problems += check(f"{key}.augment_photometric.{name}", augment[name])
    depth, architecture = block["encoder_depth"], block["architecture"]
    if block["task"] != "columns" and block["column_loss"] != "mse":
        problems.append(f"{key}.column_loss: is a columns model's; this is a {block['task']} model")
    if block["task"] == "exit_wave" and block["checkpoint"] == "best_val_f1":
        problems.append(
            f"{key}.checkpoint: best_val_f1 scores particle masks or columns; an exit_wave "
            "model keeps best_val_loss or last"
        )
    if architecture == "MSDNet":
        unknown = sorted(set(block["options"]) - {"depth", "width", "dilations"})
        if unknown:
            problems.append(f"{key}.options: MSDNet takes depth, width, dilations, not {unknown}")
        if "decoder_channels" in block:
            problems.append(f"{key}.decoder_channels: MSDNet has no decoder stages")
    elif architecture in PER_STAGE_DECODER_ARCHITECTURES:
        if "decoder_channels" not in block:
            problems.append(
                f"{key}.decoder_channels: {architecture} needs one width per "
                f"encoder stage ({depth})"
            )
        elif len(block["decoder_channels"]) != depth:
            problems.append(
                f"{key}.decoder_channels: needs {depth} entries (one per "
                f"encoder_depth), has {len(block['decoder_channels'])}"
            )
    elif "decoder_channels" in block:
        problems.append(
            f"{key}.decoder_channels: {architecture} has no per-stage decoder "
            f"widths (set its decoder through `options`)"
        )
    if block["encoder"].startswith("tu-"):
        import timm  # only for timm encoders: a heavy import

        if not timm.is_model(block["encoder"][3:]):
            problems.append(f"{key}.encoder: {block['encoder'][3:]!r} is not a timm model")
    return problems


def _linked_problems(config: dict, section: str, name: str, block: dict) -> list[str]:
    """What a block gets wrong given the blocks it names (references already resolved)."""
    key, problems = f"{section}.{name}", []
    if section == "simulations":
        missing = sorted(
            structure_elements(config["structures"][block["structures"]])
            - set(block["debye_waller_sigma_A"])
        )
        if missing:
            problems.append(f"{key}.debye_waller_sigma_A: no entry for {missing}")
    elif section == "images":
        simulation = config["simulations"][block["simulations"]]
        structures = config["structures"][simulation["structures"]]
        threshold = block["label"]["threshold"]
        if isinstance(threshold, dict) and structures["material"] not in threshold:
            problems.append(
                f"{key}.label.threshold: no entry for the particles' material "
                f"{structures['material']!r} (has {sorted(threshold)})"
            )
        calibrated_on = _calibrations_asked(block)
        for where, asked in calibrated_on.items():
            if asked not in config.get("real_sets", {}):
                problems.append(
                    f"{key}.{where}.calibrate: {asked!r} is not a block of "
                    f"'real_sets' (have: {sorted(config.get('real_sets', {}))})"
                )
        if len(set(calibrated_on.values())) > 1:
            problems.append(
                f"{key}: {', '.join(calibrated_on)} calibrate against different real sets "
                f"({calibrated_on}); one calibration measures them all"
            )
        # The largest pixel size gives the smallest detector image: the crop must fit that one.
        low, largest_pixel_size_A = support(block["detector"]["pixel_size_A"])
        crop = block["crop_px"]
        if crop is not None and 0 < low and math.isfinite(largest_pixel_size_A):
            shape = detector_shape_px(
                structures["cell_A"], simulation["exit_wave_sampling_A"], largest_pixel_size_A
            )
            if crop[0] > shape[0] or crop[1] > shape[1]:
                at = "" if low == largest_pixel_size_A else "the largest "
                problems.append(
                    f"{key}.crop_px: {crop} is larger than the detector image {list(shape)} "
                    f"px (structures.{simulation['structures']}.cell_A "
                    f"{structures['cell_A']} at {at}pixel_size_A {largest_pixel_size_A})"
                )
    elif section == "datasets":
        crops = {tuple(config["images"][i]["crop_px"] or ()) for i in block["images"]}
        if len(crops) > 1:
            problems.append(f"{key}.images: image blocks have different crop_px {sorted(crops)}")
        for field in ("targets", "focal_series"):
            values = {
                json.dumps(config["images"][i][field], sort_keys=True) for i in block["images"]
            }
            if len(values) > 1:
                problems.append(
                    f"{key}.images: image blocks have different {field} ({sorted(values)}); "
                    "a dataset's images share their channels and targets"
                )
    elif section == "models":
        depth = block["encoder_depth"]
        task = block["task"]
        for image_block in config["datasets"][block["dataset"]]["images"]:
            images = config["images"][image_block]
            if task != "segmentation" and images["targets"].get(task) is None:
                problems.append(
                    f"{key}.task: {task} needs images.{image_block}.targets.{task} (the dataset "
                    f"{block['dataset']!r} holds no {task} targets)"
                )
            crop = images["crop_px"] or []
            if block["architecture"] == "MSDNet":
                continue  # any image size
            if any(size % 2**depth for size in crop):
                problems.append(
                    f"{key}.encoder_depth: images.{image_block}.crop_px {crop} is "
                    f"not divisible by 2**{depth}"
                )
        if block["on_the_fly"] is not None:
            problems += _on_the_fly_problems(config, key, block)
    elif section == "real_sets":
        for model in block["models"]:
            if model not in config["models"]:
                problems.append(
                    f"{key}.models: {model!r} is not a block of 'models' "
                    f"(have: {sorted(config['models'])})"
                )
            elif not _scores_micrographs(config, model):
                problems.append(
                    f"{key}.models: {model!r} is a {config['models'][model]['task']} model "
                    "(or trained on focal series); real sets score particle masks of single "
                    "micrographs (segmentation models)"
                )
    return problems


def _on_the_fly_problems(config: dict, key: str, block: dict) -> list[str]:
    """An on-the-fly images block must draw from the simulations of the model's dataset, at its
    crop, one image at a time (hrtem_wf.models.on_the_fly)."""
    name = block["on_the_fly"]["images"]
    if name not in config["images"]:
        return [
            f"{key}.on_the_fly.images: {name!r} is not a block of 'images' "
            f"(have: {sorted(config['images'])})"
        ]
    spec, problems = config["images"][name], []
    dataset_images = config["datasets"][block["dataset"]]["images"]
    # What the network sees and learns must be what the dataset's images hold.
    target = {"segmentation": None, "columns": "columns", "exit_wave": "exit_wave"}[block["task"]]
    wanted = {
        field: [config["images"][i][field] for i in dataset_images]
        for field in ("focal_series", "targets")
    }
    if spec["focal_series"] not in wanted["focal_series"]:
        problems.append(
            f"{key}.on_the_fly.images: images.{name}.focal_series {spec['focal_series']} must be "
            f"that of the dataset's images {wanted['focal_series'][0]}"
        )
    if target is not None and spec["targets"].get(target) not in [
        t.get(target) for t in wanted["targets"]
    ]:
        problems.append(
            f"{key}.on_the_fly.images: a {block['task']} model draws its targets with its "
            f"images: images.{name}.targets.{target} must be that of the dataset's images "
            f"{wanted['targets'][0].get(target)}"
        )
    simulations = sorted({config["images"][i]["simulations"] for i in dataset_images})
    if spec["simulations"] not in simulations:
        problems.append(
            f"{key}.on_the_fly.images: images.{name} draws from simulations "
            f"{spec['simulations']!r}, but the training structures of dataset "
            f"{block['dataset']!r} were simulated in {simulations}"
        )
    crops = {tuple(config["images"][i]["crop_px"] or ()) for i in dataset_images}
    # Without a crop an image is the whole cell: the dataset's own block draws the same shape.
    uncropped = spec["crop_px"] is None and name not in dataset_images
    if tuple(spec["crop_px"] or ()) not in crops or uncropped:
        problems.append(
            f"{key}.on_the_fly.images: images.{name}.crop_px {spec['crop_px']} must be the "
            f"crop of the dataset's images {[list(c) for c in sorted(crops)]}"
        )
    problems += [
        f"{key}.on_the_fly.images: images.{name}.{field} is a `sequence`: each training image "
        "is its own draw, so there is no numbering for a grid (give a distribution)"
        for field in ("defocus_A", "dose_e_per_A2")
        if _drawn(spec[field]).get("distribution") == "sequence"
    ]
    return problems


def _drawn(value) -> dict:
    """The distribution mapping a value is drawn from: itself, or a calibrated dose's `around`
    ({} for a number)."""
    if not isinstance(value, dict):
        return {}
    return value["around"] if "around" in value and isinstance(value["around"], dict) else value


def detector_shape_px(cell_A, exit_wave_sampling_A: float, pixel_size_A: float) -> tuple[int, int]:
    """(ny, nx) of a detector image: the cell on the exit-wave grid (hrtem_wf.simulations), then
    resampled to the detector pixel size (images.formation.resampled_shape)."""
    shape = []
    for extent_A in (float(cell_A[1]), float(cell_A[0])):  # (y, x) as the arrays are indexed
        gpts = int(round(extent_A / exit_wave_sampling_A))
        sampling_A = extent_A / gpts
        same = math.isclose(sampling_A, pixel_size_A, rel_tol=1e-9)
        shape.append(gpts if same else int(round(gpts * sampling_A / pixel_size_A)))
    return shape[0], shape[1]


def _distributions(node, key: str):
    """(dotted key, spec) of every distribution mapping in a block, nested ones included."""
    if isinstance(node, dict):
        if "distribution" in node:
            yield key, node
            for i, component in enumerate(node.get("components", [])):
                yield from _distributions(component, f"{key}.components.{i}")
            return
        for name, value in node.items():
            yield from _distributions(value, f"{key}.{name}")


def _distribution_problems(key: str, spec: dict) -> list[str]:
    kind, problems = spec["distribution"], []
    if kind in ("uniform", "loguniform") and spec["low"] > spec["high"]:
        problems.append(f"{key}: low {spec['low']} > high {spec['high']}")
    if kind == "loguniform" and spec["low"] <= 0:
        problems.append(f"{key}: loguniform needs low > 0")
    if kind == "normal" and spec.get("min", -math.inf) > spec.get("max", math.inf):
        problems.append(f"{key}: min {spec['min']} > max {spec['max']}")
    if kind == "mixture" and len(spec["weights"]) != len(spec["components"]):
        problems.append(
            f"{key}: {len(spec['weights'])} weights for {len(spec['components'])} "
            f"components (one weight per component)"
        )
    return problems


def _positive(key: str, spec) -> list[str]:
    low = support(spec)[0]
    return (
        [f"{key}: values must be > 0 (the distribution allows {low}; set min/low)"]
        if low <= 0
        else []
    )


def _within(key: str, spec, bounds: tuple[float, float]) -> list[str]:
    low, high = support(spec)
    if low < bounds[0] or high > bounds[1]:
        return [
            f"{key}: values must lie in [{bounds[0]}, {bounds[1]}] (the distribution allows "
            f"[{low}, {high}])"
        ]
    return []


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


# --- the size of a run, before Snakemake builds its DAG ---------------------------------------

NO_BLOCK = "-"  # the report and `all` belong to no block
# Snakemake's DAG of the study recipe: 523 MB for 21,339 jobs (make bench-dag, 2026-12-07).
DAG_MB_PER_JOB = 0.025


def block_jobs(config: dict) -> list[tuple[str, str, str, int]]:
    """(stage, block, rule, jobs) of every block a run of the validated config reaches from rule
    all, counted without listing the jobs: every model's seeds and evaluations, the datasets they
    train on, those datasets' images blocks (and an on_the_fly model's simulations), their
    simulations and structures; each real set's scores and realism; the report and `all`."""
    models = config["models"]
    datasets = dict.fromkeys(block["dataset"] for block in models.values())
    images = dict.fromkeys(i for d in datasets for i in config["datasets"][d]["images"])
    fly = [b["on_the_fly"]["images"] for b in models.values() if b.get("on_the_fly")]
    simulations = dict.fromkeys(config["images"][i]["simulations"] for i in [*images, *fly])
    structures = dict.fromkeys(config["simulations"][m]["structures"] for m in simulations)
    rows = [("structures", s, "structures", scaled_count(config, s)) for s in structures]
    rows += [
        (section, name, section, scaled_count(config, structures_of(config, section, name)))
        for section, names in (("simulations", simulations), ("images", images))
        for name in names
    ]
    rows += [
        ("images", name, "calibration", 1)
        for name in dict.fromkeys([*images, *fly])
        if calibration_real_set(config["images"][name])
    ]
    rows += [("datasets", d, "datasets", 1) for d in datasets]
    for name, block in models.items():
        rows += [("models", name, rule, len(block["seeds"])) for rule in ("models", "evaluations")]
    for name, block in config.get("real_sets", {}).items():
        scores = sum(len(models[m]["seeds"]) for m in block["models"])
        realism = len({models[m]["dataset"] for m in block["models"]})
        rows += [("real_sets", name, "scores", scores), ("real_sets", name, "realism", realism)]
    return rows + [("report", NO_BLOCK, "report", 1), ("report", NO_BLOCK, "all", 1)]


def _calibrations_asked(images_block: dict) -> dict[str, str]:
    """{key: real set} of an images block's values that ask the `calibration` rule
    (hrtem_wf.calibration_keys)."""
    return {key: v["calibrate"] for key, v in calibrations_asked(images_block).items()}


def calibration_real_set(images_block: dict) -> str | None:
    """The real set an images block is calibrated against by the `calibration` rule (its
    label.grow_A, blur_A or dose_e_per_A2 is {calibrate: <real set>, ...}), or None."""
    asked = _calibrations_asked(images_block)
    return next(iter(asked.values())) if asked else None


def planned_jobs(config: dict) -> dict[str, int]:
    """The jobs a run of the validated config builds, per rule (`block_jobs` summed)."""
    jobs: dict[str, int] = {}
    for _, _, rule, n in block_jobs(config):
        jobs[rule] = jobs.get(rule, 0) + n
    return jobs


def check_job_count(config: dict) -> None:
    """Raise ConfigError, naming the counts that drive it, when the run would build more than
    `max_jobs` jobs: Snakemake holds every job in memory before it starts one."""
    jobs = planned_jobs(config)
    total = sum(jobs.values())
    if total <= config["max_jobs"]:
        return
    drivers = sorted(((scaled_count(config, s), s) for s in config["structures"]), reverse=True)[:3]
    named = ", ".join(f"structures.{s}.count -> {n:,} items" for n, s in drivers)
    scale = f" (x scale {config['scale']})" if "scale" in config else ""
    per_rule = ", ".join(f"{rule} {n:,}" for rule, n in jobs.items() if n)
    raise ConfigError(
        f"the run would build {total:,} jobs ({per_rule}), "
        f"above max_jobs = {config['max_jobs']:,}: Snakemake would need about "
        f"{total * DAG_MB_PER_JOB / 1024:,.0f} GB to plan them. Largest counts{scale}: {named}. "
        "Lower them, set `scale` (e.g. 0.01), or raise `max_jobs`."
    )


def check_real_sets(config: dict) -> None:
    """Raise ConfigError listing the problems of every real set's files (every micrograph
    readable, each with a mask of its shape, nothing else in the folders: real_set_problems).
    Imported here, not at the top: the stages import the real-set readers, not the config
    (and only when there are real sets: the readers import torch, seconds per Snakemake run)."""
    if not config.get("real_sets"):
        return
    from hrtem_wf.real.sets import real_set_problems

    problems = [
        problem
        for name, block in config["real_sets"].items()
        for problem in real_set_problems(name, block)
    ]
    if problems:
        raise ConfigError("real sets:\n" + "\n".join(f"  {p}" for p in problems))


@contextlib.contextmanager
def exit_on_config_error():
    """A ConfigError raised in the block stops the program with its message alone (one line
    per problem, naming the key or file): the Snakefile's checks, where Snakemake would show
    a traceback of the Snakefile."""
    try:
        yield
    except ConfigError as error:
        sys.exit(f"hrtem_wf: {error}")
