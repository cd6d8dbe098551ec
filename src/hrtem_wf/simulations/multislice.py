"""Frozen-phonon plane-wave multislice with abTEM, for the full scene and the particle alone.

Both scenes share one set of displaced configurations: configuration j of the particle-only
scene is configuration j of the full scene with the substrate atoms removed, so the label
made from the particle wave sees exactly the particle atoms that the image sees.
"""

from __future__ import annotations

import warnings

import abtem
import numpy as np
from abtem.core.energy import energy2wavelength
from abtem.inelastic.phonons import AtomsEnsemble
from ase import Atoms

from hrtem_wf.simulations.device import use_device


def displaced_configurations(
    atoms: Atoms, frozen_phonons: int, debye_waller_sigma_A: dict[str, float], seed: int
) -> list[Atoms]:
    """`frozen_phonons` copies of `atoms`, each displaced by abTEM's Gaussian frozen phonons.

    sigma is the RMS displacement per element and per Cartesian direction (U_iso = sigma^2)."""
    missing = sorted(set(atoms.get_chemical_symbols()) - set(debye_waller_sigma_A))
    if missing:
        raise ValueError(f"debye_waller_sigma_A has no entry for element(s) {missing}")
    sigmas = {
        el: float(s)
        for el, s in debye_waller_sigma_A.items()
        if el in set(atoms.get_chemical_symbols())
    }
    # abTEM draws configuration j from seed[j]: one 32-bit seed per configuration.
    seeds = tuple(int(s) for s in np.random.SeedSequence(seed).generate_state(frozen_phonons))
    phonons = abtem.FrozenPhonons(atoms, num_configs=frozen_phonons, sigmas=sigmas, seed=seeds)
    return list(phonons.to_atoms_ensemble().trajectory)


def exit_waves(configurations: list[Atoms], block: dict) -> np.ndarray:
    """Exit waves (frozen_phonon, ny, nx) complex64 at the potential sampling, one per
    configuration."""
    ensemble = AtomsEnsemble(configurations, ensemble_mean=False)
    potential = abtem.Potential(
        ensemble,
        sampling=block["potential_sampling_A"],
        slice_thickness=block["slice_thickness_A"],
        projection=block["projection"],
        parametrization=block["parametrization"],
        device="gpu" if block["device"] == "gpu" else "cpu",
    )
    wave = abtem.PlaneWave(energy=block["energy_eV"], device=potential.device)
    with warnings.catch_warnings():  # we want every configuration, which is what it warns about
        warnings.filterwarnings("ignore", message="ensemble_mean=False")
        waves = wave.multislice(potential).compute(scheduler="synchronous", progress_bar=False)
    if block["device"] == "gpu":
        waves = waves.to_cpu()
    array = np.asarray(waves.array, dtype=np.complex64)
    return array.reshape((len(configurations),) + array.shape[-2:])


def resample_bandlimited(
    waves: np.ndarray,
    extent_A: tuple[float, float],
    gpts: tuple[int, int],
    energy_eV: float,
    propagate_A: float = 0.0,
) -> np.ndarray:
    """Fourier-crop waves to `gpts`, keep only |k| below the new grid's Nyquist frequency (an
    isotropic band limit, so no direction is favoured), and propagate them by `propagate_A`
    (abTEM's Fresnel convention; negative = back towards the source). Values are preserved:
    a vacuum wave stays 1."""
    ny_in, nx_in = waves.shape[-2:]
    ny, nx = gpts
    if ny > ny_in or nx > nx_in:
        raise ValueError(f"cannot upsample exit waves from {(ny_in, nx_in)} to {gpts} pixels")
    spectrum = np.fft.fft2(waves)
    # Keep the lowest ny x nx frequencies (Fourier interpolation onto the coarser grid).
    ky_keep = np.fft.fftfreq(ny, 1 / ny).astype(int)  # integer frequency indices
    kx_keep = np.fft.fftfreq(nx, 1 / nx).astype(int)
    iy, ix = ky_keep % ny_in, kx_keep % nx_in  # where they sit in the finer spectrum
    cropped = spectrum[..., iy[:, None], ix[None, :]]

    ky = ky_keep / extent_A[0]  # spatial frequencies, 1/A
    kx = kx_keep / extent_A[1]
    k2 = ky[:, None] ** 2 + kx[None, :] ** 2
    k_max = min(ny / extent_A[0], nx / extent_A[1]) / 2  # Nyquist of the coarser grid
    aperture = k2 < k_max**2
    propagator = np.exp(-1j * np.pi * energy2wavelength(energy_eV) * k2 * propagate_A)
    cropped *= aperture * propagator
    # fft2 sums over ny_in*nx_in pixels, ifft2 divides by ny*nx: rescale to keep values.
    resampled = np.fft.ifft2(cropped) * (ny * nx) / (ny_in * nx_in)
    return resampled.astype(np.complex64)


