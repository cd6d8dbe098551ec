"""Multislice exit waves: shapes, normalization, shared frozen-phonon displacements, band limit,
and the Zarr store the simulate stage writes."""

from __future__ import annotations

import abtem.core.fft
import numpy as np
import pytest
import scipy.fft
import zarr
from ase import Atoms
from ase.cluster import Octahedron

from hrtem_wf import cli
from hrtem_wf.codeversion import code_version
from hrtem_wf.simulations import simulate_structure
from hrtem_wf.simulations.multislice import displaced_configurations, resample_bandlimited

BLOCK = dict(
    device="cpu",
    energy_eV=300e3,
    potential_sampling_A=0.1,
    exit_wave_sampling_A=0.2,
    slice_thickness_A=2.0,
    projection="finite",
    parametrization="lobato",
    frozen_phonons=2,
    debye_waller_sigma_A={"Au": 0.1, "C": 0.1},
)
CELL_A = (24.0, 20.0, 24.0)  # x != y so a transposed array would show


def scene(particle_xy_A=(8.0, 12.0)) -> Atoms:
    """A small Au octahedron over a few loose C atoms, with the per-atom particle array."""
    rng = np.random.default_rng(1)
    carbon = Atoms("C40", positions=rng.uniform([0, 0, 2], [CELL_A[0], CELL_A[1], 8], (40, 3)))
    gold = Octahedron("Au", 3)
    gold.positions += [*particle_xy_A, 16.0] - gold.positions.mean(axis=0)
    atoms = carbon + gold
    atoms.cell = CELL_A
    atoms.pbc = (True, True, False)
    atoms.arrays["particle"] = np.r_[np.zeros(len(carbon), np.int8), np.ones(len(gold), np.int8)]
    return atoms


@pytest.fixture(scope="module")
def simulated():
    return simulate_structure(scene(), BLOCK, seed=3)


def test_shapes_dtype_and_sampling(simulated):
    for name in ("full", "particle"):
        waves = simulated[name]
        assert waves.dtype == np.complex64
        assert waves.shape == (2, 100, 120)  # (phonon, y, x): 20 A / 0.2, 24 A / 0.2
    assert simulated["attrs"]["sampling_A"] == pytest.approx((0.2, 0.2))


def test_vacuum_intensity_is_one(simulated):
    particle = simulated["particle"]
    # Far from the particle (at x = 8, y = 12 A) the particle-only wave is vacuum.
    vacuum = np.abs(particle[:, :, 90:]) ** 2
    assert vacuum.mean() == pytest.approx(1.0, rel=0.01)
    # Flux is conserved by the band-limited multislice: mean intensity 1 within 1 %.
    assert (np.abs(simulated["full"]) ** 2).mean() == pytest.approx(1.0, rel=0.01)


def test_particle_phase_sits_where_the_particle_is(simulated):
    phase = np.angle(simulated["particle"]).mean(axis=0)
    y, x = np.unravel_index(np.argmax(np.abs(phase)), phase.shape)
    assert abs(y * 0.2 - 12.0) < 3.0 and abs(x * 0.2 - 8.0) < 3.0


def test_phonons_differ_and_are_deterministic(simulated):
    assert np.abs(simulated["full"][0] - simulated["full"][1]).max() > 0.05
    again = simulate_structure(scene(), BLOCK, seed=3)
    np.testing.assert_array_equal(again["full"], simulated["full"])


