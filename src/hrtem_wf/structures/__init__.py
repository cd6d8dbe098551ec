"""Random HRTEM scenes: an FCC nanoparticle with {111} planar defects on amorphous carbon.

    from hrtem_wf.structures import build_structure
    atoms = build_structure(block, seed)     # block: one entry of the config's `structures`

Built with Construction Zone (czone): the crystal `Generator`, `Sphere`/`Plane` volumes and
`Reflection`/`Translation` transforms for twins and stacking faults (`particle.py`); the periodic
carbon film by random sequential addition, czone's algorithm as a numba loop (`substrate.py`);
placement in `scene.py`.

Output: ASE Atoms, orthorhombic cell [L, L, H], pbc (True, True, False), particle atoms first;
`atoms.arrays["particle"]`: int8, 1 = particle atom, 0 = substrate atom.
`atoms.info` (all scalars, strings or 1-D arrays, so it round-trips through extxyz):
    seed,
    material, lattice_constant_A, radius_A,
    center_A (x, y, z of the particle centre),
    rotation_matrix (9 floats, row-major R; lab position = R @ crystal position + center_A),
    n_defects_drawn (uniform on 0..max_count), n_defects (placed: capped at what fits),
    defect_kinds ("twin,stacking_fault,..." ordered along [111]; "none" without defects),
    defect_normal (the crystal's [111] in the lab frame: normal of every defect plane),
    defect<k>_kind, defect<k>_plane_index (j), defect<k>_offset_A (j * d111, signed distance of
        the plane from the centre along defect_normal), for k = 1..n_defects,
    occupied_plane_range (lowest, highest (111) plane index holding atoms),
    min_separation_planes, edge_margin_A, embedding_fraction, embedding_depth_A,
    substrate_material, substrate_thickness_A, substrate_top_z_A, substrate_density_per_A3,
    substrate_min_distance_A, particle_clearance_A, vacuum_A, cell_A (Lx, Ly, H),
    n_particle_atoms, n_substrate_atoms, n_substrate_removed (carbon cleared for the particle).
"""

from hrtem_wf.structures._czone import import_czone

import_czone()  # before scene imports czone: without matplotlib (see _czone.py)

from hrtem_wf.structures.scene import build_structure  # noqa: E402

__all__ = ["build_structure"]
