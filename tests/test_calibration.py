"""Label calibration through the workflow (`images.<I>.label.grow_A: {calibrate: <real set>}`):
the `calibration` rule measures how far our labels' outline lies from a real set's hand-drawn
masks and the images rule draws with it.

The "real" set is made of the run's own exit waves drawn with other seeds and a raw camera (no
median filter; the real set's reader applies its 3 x 3 one, as for real micrographs), their masks
moved in by a known 1.0 A (as a hand-drawn outline on the inside of the intensity step would be)
and written as 8-bit contrast-stretched PNGs, as real sets often come: the calibration must find
grow_A = -1.0 from the images alone. The particles are 24-28 A across (the tiny config's 13 A
leave no core 3 A inside the outline to take the particle's level from).
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
from hrtem_wf.images.labels import calibrated_label
from hrtem_wf.io import read_arrays, read_json

KNOWN_GROW_A = -1.0
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


def write_hand_set(flow, spec: dict, directory, grow_A: float) -> dict:
    """The run's simulations drawn with other seeds by a raw camera, masks grown by grow_A, as
    8-bit PNG pairs: the real_sets block that reads them."""
    spec = copy.deepcopy(spec)
    spec["label"]["grow_A"] = grow_A
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
    """A run drawn with grow_A 0, then its images block calibrated against a hand set whose
    outlines lie 1.0 A inside: (flow, uncalibrated masks, the dry run of the change)."""
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
    config["real_sets"] = {"hand": write_hand_set(flow, spec, root / "hand", KNOWN_GROW_A)}
    config["images"][BLOCK]["label"]["grow_A"] = {"calibrate": "hand"}
    flow.write_config(config)
    dry = flow.snakemake("-n", image)
    flow.snakemake(image)
    return flow, before, dry


def test_calibration_recovers_a_known_label_offset(calibrated):
    flow, _, _ = calibrated
    result = read_json(flow.path / f"results/calibrations/{BLOCK}.json")
    assert result["real_set"] == "hand"
    assert result["grow_A"] == pytest.approx(KNOWN_GROW_A, abs=0.2)
    # our labels lay 1 A outside the hand outline before, on it after
    assert result["label_offset_A"]["before"] == pytest.approx(-KNOWN_GROW_A, abs=0.2)
    assert abs(result["label_offset_A"]["after"]) <= 0.2
    assert result["gaps"]["after"]["edge_profile"] < result["gaps"]["before"]["edge_profile"]
    assert result["pilot"]["structures"] == [0, 1]
    assert (flow.path / f"results/calibrations/{BLOCK}.png").stat().st_size > 0


def test_images_are_drawn_with_the_calibrated_width(calibrated):
    flow, before, _ = calibrated
    grow_A = read_json(flow.path / f"results/calibrations/{BLOCK}.json")["grow_A"]
    store = zarr.open(str(flow.path / f"results/images/{BLOCK}/00000.zarr"), mode="r")
    assert store.attrs["config"]["label"]["grow_A"] == {"calibrate": "hand"}
    assert store.attrs["label_calibration"]["grow_A"] == grow_A
    assert all(r["label_grow_A"] == grow_A for r in store.attrs["records"])
    # the same draws (images identical), the labels moved in: fewer particle pixels
    np.testing.assert_array_equal(store["images"][:], before["images"])
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
    assert "## Label calibration" in table
    assert f"| {BLOCK} | hand | {result['grow_A']:.2f} |" in table
    # the report rule reads it; the plan counts it
    dry = flow.snakemake("-n", "-p", "report")
    assert f"--calibrations results/calibrations/{BLOCK}.json" in dry.stdout
    assert planned_jobs(validate(flow.config))["calibration"] == 1


def test_a_calibrated_label_needs_its_measurement():
    spec = {"label": {"grow_A": {"calibrate": "hand"}}}
    assert calibrated_label({"label": {"grow_A": -1.3}}, None)["label"]["grow_A"] == -1.3
    assert calibrated_label(spec, {"real_set": "hand", "grow_A": -0.7})["label"]["grow_A"] == -0.7
    with pytest.raises(ValueError, match="calibration"):
        calibrated_label(spec, None)
    with pytest.raises(ValueError, match="'other'"):
        calibrated_label(spec, {"real_set": "other", "grow_A": -0.7})
