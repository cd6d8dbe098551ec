"""Particle analysis (hrtem_wf.real.particles): per-particle Fourier peaks and the zone-axis flag.

Synthetic fringe images check the mechanics (pairs, spacings, the ratio, labels); abTEM
simulations of a small Au particle on and off the [110] zone axis check that the flag tells them
apart; `hrtem-wf predict --analyze` runs on one of them with an untrained (seeded) network.
"""

from __future__ import annotations

import csv
import json
import logging
import math

import numpy as np
import pytest
import scipy.ndimage

from hrtem_wf.real.particles import (
    CSV_COLUMNS,
    DEFAULT_MAX_RATIO,
    analyze_particles,
    angle_between_deg,
    write_particles_csv,
)

PIXEL_SIZE_A = 0.125


# --- synthetic fringes ----------------------------------------------------------------------


def fringes(shape, fringe_sets, pixel_size_A=PIXEL_SIZE_A, noise=0.02, seed=0) -> np.ndarray:
    """1 + sum a cos(2 pi k.r) over (amplitude, spacing_A, angle_deg), plus Gaussian noise."""
    yy, xx = np.mgrid[: shape[0], : shape[1]] * pixel_size_A
    image = np.ones(shape)
    for amplitude, spacing_A, angle_deg in fringe_sets:
        k_x = math.cos(math.radians(angle_deg)) / spacing_A
        k_y = math.sin(math.radians(angle_deg)) / spacing_A
        image += amplitude * np.cos(2 * np.pi * (k_x * xx + k_y * yy) + 0.3)
    return image + np.random.default_rng(seed).normal(0.0, noise, shape)


def disk(shape, centre_yx_px, radius_px) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - centre_yx_px[0]) ** 2 + (xx - centre_yx_px[1]) ** 2 <= radius_px**2


CROSSED = ((0.3, 2.35, 20.0), (0.2, 2.04, 75.0))  # two sets, amplitude ratio 1.5


def test_crossed_fringes_give_two_pairs_at_their_spacings_and_the_amplitude_ratio_squared():
    shape, radius_px = (256, 256), 100  # a disk of 25 A diameter
    (particle,) = analyze_particles(
        fringes(shape, CROSSED), disk(shape, (128, 128), radius_px), 0.125
    )
    assert particle.n_pairs == 2 and particle.n_directions == 2
    # one frequency pixel of the particle: 1 / its diameter
    tolerance_per_A = 1 / (2 * radius_px * PIXEL_SIZE_A)
    for pair, (amplitude, spacing_A, angle_deg) in zip(particle.pairs, CROSSED):
        assert abs(pair.k_per_A - 1 / spacing_A) < tolerance_per_A / 4
        assert pair.spacing_A == pytest.approx(spacing_A, rel=0.01)
        assert angle_between_deg(pair.angle_deg, angle_deg) < 1.0
        # summed peak power: a^2 / 4 of which the disk around the peak holds most
        assert 0.7 * amplitude**2 / 4 < pair.power <= 1.05 * amplitude**2 / 4
    # peak powers go as the amplitude squared: (0.3 / 0.2)^2 = 2.25
    assert particle.ratio == pytest.approx(2.25, rel=0.03)
    assert particle.ratio_all_pairs == particle.ratio
    assert particle.zone_axis  # two crossed sets, 2.25 <= 4
    # a fainter second set: ratio (0.3 / 0.1)^2 = 9 > 4, crossed but not a zone axis
    faint = ((0.3, 2.35, 20.0), (0.1, 2.04, 75.0))
    (particle,) = analyze_particles(
        fringes(shape, faint), disk(shape, (128, 128), radius_px), 0.125
    )
    assert particle.n_directions == 2 and particle.ratio == pytest.approx(9.0, rel=0.05)
    assert not particle.zone_axis


def test_one_fringe_set_and_its_harmonic_are_one_direction_not_a_zone_axis():
    shape = (256, 256)
    mask = disk(shape, (128, 128), 100)
    (single,) = analyze_particles(fringes(shape, [(0.3, 2.35, 30.0)]), mask, PIXEL_SIZE_A)
    assert single.n_pairs == 1 and single.n_directions == 1
    assert single.ratio is None and single.ratio_all_pairs is None and not single.zone_axis
    # a fringe set and its second harmonic (3.0 and 1.5 A): two pairs, one direction
    harmonic = [(0.3, 3.0, 30.0), (0.15, 1.5, 30.0)]
    (particle,) = analyze_particles(fringes(shape, harmonic), mask, PIXEL_SIZE_A)
    assert particle.n_pairs == 2 and particle.n_directions == 1
    assert particle.ratio is None and particle.ratio_all_pairs == pytest.approx(4.0, rel=0.05)
    assert not particle.zone_axis