def test_abtem_ffts_go_through_scipy_on_the_job_threads(monkeypatch):
    """`scipy_fft` serves abTEM's CPU FFTs (a private abTEM name: this fails if it moves), with
    the job's threads; the exit waves are the same bits with 1 or 2 workers."""
    workers = []
    original = scipy.fft.fft2

    def fft2(*args, **kwargs):
        workers.append(kwargs["workers"])
        return original(*args, **kwargs)

    monkeypatch.setattr(scipy.fft, "fft2", fft2)
    block = {**BLOCK, "frozen_phonons": 1}
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    one = simulate_structure(scene(), block, seed=3)
    assert len(workers) > 10 and set(workers) == {1}
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    two = simulate_structure(scene(), block, seed=3)
    assert set(workers[len(workers) // 2 :]) == {2}
    np.testing.assert_array_equal(one["full"], two["full"])
    assert abtem.core.fft._fft_dispatch.__module__ == "abtem.core.fft"  # restored afterwards


def test_particle_scene_shares_the_displacements():
    atoms = scene()
    configs = displaced_configurations(atoms, 3, {"Au": 0.1, "C": 0.1}, seed=5)
    is_particle = atoms.arrays["particle"].astype(bool)
    displacements = np.array([c.positions - atoms.positions for c in configs])
    rms = np.sqrt((displacements**2).mean())
    assert rms == pytest.approx(0.1, rel=0.15)
    assert not np.allclose(configs[0].positions, configs[1].positions)
    # The particle-only scene of configuration j is configuration j without the substrate.
    particle_only = configs[1][is_particle]
    np.testing.assert_array_equal(particle_only.positions, configs[1].positions[is_particle])


def test_missing_debye_waller_entry_is_an_error():
    with pytest.raises(ValueError, match="C"):
        displaced_configurations(scene(), 1, {"Au": 0.1}, seed=0)


def test_resampling_keeps_values_and_band_limits():
    ny, nx = 64, 64
    y, x = np.mgrid[:ny, :nx]
    slow = np.exp(1j * 0.3 * np.cos(2 * np.pi * 3 * x / nx)).astype(np.complex64)
    fast = np.exp(2j * np.pi * 30 * y / ny)  # above the coarse grid's Nyquist (16 cycles)
    out = resample_bandlimited(np.stack([slow, fast]), (16.0, 16.0), (32, 32), 300e3)
    np.testing.assert_allclose(out[0], slow[::2, ::2], atol=1e-5)
    assert np.abs(out[1]).max() < 1e-6  # removed by the band limit, not aliased


def _gpu_visible() -> bool:
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


@pytest.mark.skipif(_gpu_visible(), reason="a GPU is visible here")
def test_gpu_without_gpu_is_a_clear_error():
    with pytest.raises(RuntimeError, match="gpu"):
        simulate_structure(scene(), {**BLOCK, "device": "gpu"}, seed=0)


def test_simulate_cli_writes_the_store(tmp_path):
    import json

    import ase.io

    atoms = scene()
    atoms.info.update({"block_name": "s", "seed": 11, "structure_id": "s/00000", "radius_A": 5.0})
    ase.io.write(tmp_path / "s.extxyz", atoms, format="extxyz")
    store = tmp_path / "sim.zarr"
    cli.main(
        [
            "simulations",
            "--spec",
            json.dumps(BLOCK),
            "--seed",
            "1",
            "--block",
            "m",
            "--index",
            "0",
            "--structure",
            str(tmp_path / "s.extxyz"),
            "--output",
            str(store),
        ]
    )
    group = zarr.open_group(store, mode="r")
    assert group["full"].shape == (2, 100, 120) and group["full"].dtype == np.complex64
    assert group["full"].chunks == (1, 100, 120)  # one chunk per frozen phonon
    assert group["full"].compressors  # compressed
    attrs = dict(group.attrs)
    assert attrs["config"]["frozen_phonons"] == 2 and attrs["energy_eV"] == 300e3
    assert attrs["structure"]["info"]["radius_A"] == 5.0
    # the simulations stage's code version and the libraries its code imports
    assert attrs["provenance"]["code_version"] == code_version("hrtem_wf.simulations.stage:run")
    assert {"abTEM", "ase", "numpy", "zarr"} <= set(attrs["provenance"]["libraries"])
    assert not (tmp_path / "sim.zarr.partial").exists()


def test_dropping_the_empty_entrance_keeps_the_exit_wave():
    from hrtem_wf.simulations.multislice import drop_empty_entrance, exit_waves

    atoms = scene()
    gold = [atoms[atoms.arrays["particle"].astype(bool)]]
    shortened = drop_empty_entrance(gold, BLOCK["slice_thickness_A"])
    assert shortened[0].cell[2, 2] < atoms.cell[2, 2] - 5
    block = {**BLOCK, "frozen_phonons": 1}
    np.testing.assert_allclose(exit_waves(shortened, block), exit_waves(gold, block), atol=2e-3)