# Atoms' potentials reach a few A; keep this much empty space above the first atom.
ENTRANCE_MARGIN_A = 4.0


def drop_empty_entrance(configurations: list[Atoms], slice_thickness_A: float) -> list[Atoms]:
    """Remove the atom-free slab at the beam entrance (z = 0 up to the first atom).

    A plane wave crossing vacuum stays a plane wave, so the exit wave is unchanged while the
    particle-only scene (substrate removed) skips most of its slices. The exit plane stays at
    the cell top, so both scenes share the same reference plane. The cut is a whole number of
    slices so every atom stays in the same slice as in the full-height cell."""
    z_first = min(config.positions[:, 2].min() for config in configurations)
    cut_A = max(0.0, z_first - ENTRANCE_MARGIN_A) // slice_thickness_A * slice_thickness_A
    shortened = []
    for config in configurations:
        config = config.copy()
        config.positions[:, 2] -= cut_A
        config.cell[2, 2] -= cut_A
        shortened.append(config)
    return shortened


def simulate_structure(atoms: Atoms, block: dict, seed: int) -> dict:
    """Run the full scene and the particle-only scene; return stored arrays and attributes.

    Returns {"full": (P, ny, nx) complex64, "particle": ..., "attrs": {...}} with the exit
    waves band-limited, resampled to `exit_wave_sampling_A` and referenced to the centre plane
    of the model (defocus 0 focuses there)."""
    if "particle" not in atoms.arrays:
        raise ValueError("structure has no per-atom 'particle' array (is it a hrtem_wf structure?)")
    is_particle = atoms.arrays["particle"].astype(bool)
    cell_A = np.diag(atoms.cell.array).copy()
    extent_A = (float(cell_A[1]), float(cell_A[0]))  # (y, x) as our arrays are indexed
    gpts = (
        int(round(extent_A[0] / block["exit_wave_sampling_A"])),
        int(round(extent_A[1] / block["exit_wave_sampling_A"])),
    )

    with use_device(block["device"]):
        full_configs = displaced_configurations(
            atoms, block["frozen_phonons"], block["debye_waller_sigma_A"], seed
        )
        particle_configs = [config[is_particle] for config in full_configs]
        particle_configs = drop_empty_entrance(particle_configs, block["slice_thickness_A"])
        stored = {}
        for name, configs in (("full", full_configs), ("particle", particle_configs)):
            waves = exit_waves(configs, block)
            # abTEM returns (x, y) ordered arrays: store (y, x) so image rows are y.
            waves = np.swapaxes(waves, -1, -2)
            stored[name] = resample_bandlimited(
                waves, extent_A, gpts, block["energy_eV"], propagate_A=-float(cell_A[2]) / 2
            )

    sampling_A = (extent_A[0] / gpts[0], extent_A[1] / gpts[1])
    attrs = {
        "sampling_A": sampling_A,
        "extent_A": extent_A,
        "cell_A": cell_A.tolist(),
        "energy_eV": float(block["energy_eV"]),
        "wavelength_A": float(energy2wavelength(block["energy_eV"])),
        "reference_plane": "model centre (z = cell height / 2); defocus 0 focuses there",
        "axes": ["frozen_phonon", "y", "x"],
        "frozen_phonons": int(block["frozen_phonons"]),
        "seed": int(seed),
    }
    return {"full": stored["full"], "particle": stored["particle"], "attrs": attrs}