def test_empty_mask_noise_and_small_components():
    shape = (128, 128)
    image = fringes(shape, CROSSED)
    assert analyze_particles(image, np.zeros(shape, bool), PIXEL_SIZE_A) == []
    # a component of 64 px = 1 A^2 is below min_area_A2 (100 A^2)
    tiny = np.zeros(shape, bool)
    tiny[10:18, 10:18] = True
    assert analyze_particles(image, tiny, PIXEL_SIZE_A) == []
    assert len(analyze_particles(image, tiny, PIXEL_SIZE_A, min_area_A2=0.5)) == 1
    # pure noise (Poisson counts): no lattice pairs
    counts = np.random.default_rng(3).poisson(20.0, shape).astype(float)
    (particle,) = analyze_particles(counts, disk(shape, (64, 64), 60), PIXEL_SIZE_A)
    assert particle.n_pairs == 0 and particle.ratio is None and not particle.zone_axis


def test_two_particles_each_see_only_their_own_lattice():
    shape = (256, 512)
    left = fringes(shape, CROSSED, seed=1)
    right = fringes(shape, [(0.3, 2.8, 120.0)], seed=2)
    image = np.where(np.arange(512)[None, :] < 256, left, right)
    mask = disk(shape, (128, 128), 90) | disk(shape, (128, 384), 90)
    particles = analyze_particles(image, mask, PIXEL_SIZE_A)
    assert [p.label for p in particles] == [1, 2]
    assert particles[0].centroid_yx_px == pytest.approx((128, 128), abs=0.01)
    assert particles[1].centroid_yx_px == pytest.approx((128, 384), abs=0.01)
    assert particles[0].area_px == particles[1].area_px == disk(shape, (128, 128), 90).sum()
    assert particles[0].area_A2 == pytest.approx(particles[0].area_px * PIXEL_SIZE_A**2)
    assert sorted(round(p.spacing_A, 1) for p in particles[0].pairs) == [2.0, 2.4]
    assert [round(p.spacing_A, 1) for p in particles[1].pairs] == [2.8]
    assert particles[0].zone_axis and not particles[1].zone_axis


