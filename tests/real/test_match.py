"""`hrtem-wf match`: the estimators recover what made an "experimental" set simulated with the
project's own image formation (defocus and its sign, pixel size, dose, MTF), and the command
runs on real tiles (tests/data/real_au), writing blocks that validate and finite statistics."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import scipy.ndimage
import yaml

from hrtem_wf.cli import main
from hrtem_wf.config import validate, validate_block
from hrtem_wf.images.formation import apply_mtf, detector_counts, intensity, mtf, wave_spectrum
from hrtem_wf.images.lens import Lens
from hrtem_wf.io import write_arrays
from hrtem_wf.real.match import (
    Micrograph,
    image_statistics,
    match_micrographs,
    read_micrographs,
    realism_report,
    suggest_blocks,
)
from hrtem_wf.real.match.estimate import fcc_d_spacings_A, fit_thon_rings, pixel_size_from_bragg
from hrtem_wf.real.match.spectra import radial_spectrum

REAL = Path(__file__).parents[1] / "data" / "real_au"
ENERGY_EV = 200e3
CS_A = 1.0e7  # 1 mm
PIXEL_A = 0.6
DOSE = 300.0  # e/A^2: 108 counts per pixel
MTF_C = (0.1, 0.5, 2.5)  # the conventional recipe's camera
FOCAL_SPREAD_A = 40.0
D111_AU_A = 4.08 / math.sqrt(3.0)  # ASE's Au lattice constant, as match uses


def carbon_intensity(defocus_A: float, rng, n_px: int = 512, pixel_A: float = PIXEL_A):
    """Noise-free image of amorphous-carbon-like random phase (0.1 rad rms, 0.3 A grains)
    through formation.intensity: 200 kV, Cs 1 mm, quasi-coherent focal spread."""
    phase = scipy.ndimage.gaussian_filter(rng.standard_normal((n_px, n_px)), 0.3 / pixel_A)
    wave = np.exp(1j * 0.1 * phase / phase.std()).astype(np.complex64)
    lens = Lens(ENERGY_EV, defocus_A, {"C30": CS_A}, FOCAL_SPREAD_A, "quasi_coherent")
    return intensity(wave_spectrum(wave), (pixel_A, pixel_A), lens, fused=False)


def detector(image, rng, pixel_A: float = PIXEL_A, dose: float = DOSE):
    """Poisson counts at dose x pixel area, then the MTF: the images stage's detector."""
    return apply_mtf(detector_counts(image, dose, pixel_A, rng), *MTF_C)


