"""Frozen-phonon multislice exit waves (abTEM) stored in Zarr."""

from hrtem_wf.simulations.multislice import simulate_structure

__all__ = ["simulate_structure"]