def test_particles_csv(tmp_path):
    shape = (256, 512)
    image = np.where(
        np.arange(512)[None, :] < 256,
        fringes(shape, CROSSED),
        fringes(shape, [(0.3, 2.8, 120.0)]),
    )
    mask = disk(shape, (128, 128), 90) | disk(shape, (128, 384), 90)
    particles = analyze_particles(image, mask, PIXEL_SIZE_A)
    write_particles_csv(tmp_path / "p.csv", particles)
    with open(tmp_path / "p.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == list(CSV_COLUMNS) and len(rows) == 2
    first, second = rows
    assert first["label"] == "1" and first["zone_axis"] == "True" and first["n_pairs"] == "2"
    assert float(first["ratio"]) == pytest.approx(particles[0].ratio, rel=1e-5)
    spacings = [float(s) for s in first["spacing_A"].split(";")]
    assert spacings == pytest.approx([p.spacing_A for p in particles[0].pairs], abs=1e-4)
    assert float(first["centroid_x_px"]) == pytest.approx(128, abs=0.01)
    assert second["ratio"] == "" and second["zone_axis"] == "False"
    assert second["n_directions"] == "1" and float(second["spacing_A"]) == pytest.approx(2.8, 0.01)
    assert not list(tmp_path.glob("*.partial"))


def test_arguments_are_checked():
    image, mask = np.zeros((64, 64)), np.ones((64, 64), bool)
    with pytest.raises(ValueError, match="same 2-D shape"):
        analyze_particles(image, mask[:32], PIXEL_SIZE_A)
    with pytest.raises(ValueError, match="Nyquist"):
        analyze_particles(image, mask, 0.8)  # Nyquist 0.625 / A < 1 / 1.3 A
    with pytest.raises(ValueError, match="k_min_per_A < k_max_per_A"):
        analyze_particles(image, mask, PIXEL_SIZE_A, k_min_per_A=0.5, k_max_per_A=0.4)
    with pytest.raises(ValueError, match="min_pairs"):
        analyze_particles(image, mask, PIXEL_SIZE_A, min_pairs=1)


# --- simulated Au particles on and off the zone axis ----------------------------------------

CELL_XY_A = 50.0
RADIUS_A = 13.0
TILT_DEG = 10.0
ENERGY_EV = 300e3
CS_A = 2e5  # 20 um
DEFOCUS_A = 75.0  # Scherzer, 1.2 sqrt(Cs lambda) (abTEM sign: underfocus), strong {111}, {200}
POTENTIAL_SAMPLING_A = 0.1
DOSES_E_PER_A2 = (1000.0, 4000.0)


def au_particle(tilt_deg: float = 0.0):
    """A sphere of fcc Au (radius RADIUS_A, centred on an atom) with [110] along the beam (z),
    tilted by tilt_deg about the x axis (45 degrees from [001] and [1-10] in the image plane),
    centred in a CELL_XY_A cell with 4 A of vacuum above and below."""
    from ase.build import bulk

    crystal = bulk("Au", "fcc", a=4.078, cubic=True).repeat((9, 9, 9))
    middle = crystal.positions.mean(axis=0)
    centre = crystal.positions[np.argmin(np.linalg.norm(crystal.positions - middle, axis=1))]
    particle = crystal[np.linalg.norm(crystal.positions - centre, axis=1) <= RADIUS_A]
    particle.positions -= centre
    particle.rotate((1, 1, 0), (0, 0, 1))
    if tilt_deg:
        particle.rotate(tilt_deg, (1, 0, 0))
    low, high = particle.positions[:, 2].min(), particle.positions[:, 2].max()
    particle.cell = [CELL_XY_A, CELL_XY_A, high - low + 8.0]
    particle.positions += (CELL_XY_A / 2, CELL_XY_A / 2, 4.0 - low)
    particle.pbc = True
    return particle


def exit_wave(atoms) -> np.ndarray:
    """abTEM plane-wave multislice (no phonons), (y, x) ordered as the project stores waves."""
    import abtem

    potential = abtem.Potential(
        atoms,
        sampling=POTENTIAL_SAMPLING_A,
        slice_thickness=2.0,
        projection="infinite",
        parametrization="lobato",
    )
    waves = abtem.PlaneWave(energy=ENERGY_EV).multislice(potential)
    waves = waves.compute(scheduler="synchronous", progress_bar=False)
    return np.swapaxes(np.asarray(waves.array, dtype=np.complex64), -1, -2)


def footprint_mask(atoms, shape, pixel_size_A=PIXEL_SIZE_A, radius_A=1.5) -> np.ndarray:
    """Pixels within radius_A of a projected atom, holes filled: what a predicted mask is."""
    centres_px = atoms.positions[:, [1, 0]] / pixel_size_A - 0.5  # (y, x), pixel centres
    near = np.zeros(shape, bool)
    near[tuple(np.clip(np.round(centres_px).astype(int), 0, np.array(shape) - 1).T)] = True
    distance_px = scipy.ndimage.distance_transform_edt(~near)
    return scipy.ndimage.binary_fill_holes(distance_px * pixel_size_A <= radius_A)


@pytest.fixture(scope="module")
def simulated():
    """{'zone axis' | 'tilted': (noise-free image at PIXEL_SIZE_A, mask)}."""
    from hrtem_wf.images.formation import intensity, resample_to_pixel_size, wave_spectrum
    from hrtem_wf.images.lens import Lens

    out = {}
    for name, tilt_deg in (("zone axis", 0.0), ("tilted", TILT_DEG)):
        atoms = au_particle(tilt_deg)
        sampling = (POTENTIAL_SAMPLING_A, POTENTIAL_SAMPLING_A)
        lens = Lens(ENERGY_EV, DEFOCUS_A, {"C30": CS_A})
        image = intensity(wave_spectrum(exit_wave(atoms)), sampling, lens)
        image = resample_to_pixel_size(image, sampling, PIXEL_SIZE_A)
        out[name] = (image, footprint_mask(atoms, image.shape))
    return out


def noisy(image: np.ndarray, dose_e_per_A2: float, seed: int = 0) -> np.ndarray:
    from hrtem_wf.images.formation import detector_counts

    return detector_counts(image, dose_e_per_A2, PIXEL_SIZE_A, np.random.default_rng(seed))


def test_simulated_particle_and_mask(simulated):
    image, mask = simulated["zone axis"]
    assert image.shape == (400, 400) and 0.5 < image.mean() < 1.5
    area_A2 = mask.sum() * PIXEL_SIZE_A**2
    # a disk of the sphere's radius plus the 1.5 A margin, give or take the facets
    assert 0.8 < area_A2 / (np.pi * (RADIUS_A + 1.5) ** 2) < 1.1
    (particle,) = analyze_particles(image, mask, PIXEL_SIZE_A)  # noise-free
    # [110] fcc: two {111} sets (2.355 A, 70.5 degrees apart) and {200} (2.039 A)
    spacings = sorted(p.spacing_A for p in particle.principal[:3])
    assert spacings == pytest.approx([2.039, 2.355, 2.355], rel=0.015)
    a, b = (p for p in particle.principal if p.spacing_A > 2.2)
    assert angle_between_deg(a.angle_deg, b.angle_deg) == pytest.approx(70.5, abs=1.5)


@pytest.mark.parametrize("dose", DOSES_E_PER_A2)
def test_zone_axis_flag_separates_on_axis_from_tilted(simulated, dose):
    results = {}
    for name, (image, mask) in simulated.items():
        (particle,) = analyze_particles(noisy(image, dose), mask, PIXEL_SIZE_A)
        results[name] = particle
        print(
            f"dose {dose:.0f} e/A^2, {name}: {particle.n_pairs} pairs, {particle.n_directions} "
            f"directions, ratio {particle.ratio:.3g} (all pairs {particle.ratio_all_pairs:.3g}), "
            f"zone axis {particle.zone_axis}; principal spacings "
            + ", ".join(f"{p.spacing_A:.3f} A @ {p.angle_deg:.0f} deg" for p in particle.principal)
        )
    on_axis, tilted = results["zone axis"], results["tilted"]
    assert on_axis.zone_axis and on_axis.n_directions >= 2
    assert on_axis.ratio < DEFAULT_MAX_RATIO / 1.5  # measured 1.8 to 1.9
    assert not tilted.zone_axis
    assert tilted.n_directions < 2 or tilted.ratio > 5 * DEFAULT_MAX_RATIO  # measured 74


# --- hrtem-wf predict --analyze --------------------------------------------------------------


def model_dir(tmp_path, pixel_size_A):
    """An untrained (seeded) tiny network saved as training would: predict needs no more."""
    import torch

    from conftest import TINY_MODEL_BLOCK
    from hrtem_wf.models.model import build_model

    block = {**TINY_MODEL_BLOCK, "encoder": "resnet18", "encoder_depth": 1, "decoder_channels": [4]}
    torch.manual_seed(0)
    path = tmp_path / f"model_{pixel_size_A}"
    path.mkdir()
    torch.save(build_model(block).state_dict(), path / "weights.pt")
    metadata = {
        "block": block,
        "model": "t",
        "seed": 0,
        "dataset": None,
        "pixel_size_A": pixel_size_A,
        "best_epoch": 1,
    }
    (path / "metadata.json").write_text(json.dumps(metadata))
    return str(path)


def test_cli_predict_analyze(simulated, tmp_path, caplog):
    """threshold 0: the (untrained) network's mask is the whole frame, one particle; the CSV
    must be what analyze_particles gives for the written mask, at the model's pixel size (the
    .npy micrograph records none)."""
    from hrtem_wf.cli import main
    from hrtem_wf.real.micrographs import read_mask_png

    image = noisy(simulated["zone axis"][0], 4000.0)
    np.save(tmp_path / "au.npy", image)
    out = tmp_path / "out"
    arguments = [str(tmp_path / "au.npy"), "--out", str(out), "--threshold", "0", "--analyze"]
    with caplog.at_level(logging.INFO, logger="hrtem_wf"):
        assert main(["predict", model_dir(tmp_path, PIXEL_SIZE_A), *arguments]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "au_lattice.csv",
        "au_mask.png",
        "au_particles.csv",
        "au_probability.tif",
        "particle_sizes.json",
        "particle_sizes.png",
        "particles.csv",
    ]
    mask = read_mask_png(out / "au_mask.png")
    expected = analyze_particles(image, mask, PIXEL_SIZE_A)
    with open(out / "au_lattice.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["label"] for row in rows] == [str(p.label) for p in expected]
    assert rows == [{k: str(v) for k, v in p.row().items()} for p in expected]
    with open(out / "au_particles.csv", newline="") as handle:  # the sizes, joined by label
        sizes = {row["label"]: row["zone_axis"] for row in csv.DictReader(handle)}
    assert sizes == {str(p.label): str(p.zone_axis) for p in expected}
    messages = [r.getMessage() for r in caplog.records]
    assert any("nominal pixel size 0.125 A" in m for m in messages)
    summaries = [m for m in messages if m.startswith("analyze ")]
    assert len(summaries) == 1 and f"{len(expected)} particle(s)" in summaries[0]

    # no pixel size anywhere: a clear message, before any inference
    with pytest.raises(SystemExit, match="records no pixel size"):
        main(["predict", model_dir(tmp_path, None), arguments[0], "--out", str(out), "--analyze"])
