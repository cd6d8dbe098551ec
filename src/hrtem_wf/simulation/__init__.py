"""Frozen-phonon multislice exit waves (abTEM) stored in Zarr."""

from hrtem_wf.simulation.multislice import simulate_structure

__all__ = ["simulate_structure"]
