"""Calibration through the workflow (`images.<I>.label.grow_A`, `blur_A`: `{calibrate: <real
set>}`, `dose_e_per_A2`: `{calibrate: <real set>, around: ...}`): the `calibration` rule measures
how soft the particles' edges are in a real set, how far our labels' outline lies from its
hand-drawn masks and how far its particles stand out of the carbon's noise, and the images rule
draws with all three.

The "real" set is made of the run's own exit waves drawn with other seeds, a known image blur of
1.5 A, half the images block's dose and a raw camera (no median filter; the real set's reader
applies its 3 x 3 one, as for real micrographs), their masks moved in by a known 1.0 A (as a
hand-drawn outline on the inside of the intensity step would be) and written as 8-bit
contrast-stretched PNGs, as real sets often come (their gray values say nothing of the dose): the
calibration must find the blur, grow_A = -1.0 and the dose x 1/2 from the images alone, starting
from an images block with no blur. The particles are 24-28 A across (the tiny config's 13 A leave
no core 3 A inside the outline to take the particle's level from).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import zarr
from PIL import Image

from conftest import WorkflowCopy, job_counts, load_config
from hrtem_wf.config import validate, validate_block
from hrtem_wf.images import draw_images
from hrtem_wf.images.calibration import BLUR_SPREAD_A, scaled_distribution
from hrtem_wf.images.draw import calibrated_spec
from hrtem_wf.io import read_arrays, read_json

KNOWN_GROW_A = -1.0
KNOWN_BLUR_A = 1.5
KNOWN_DOSE_FACTOR = 0.5
BLOCK = "tiny_hrtem"


def calibration_config() -> dict:
    """The tiny config with two structures of larger particles, whole images (no crop) at a
    defocus and dose where the particles show."""
    config = load_config("tests/configs/tiny.yaml")
    structures = config["structures"]["tiny"]
    structures.update(count=2, cell_A=[44.0, 44.0])
    structures["radius_A"] = {"distribution": "uniform", "low": 12.0, "high": 14.0}
    config["simulations"]["tiny_fp"].update(
        projection="infinite", potential_sampling_A=0.2, frozen_phonons=1
    )
    config["images"][BLOCK].update(
        crop_px=None,
        defocus_A={"distribution": "uniform", "low": 300.0, "high": 600.0},
        dose_e_per_A2={"distribution": "uniform", "low": 5000.0, "high": 10000.0},
    )
    config["models"]["tiny_unet"].update(encoder_depth=2, decoder_channels=[16, 8])  # 220 px
    return config


def write_hand_set(
    flow, spec: dict, directory, grow_A: float, blur_A: float, dose_factor: float
) -> dict:
    """The run's simulations drawn with other seeds, image blur blur_A, dose_factor times the
    block's dose, by a raw camera, masks grown by grow_A, as 8-bit PNG pairs: the real_sets
    block that reads them."""
    spec = copy.deepcopy(spec)
    spec["label"]["grow_A"] = grow_A
    spec["blur_A"] = blur_A
    spec["dose_e_per_A2"] = scaled_distribution(spec["dose_e_per_A2"], dose_factor)
    spec["detector"]["median_filter_px"] = 1
    spec = validate_block("images", spec)
    micrographs, masks = directory / "micrographs", directory / "masks"
    micrographs.mkdir(parents=True)
    masks.mkdir()
    stores = sorted((flow.path / "results/simulations/tiny_fp").glob("*.zarr"))
    for item, store in enumerate(stores):
        waves, attrs = read_arrays(
            store, {"full": np.complex64, "particle": np.complex64}, items_attr="frozen_phonons"
        )
        images, labels, _ = draw_images(
            waves["full"],
            waves["particle"],
            tuple(attrs["sampling_A"]),
            attrs["energy_eV"],
            spec,
            np.random.default_rng(1000 + item),
        )
        for draw, (image, label) in enumerate(zip(images, labels, strict=True)):
            stretched = (image - image.min()) / (image.max() - image.min()) * 255
            name = f"hand{item}_{draw}.png"
            Image.fromarray(stretched.round().astype(np.uint8)).save(micrographs / name)
            Image.fromarray(label.astype(np.uint8) * 255).save(masks / name)
    return {
        "format": "pairs",
        "micrographs": str(micrographs),
        "masks": str(masks),
        "pixel_size_A": 0.2,
    }


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    """A run drawn with grow_A 0 and no blur, then its images block calibrated against a hand
    set blurred by 1.5 A at half the dose whose outlines lie 1.0 A inside: (flow, uncalibrated
    draw, the dry run of the change)."""
    root = tmp_path_factory.mktemp("calibration")
    config = calibration_config()
    (root / "flow").mkdir()
    flow = WorkflowCopy(root / "flow", config)
    image = f"results/images/{BLOCK}/00000.zarr"
    flow.snakemake("--until", "simulations")
    flow.snakemake(image)
    uncalibrated = zarr.open(str(flow.path / image), mode="r")
    before = {"images": uncalibrated["images"][:], "masks": uncalibrated["masks"][:]}
    spec = validate_block("images", config["images"][BLOCK])
    config["real_sets"] = {
        "hand": write_hand_set(
            flow, spec, root / "hand", KNOWN_GROW_A, KNOWN_BLUR_A, KNOWN_DOSE_FACTOR
        )
    }
    images = config["images"][BLOCK]
    images["label"]["grow_A"] = {"calibrate": "hand"}
    images["blur_A"] = {"calibrate": "hand"}
    images["dose_e_per_A2"] = {"calibrate": "hand", "around": images["dose_e_per_A2"]}
    flow.write_config(config)
    dry = flow.snakemake("-n", image)
    flow.snakemake(image)
    return flow, before, dry


def test_calibration_recovers_a_known_blur_label_offset_and_dose(calibrated):
    flow, _, _ = calibrated
    result = read_json(flow.path / f"results/calibrations/{BLOCK}.json")
    assert result["real_set"] == "hand"
    assert result["calibrated"] == ["grow_A", "blur_A", "dose_e_per_A2"]
    # the blur: the images drawn within +-BLUR_SPREAD_A of the known one
    blur = result["blur_A"]
    assert blur["distribution"] == "uniform"
    assert blur["high"] - blur["low"] == pytest.approx(2 * BLUR_SPREAD_A)
    assert (blur["low"] + blur["high"]) / 2 == pytest.approx(KNOWN_BLUR_A, abs=0.5)
    residuals = {step["blur_A"]: step["residual"] for step in result["blur_search"]}
    # the least blur (0-1 A) gives sharper edges than the hand set's
    assert min(residuals.values()) < 0.5 * residuals[0.5]
    assert result["grow_A"] == pytest.approx(KNOWN_GROW_A, abs=0.2)
    # our labels lay about 1 A outside the hand outline before (measured on sharper edges than
    # the hand set's, so less well), on it after
    assert result["label_offset_A"]["before"] == pytest.approx(-KNOWN_GROW_A, abs=0.4)
    assert abs(result["label_offset_A"]["after"]) <= 0.2
    assert result["gaps"]["after"]["edge_profile"] < result["gaps"]["before"]["edge_profile"]
    # the dose: the block's own distribution scaled by about the known factor (within half an
    # octave); the particles stood out of the noise more than the hand set's before, as far after
    around = calibration_config()["images"][BLOCK]["dose_e_per_A2"]
    dose = result["dose_e_per_A2"]
    factor = dose["low"] / around["low"]
    assert dose == scaled_distribution(around, factor)
    assert abs(np.log2(factor / KNOWN_DOSE_FACTOR)) <= 0.5
    depths = {step["factor"]: step["particle_depth"] for step in result["dose_search"]}
    assert depths[1.0] > result["particle_depth_real"]
    assert result["gaps"]["after"]["particle_depth"] < result["gaps"]["before"]["particle_depth"]
    assert result["gaps"]["after"]["particle_depth"] < 0.1
    assert result["pilot"]["structures"] == [0, 1]
    assert (flow.path / f"results/calibrations/{BLOCK}.png").stat().st_size > 0


def test_images_are_drawn_with_the_calibrated_blur_and_width(calibrated):
    flow, before, _ = calibrated
    result = read_json(flow.path / f"results/calibrations/{BLOCK}.json")
    grow_A, blur = result["grow_A"], result["blur_A"]
    store = zarr.open(str(flow.path / f"results/images/{BLOCK}/00000.zarr"), mode="r")
    assert store.attrs["config"]["label"]["grow_A"] == {"calibrate": "hand"}
    assert store.attrs["config"]["blur_A"] == {"calibrate": "hand"}
    assert store.attrs["calibration"]["grow_A"] == grow_A
    assert store.attrs["calibration"]["blur_A"] == blur
    dose = result["dose_e_per_A2"]
    assert store.attrs["calibration"]["dose_e_per_A2"] == dose
    for record in store.attrs["records"]:
        assert record["label_grow_A"] == grow_A
        assert blur["low"] <= record["blur_A"] <= blur["high"]
        assert dose["low"] <= record["dose_e_per_A2"] <= dose["high"]
    # the same draws but blurred (the particles' contrast spread out), the labels moved in:
    # fewer particle pixels
    assert store["images"].shape == before["images"].shape
    assert np.std(store["images"][:]) < np.std(before["images"])
    assert store["masks"][:].sum() < before["masks"].sum()


def test_dry_run_puts_one_calibration_before_the_images(calibrated):
    from hrtem_wf.plan import parse_dry_run, summarize

    flow, _, dry = calibrated
    # the simulations stand; one calibration, then the image draw it changes
    assert job_counts(dry.stdout) == {"calibration": 1, "images": 1, "total": 2}
    # `hrtem-wf plan` puts the calibration under its images block
    rows = summarize(parse_dry_run(dry.stdout), validate(flow.config))
    (row,) = [r for r in rows if r["rule"] == "calibration"]
    assert (row["stage"], row["block"], row["targets"], row["would_run"]) == (
        "images",
        BLOCK,
        1,
        1,
    )


def test_the_report_and_the_plan_know_the_calibration(calibrated):
    from hrtem_wf.config import planned_jobs
    from hrtem_wf.evaluations.report import _calibrations_markdown

    flow, _, _ = calibrated
    result = read_json(flow.path / f"results/calibrations/{BLOCK}.json")
    table = _calibrations_markdown([result])
    assert "## Calibration against hand-drawn masks" in table
    blur = f"{result['blur_A']['low']:.2f}-{result['blur_A']['high']:.2f}"
    dose = f"{result['dose_e_per_A2']['low']:.0f}-{result['dose_e_per_A2']['high']:.0f}"
    assert (
        f"| {BLOCK} | hand | grow_A, blur_A, dose_e_per_A2 | {result['grow_A']:.2f} | {blur} "
        f"| {dose} |"
    ) in table
    # a block that calibrates its labels alone keeps its own blur, whatever its form
    for blur, shown in (
        (0.5, "0.50"),
        ({"distribution": "normal", "mean": 1, "sd": 0.2}, "normal"),
    ):
        assert f"| grow_A | -1.00 | {shown} |" in _calibrations_markdown(
            [{**result, "calibrated": ["grow_A"], "grow_A": -1.0, "blur_A": blur}]
        )
    # the report rule reads it; the plan counts it
    dry = flow.snakemake("-n", "-p", "report")
    assert f"--calibrations results/calibrations/{BLOCK}.json" in dry.stdout
    assert planned_jobs(validate(flow.config))["calibration"] == 1


def test_a_calibrated_spec_needs_its_measurement():
    measured = {
        "real_set": "hand",
        "grow_A": -0.7,
        "blur_A": {"low": 1.0, "high": 2.0},
        "dose_e_per_A2": {"distribution": "uniform", "low": 150.0, "high": 300.0},
    }
    fixed = {"label": {"grow_A": -1.3}, "blur_A": 0.5}
    assert calibrated_spec(fixed, None) == fixed
    both = {"label": {"grow_A": {"calibrate": "hand"}}, "blur_A": {"calibrate": "hand"}}
    resolved = calibrated_spec(both, measured)
    assert resolved["label"]["grow_A"] == -0.7 and resolved["blur_A"] == measured["blur_A"]
    assert both["label"]["grow_A"] == {"calibrate": "hand"}  # the block itself is untouched
    # one asked, the other kept
    grow_only = calibrated_spec({**both, "blur_A": 0.5}, measured)
    assert (grow_only["label"]["grow_A"], grow_only["blur_A"]) == (-0.7, 0.5)
    blur_only = calibrated_spec({**both, "label": {"grow_A": -1.3}}, measured)
    assert (blur_only["label"]["grow_A"], blur_only["blur_A"]) == (-1.3, measured["blur_A"])
    with pytest.raises(ValueError, match="label.grow_A .* `calibration` rule"):
        calibrated_spec(both, None)
    # the dose: what was measured replaces the whole {calibrate, around}
    around = {"distribution": "uniform", "low": 100.0, "high": 200.0}
    dose = calibrated_spec(
        {**fixed, "dose_e_per_A2": {"calibrate": "hand", "around": around}}, measured
    )
    assert dose["dose_e_per_A2"] == measured["dose_e_per_A2"]
    with pytest.raises(ValueError, match="dose_e_per_A2 .* `calibration` rule"):
        calibrated_spec({**fixed, "dose_e_per_A2": {"calibrate": "hand", "around": 5.0}}, None)
    with pytest.raises(ValueError, match="blur_A .* 'other'"):
        calibrated_spec({**fixed, "blur_A": {"calibrate": "other"}}, measured)


def test_an_unresolved_calibration_is_not_drawn():
    spec = validate_block("images", load_config("tests/configs/tiny.yaml")["images"][BLOCK])
    spec["blur_A"] = {"calibrate": "hand"}
    with pytest.raises(ValueError, match="blur_A .*calibrated_spec"):
        draw_images(
            np.ones((1, 64, 64), np.complex64),
            np.ones((1, 64, 64), np.complex64),
            (0.2, 0.2),
            200e3,
            spec,
            np.random.default_rng(0),
        )


@pytest.mark.parametrize(
    "spec",
    [
        250.0,
        {"distribution": "fixed", "value": 250.0},
        {"distribution": "uniform", "low": 100.0, "high": 400.0},
        {"distribution": "loguniform", "low": 100.0, "high": 400.0},
        {"distribution": "normal", "mean": 250.0, "sd": 40.0, "min": 150.0, "max": 350.0},
        {"distribution": "choice", "values": [100.0, 300.0]},
        {"distribution": "sequence", "values": [100.0, 300.0], "jitter_sd": 10.0},
        {
            "distribution": "mixture",
            "weights": [1, 2],
            "components": [100.0, {"distribution": "uniform", "low": 200.0, "high": 400.0}],
        },
    ],
    ids=lambda spec: spec["distribution"] if isinstance(spec, dict) else "number",
)
def test_a_scaled_distribution_draws_the_scaled_values(spec):
    """The dose search scales the block's `around`: drawn with the same random numbers, every
    value is the factor times the one the distribution itself gives."""
    from hrtem_wf.sampling import sample

    scaled = scaled_distribution(spec, 2.5)
    for index in range(5):
        original = sample(spec, np.random.default_rng(index), index=index)
        assert sample(scaled, np.random.default_rng(index), index=index) == pytest.approx(
            2.5 * original
        )
