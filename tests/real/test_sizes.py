"""Particle sizes and counts from masks (hrtem_wf.real.sizes) against values computed by hand on
synthetic masks, and `hrtem-wf predict`'s size tables and figure."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch

from conftest import TINY_MODEL_BLOCK
from hrtem_wf.real.sizes import measure_particles, relative_errors, size_summary

PIXEL_A = 0.5  # 20 px per nm


def _disk(mask, cy, cx, radius_px):
    yy, xx = np.indices(mask.shape)
    mask[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius_px**2] = 1


def test_disks_ellipse_border_and_fragment_by_hand():
    mask = np.zeros((200, 300), np.uint8)
    _disk(mask, 50, 50, 20)  # 40 px = 2 nm across
    _disk(mask, 140, 60, 30)  # 3 nm across
    yy, xx = np.indices(mask.shape)
    mask[((yy - 100) / 15.0) ** 2 + ((xx - 200) / 30.0) ** 2 <= 1] = 1  # a 2:1 ellipse
    _disk(mask, 0, 260, 30)  # cut by the border
    mask[190:192, 150:152] = 1  # a 2 x 2 px speck: 1.1 A across, a fragment
    particles, fragments = measure_particles(mask, PIXEL_A)
    assert fragments == 1 and len(particles) == 4
    by_position = {(round(p.centroid_y_px), round(p.centroid_x_px)): p for p in particles}
    small, large, ellipse = by_position[(50, 50)], by_position[(140, 60)], by_position[(100, 200)]
    for particle, cy, cx in ((small, 50, 50), (large, 140, 60)):
        n = int(((yy - cy) ** 2 + (xx - cx) ** 2 <= (20 if particle is small else 30) ** 2).sum())
        assert particle.area_px == n
        assert particle.area_nm2 == pytest.approx(n * 0.05**2)
        assert particle.diameter_nm == pytest.approx(2 * math.sqrt(n * 0.05**2 / math.pi))
        assert particle.aspect_ratio == pytest.approx(1.0, abs=0.02)
        assert not particle.touches_border
    assert small.diameter_nm == pytest.approx(2.0, rel=0.02)
    assert large.diameter_nm == pytest.approx(3.0, rel=0.02)
    assert ellipse.aspect_ratio == pytest.approx(2.0, rel=0.03)
    (cut,) = [p for p in particles if p.touches_border]
    assert cut.centroid_y_px == pytest.approx(4 * 30 / (3 * math.pi), abs=0.5)  # a half disk
    assert cut.centroid_x_px == pytest.approx(260.0)

    summary = size_summary(particles, fragments)
    sized = [small.diameter_nm, large.diameter_nm, ellipse.diameter_nm]
    assert summary["count"] == 4 and summary["touching_border"] == 1 and summary["sized"] == 3
    assert summary["fragments"] == 1
    assert summary["mean_diameter_nm"] == pytest.approx(np.mean(sized))
    assert summary["sd_diameter_nm"] == pytest.approx(np.std(sized, ddof=1))
    assert summary["median_diameter_nm"] == pytest.approx(np.median(sized))
    assert summary["p90_diameter_nm"] == pytest.approx(np.percentile(sized, 90))
    with_border = size_summary(particles, include_border=True)
    assert with_border["sized"] == 4 and with_border["mean_diameter_nm"] < np.mean(sized)


def test_lognormal_fit_recovers_its_parameters_and_errors_are_relative():
    from hrtem_wf.real.sizes import ParticleSize

    rng = np.random.default_rng(0)
    diameters = rng.lognormal(np.log(3.0), 0.25, 2000)
    particles = [
        ParticleSize(i, 1, math.pi * d**2 / 4, float(d), 0.0, 0.0, 1.0, 1.0, False)
        for i, d in enumerate(diameters)
    ]
    summary = size_summary(particles)
    assert summary["lognormal_median_nm"] == pytest.approx(3.0, rel=0.02)
    assert summary["lognormal_sigma"] == pytest.approx(0.25, rel=0.05)
    hand = {"count": 100, "mean_diameter_nm": 2.0}
    errors = relative_errors({"count": 95, "mean_diameter_nm": 2.1}, hand)
    assert errors["count_error"] == pytest.approx(-0.05)
    assert errors["mean_diameter_error"] == pytest.approx(0.05)
    none = relative_errors(
        {"count": 3, "mean_diameter_nm": None}, {"count": 0, "mean_diameter_nm": 1}
    )
    assert none == {"count_error": None, "mean_diameter_error": None}


def test_a_bad_mask_or_pixel_size_is_refused():
    with pytest.raises(ValueError, match="not a 2-D image"):
        measure_particles(np.zeros((2, 3, 4)), 1.0)
    with pytest.raises(ValueError, match="particle sizes need a positive one"):
        measure_particles(np.zeros((4, 4)), 0.0)


def test_predict_writes_each_micrograph_s_particles_and_the_pooled_statistics(
    tmp_path, monkeypatch
):
    """A model with a nominal pixel size whose maps are the micrographs' two disks (a 2 nm one
    inside, one cut by the border): per micrograph <stem>_particles.csv (the sizes of its
    written mask), pooled particles.csv, particle_sizes.json and .png over the call."""
    import hrtem_wf.real.inference
    from hrtem_wf.cli import main
    from hrtem_wf.models.model import build_model
    from hrtem_wf.real.micrographs import read_mask_png

    block = {**TINY_MODEL_BLOCK, "encoder": "dpn68", "encoder_depth": 1, "decoder_channels": [2]}
    model = tmp_path / "model"
    model.mkdir()
    torch.manual_seed(0)
    torch.save(build_model(block).eval().state_dict(), model / "weights.pt")
    metadata = {"block": block, "model": "t", "seed": 0, "dataset": None, "best_epoch": 1}
    (model / "metadata.json").write_text(json.dumps({**metadata, "pixel_size_A": 0.4}))
    rng = np.random.default_rng(0)
    files = []
    disks = np.zeros((128, 128), np.float32)
    _disk(disks, 64, 64, 25)  # 50 px at 0.4 A: 2 nm
    _disk(disks, 0, 20, 30)
    monkeypatch.setattr(hrtem_wf.real.inference, "predict_micrograph", lambda *a, **k: disks)
    for name in ("a", "b"):
        image = 100 + 10 * rng.standard_normal((128, 128)) - 30 * disks
        np.save(tmp_path / f"{name}.npy", image.astype(np.float32))
        files.append(str(tmp_path / f"{name}.npy"))
    out = tmp_path / "out"
    main(["predict", str(model), *files, "--out", str(out), "--tile-px", "64",
          "--overlap-px", "32", "--threshold", "0.5"])  # fmt: skip
    summary = json.loads((out / "particle_sizes.json").read_text())
    pooled_rows = list(csv.DictReader(open(out / "particles.csv")))
    total = 0
    for name in ("a", "b"):
        rows = list(csv.DictReader(open(out / f"{name}_particles.csv")))
        particles, fragments = measure_particles(read_mask_png(out / f"{name}_mask.png"), 0.4)
        assert [float(r["diameter_nm"]) for r in rows] == [
            pytest.approx(p.diameter_nm, abs=1e-4) for p in particles
        ]
        per = summary["per_micrograph"][str(tmp_path / f"{name}.npy")]
        assert per["count"] == len(rows) and per["fragments"] == fragments
        assert all(r["micrograph"] == f"{name}.npy" for r in rows)
        total += len(rows)
        assert [r["touches_border"] for r in rows] == ["True", "False"]
    assert summary["pooled"]["count"] == total == len(pooled_rows) == 4
    assert summary["pooled"]["mean_diameter_nm"] == pytest.approx(2.0, rel=0.02)
    assert (out / "particle_sizes.png").stat().st_size > 0
    assert not list(out.glob(".*"))  # nothing staged left