def carbon_micrograph(defocus_A: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return detector(carbon_intensity(defocus_A, rng), rng)


def lattice_micrograph(pixel_A: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(image, mask): carbon at 600 A underfocus with two Au-like particles showing {111}
    (2.355 A) and {200} (2.04 A) lattice fringes."""
    rng = np.random.default_rng(seed)
    image = carbon_intensity(600.0, rng, pixel_A=pixel_A)
    mask = np.zeros(image.shape, np.uint8)
    yy, xx = np.indices(image.shape) * pixel_A
    for (cy, cx), d_A, angle in (((190, 200), D111_AU_A, 0.5), ((320, 310), 4.08 / 2, 2.0)):
        disc = np.hypot(yy - cy * pixel_A, xx - cx * pixel_A) < 40 * pixel_A
        phase = 2 * np.pi / d_A * (np.cos(angle) * xx + np.sin(angle) * yy)
        image = np.where(disc, 0.7 * image + 0.25 * np.cos(phase), image)  # lattice fringes
        mask[disc] = 1
    return detector(image, rng, pixel_A), mask


@pytest.fixture(scope="module")
def simulated_set():
    """Three 'experimental' micrographs of known lens and detector (raw counts)."""
    defoci = (800.0, -500.0, 1500.0)
    return defoci, [
        Micrograph(f"sim{i}", carbon_micrograph(d, seed=i), None, PIXEL_A)
        for i, d in enumerate(defoci)
    ]


def test_thon_rings_recover_defocus_and_its_sign(simulated_set):
    defoci, micrographs = simulated_set
    for true, micrograph in zip(defoci, micrographs):
        fit = fit_thon_rings(radial_spectrum(micrograph.image), PIXEL_A, ENERGY_EV, CS_A)
        # measured: 0.6-0.9 A off; the sign told by Cs (mirror residual 10-20x the best)
        assert abs(fit.defocus_A - true) < max(0.05 * abs(true), 20.0), (true, fit)
        assert fit.sign_determined and np.sign(fit.defocus_A) == np.sign(true)


def test_counts_recover_dose_and_mtf(simulated_set):
    defoci, micrographs = simulated_set
    report, _ = match_micrographs(micrographs, ENERGY_EV, counts=True)
    assert report["pixel_size"]["source"] == "file metadata"
    doses = [r["dose_e_per_A2"] for r in report["per_image"]]
    assert np.allclose(doses, DOSE, rtol=0.15), doses  # the mean count: ~0.5 % (the lens' loss)
    q = np.linspace(0.0, 0.5, 26)
    fitted = mtf(q, report["mtf"]["c1"], report["mtf"]["c2"], report["mtf"]["c3"])
    true = mtf(q, *MTF_C)
    assert np.max(np.abs(fitted / true - 1)) < 0.10, (report["mtf"], fitted / true)
    defocus = report["defocus_A"]
    assert defocus["min"] == pytest.approx(min(defoci), abs=20)
    assert defocus["max"] == pytest.approx(max(defoci), abs=20)


def test_known_mtf_recovers_dose_of_gray_values(simulated_set):
    """A camera writing 2.5 gray per count: with the MTF given, dose = mean^2 / N0 still holds."""
    _, micrographs = simulated_set
    scaled = [Micrograph(m.name, 2.5 * m.image, None, PIXEL_A) for m in micrographs]
    report, _ = match_micrographs(scaled, ENERGY_EV, mtf_c=MTF_C)
    doses = [r["dose_e_per_A2"] for r in report["per_image"]]
    assert np.allclose(doses, DOSE, rtol=0.15), doses
    gains = [r["gain_gray_per_count"] for r in report["per_image"]]
    assert np.allclose(gains, 2.5, rtol=0.15), gains


def test_pixel_size_from_lattice_fringes():
    pixel_A = 0.45
    micrograph = Micrograph("lattice", *lattice_micrograph(pixel_A, seed=7), None)
    report, _ = match_micrographs([micrograph], ENERGY_EV)
    pixel = report["pixel_size"]
    assert pixel["source"].startswith("Bragg")
    assert pixel["value_A"] == pytest.approx(pixel_A, rel=0.02)  # measured: +0.9 %
    assert pixel["bragg"]["confirmed_by"] == ["200"]  # the second particle's fringes
    assert pixel["ambiguity"] is None
    # the particles masked out, the carbon's rings give the defocus at the Bragg pixel size
    assert report["per_image"][0]["defocus_A"] == pytest.approx(600.0, rel=0.05)


def test_fit_contrast_needs_a_real_set(tmp_path):
    """--fit-contrast fits against the micrographs as a real set: without masks (or with
    --simulated images) one line says so, and nothing is written."""
    with pytest.raises(SystemExit) as exit:
        main(["match", str(REAL / "micrographs"), "--fit-contrast", "--out", str(tmp_path / "o")])
    (line,) = str(exit.value.code).splitlines()
    assert line.startswith("hrtem-wf match: --fit-contrast") and "--masks" in line
    assert not (tmp_path / "o").exists()


def test_one_family_of_bragg_spots_is_reported_as_ambiguous():
    """Spots of one spacing only: the pixel size assumes them {111}, and match.json says what it
    would be were they {200} or {220} (and warns), rather than pretending to know."""
    from hrtem_wf.real.match.measure import _pixel_size_ambiguity

    d_111, d_200 = D111_AU_A, 4.08 / 2
    spacings = fcc_d_spacings_A(4.08)
    one = pixel_size_from_bragg([0.19, 0.191, 0.189], spacings)
    one["evidence"] = {"n_micrographs_with_spots": 2}
    assert one["confirmed_by"] == []
    assert one["if_main_family_were"]["200"] == pytest.approx(one["pixel_size_A"] * d_200 / d_111)
    ambiguity = _pixel_size_ambiguity(one)
    assert f"{{200}} {one['if_main_family_were']['200']:.4g} A" in ambiguity
    assert "3 Bragg spots (2 micrographs)" in ambiguity and "--pixel-size-A" in ambiguity
    # a second family at the {200}/{111} ratio confirms it
    both = pixel_size_from_bragg([0.19, 0.191, 0.19 * d_111 / d_200], spacings)
    both["evidence"] = {"n_micrographs_with_spots": 1}
    assert both["confirmed_by"] == ["200"] and _pixel_size_ambiguity(both) is None
    assert _pixel_size_ambiguity({"pixel_size_A": None, "confirmed_by": []}) is None


def _finite_numbers(node) -> bool:
    if isinstance(node, dict):
        return all(_finite_numbers(v) for v in node.values())
    if isinstance(node, list):
        return all(_finite_numbers(v) for v in node)
    if isinstance(node, float):
        return math.isfinite(node)
    return True


def test_real_tiles_match_and_suggested_blocks_validate():
    micrographs, left_out, failed = read_micrographs(
        [REAL / "micrographs" / "train00.png", REAL / "micrographs" / "train07.png"],
        REAL / "masks",
    )
    assert left_out == failed == {}
    report, _ = match_micrographs(micrographs, ENERGY_EV)
    for key in ("pixel_size", "defocus_A", "cs_A", "mtf", "dose", "snr", "particles"):
        assert key in report
    assert report["pixel_size"]["source"].startswith("Bragg")
    assert 0.3 < report["pixel_size"]["value_A"] < 1.0
    assert report["dose"]["kind"] == "effective"  # 8-bit PNGs: no absolute dose
    particles = report["particles"]
    assert particles["diameter_A"]["n"] > 5 and 0 < particles["contrast"]["median"] < 1
    # 8-bit PNGs stretched to 0..255: the contrast ratio is not the sample's, the depth is
    assert particles["contrast_comparable"] is False and "8-bit" in particles["contrast_note"]
    assert particles["depth"]["n"] == particles["contrast"]["n"]
    assert 1 < particles["depth"]["median"] < 10
    assert _finite_numbers({k: v for k, v in report.items() if k != "per_image"})
    blocks = suggest_blocks(report)
    for section, named in blocks.items():
        for block in named.values():
            validate_block(section, block)
    images = next(iter(blocks["images"].values()))
    assert images["detector"]["pixel_size_A"] == pytest.approx(
        report["pixel_size"]["value_A"], 1e-3
    )


def test_realism_gaps_are_zero_for_the_same_set():
    image, mask = np.asarray(carbon_micrograph(400.0, seed=3)), np.zeros((512, 512), np.uint8)
    mask[200:260, 100:160] = 1
    stats = [image_statistics(image * (1 - 0.3 * mask), mask, PIXEL_A, median_px=0)]
    report = realism_report(stats, stats)
    for name, entry in report["statistics"].items():
        assert entry["gap"] == pytest.approx(0.0, abs=1e-12), name


def match_real_tiles(out, *extra: str):
    """`hrtem-wf match` on the real tiles with their masks at 200 kV (plus `extra` arguments)
    into `out`; returns `out`."""
    main(
        [
            "match",
            str(REAL / "micrographs"),
            "--masks",
            str(REAL / "masks"),
            "--voltage-kV",
            "200",
            *extra,
            "--out",
            str(out),
        ]
    )
    return out


def test_cli_end_to_end_on_real_tiles(tmp_path):
    rng = np.random.default_rng(11)
    images, masks = [], []
    for defocus in (300.0, 900.0):
        image = carbon_intensity(defocus, rng, n_px=256, pixel_A=0.5)
        mask = np.zeros(image.shape, np.uint8)
        mask[np.hypot(*(np.indices(image.shape) - 128)) < 25] = 1
        images.append(detector(image * (1 - 0.35 * mask), rng, pixel_A=0.5))
        masks.append(mask)
    store = tmp_path / "sim.zarr"
    write_arrays(
        store,
        {"images": np.stack(images).astype(np.float32), "masks": np.stack(masks)},
        {"config": {"detector": {"pixel_size_A": 0.5}}},
    )
    out = match_real_tiles(tmp_path / "match", "--simulated", str(store))
    names = ("match.json", "match.png", "suggested.yaml", "config.yaml")
    for name in (*names, "realism.json", "realism.png"):
        assert (out / name).stat().st_size > 0, name
    report = json.loads((out / "match.json").read_text())
    assert report["n_micrographs"] == 3
    suggested = yaml.safe_load((out / "suggested.yaml").read_text())
    for section, named in suggested.items():
        for block in named.values():
            validate_block(section, block)
    realism = json.loads((out / "realism.json").read_text())
    assert set(realism["statistics"]) == {
        "psd_shape",
        "nps_slope",
        "contrast",
        "particle_depth",
        "particle_diameter_A",
        "intensity",
        "edge_profile",
    }
    for entry in realism["statistics"].values():
        assert entry["gap"] is not None and math.isfinite(entry["gap"]) and entry["definition"]
    # the label width measured against the masks goes into the suggestion
    (images,) = suggested["images"].values()
    assert images["label"]["grow_A"] == pytest.approx(-realism["label_offset_A"], abs=0.01)
    assert images["blur_A"] == {"distribution": "uniform", "low": 0.5, "high": 1.5}  # the recipe's
    # against --simulated images nothing is redrawn: the dose stays the estimate
    assert images["dose_e_per_A2"]["distribution"] == "loguniform"
    assert report["contrast_fit"]["fitted"] is None
    assert "--simulated" in report["contrast_fit"]["why"]
    # config.yaml: a whole config that runs the suggestion and scores it on the micrographs
    config = validate(yaml.safe_load((out / "config.yaml").read_text()))
    (real_set,) = config["real_sets"].values()
    assert Path(real_set["micrographs"]) == (REAL / "micrographs").resolve()
    assert real_set["pixel_size_A"] == pytest.approx(report["pixel_size"]["value_A"], abs=1e-4)
    assert set(config["images"]) == set(suggested["images"])
    assert config["models"]["unet_matched"]["dataset"] == "matched"


def test_fragments_below_the_minimum_diameter_are_no_particles():
    """A 40 A particle and three specks of 2-4 A (at 0.5 A pixels): one particle, three
    fragments; its diameter alone in the statistics (the realism gap's particle diameters)."""
    from hrtem_wf.real.match.estimate import MIN_PARTICLE_DIAMETER_A, particle_statistics

    mask = np.zeros((200, 200), np.uint8)
    yy, xx = np.indices(mask.shape)
    mask[(yy - 100) ** 2 + (xx - 100) ** 2 <= 40**2] = 1  # 80 px = 40 A across
    for y, x, size in ((20, 20, 2), (30, 170, 4), (170, 30, 6)):
        mask[y : y + size, x : x + size] = 1
    image = np.where(mask, 60.0, 100.0)
    stats = particle_statistics(image, mask, pixel_size_A=0.5)
    assert stats["n_particles"] == 1 and stats["n_fragments"] == 3
    assert stats["min_diameter_A"] == MIN_PARTICLE_DIAMETER_A == 10.0
    (diameter,) = stats["diameters_A"]
    assert diameter == pytest.approx(40.0, rel=0.01)
    assert len(stats["contrasts"]) == 1


def test_gray_scale_tells_counts_from_clipped_exports():
    from hrtem_wf.real.match.measure import gray_scale

    rng = np.random.default_rng(0)
    counts = rng.poisson(20.0, (64, 64)).astype(float)
    assert gray_scale(counts, counts=True) == "counts"
    assert gray_scale(counts, counts=False) == "unknown"  # integers, but not clipped
    exported = np.clip(counts * 12 - 40, 0, 255).astype(np.uint8)
    assert gray_scale(exported, counts=False) == "8-bit export, clipped"
    assert gray_scale(counts + 0.5, counts=False) == "unknown"


def test_particle_depth_is_the_same_for_any_affine_gray_scale():
    """An 8-bit export stretches and offsets the counts: the contrast ratio changes with the
    offset, the depth (in the carbon's standard deviations) does not."""
    from hrtem_wf.real.match.estimate import particle_statistics

    rng = np.random.default_rng(5)
    mask = np.zeros((160, 160), np.uint8)
    yy, xx = np.indices(mask.shape)
    mask[(yy - 80) ** 2 + (xx - 80) ** 2 <= 30**2] = 1
    counts = rng.poisson(np.where(mask, 70.0, 100.0)).astype(float)
    exported = (counts - 40.0) * 2.0  # offset 40, stretched (within 0..255)
    raw, stretched = (particle_statistics(i, mask, 0.5) for i in (counts, exported))
    assert raw["contrasts"][0] == pytest.approx(0.3, abs=0.02)
    assert stretched["contrasts"][0] > 0.45  # the offset inflates the ratio
    (depth,) = raw["depths"]
    assert depth == pytest.approx(30.0 / 10.0, rel=0.1)  # 30 counts deep, carbon sd 10
    assert stretched["depths"][0] == pytest.approx(depth, rel=1e-6)


def test_match_with_masks_asks_the_workflow_to_calibrate_the_labels(tmp_path):
    """Without --simulated images the label width and the image blur are the workflow's to
    measure: the suggested images block calibrates both against the micrographs' real set. The
    dose is drawn around the estimate, and match.json says why it is not fitted."""
    out = match_real_tiles(tmp_path / "match")
    config = validate(yaml.safe_load((out / "config.yaml").read_text()))
    (images,) = config["images"].values()
    assert images["label"]["grow_A"] == {"calibrate": "matched_real"}
    assert images["blur_A"] == {"calibrate": "matched_real"}
    report = json.loads((out / "match.json").read_text())
    dose = report["dose"]["dose_e_per_A2"]["median"]
    assert report["dose"]["kind"] == "effective"
    around = {
        "distribution": "loguniform",
        "low": pytest.approx(dose / 2, abs=0.05),
        "high": pytest.approx(dose * 2, abs=0.05),
    }
    assert images["dose_e_per_A2"] == around
    pixel = report["pixel_size"]  # the tiles' spots: unconfirmed, and said so
    assert (pixel["ambiguity"] is None) == bool(pixel["bragg"]["confirmed_by"])
    fit = report["contrast_fit"]
    assert fit["statistic"] == "particle_depth" and fit["fitted"] is None
    assert fit["real_median"] == pytest.approx(report["particles"]["depth"]["median"])
    assert "--fit-contrast" in fit["why"]
    assert set(config["real_sets"]) == {"matched_real"}
    assert "{calibrate: <real set>}" in (out / "suggested.yaml").read_text()

    # --fit-contrast: an effective dose is the calibration's to fit, around the estimate
    out = match_real_tiles(tmp_path / "fitted", "--fit-contrast")
    config = validate(yaml.safe_load((out / "config.yaml").read_text()))
    (images,) = config["images"].values()
    assert images["dose_e_per_A2"] == {"calibrate": "matched_real", "around": around}
    fit = json.loads((out / "match.json").read_text())["contrast_fit"]
    assert fit["fitted"] == "images.matched_hrtem.dose_e_per_A2"
    assert fit["against"] == "matched_real"
    assert "results/calibrations/matched_hrtem.json" in fit["gaps"]


def test_match_keeps_a_measured_dose(tmp_path):
    """With gray values that are counts the dose is measured, not effective: the labels and the
    blur are calibrated, the dose is drawn around the measurement, --fit-contrast or not."""
    out = match_real_tiles(tmp_path / "match", "--counts", "--fit-contrast")
    (images,) = yaml.safe_load((out / "config.yaml").read_text())["images"].values()
    assert images["blur_A"] == {"calibrate": "matched_real"}
    assert images["dose_e_per_A2"]["distribution"] == "loguniform"
    report = json.loads((out / "match.json").read_text())
    assert report["dose"]["kind"] == "dose"
    assert report["contrast_fit"]["fitted"] is None
    assert "measured" in report["contrast_fit"]["why"]
