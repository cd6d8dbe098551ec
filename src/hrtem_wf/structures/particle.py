"""FCC nanoparticles with {111} twins and stacking faults, carved by Construction Zone (czone).

The particle is built in its crystal frame: an FCC lattice with an atom at the origin, cut by a
czone `Sphere` of the sampled radius centred on that atom. Atomic (111) planes then lie at
n.x = j * d111 (n = [111]/sqrt(3), d111 = a/sqrt(3), j integer), j = 0 through the centre.

Planar defects are built from czone's pieces, following its `prefab.fccMixedTwinSF` recipe, but
with our own choice of planes and kinds, because the prefab (czone 2022.9.20) cannot give what
the study asks for:
- it picks planes with `np.random.default_rng(None)` (fresh OS entropy): not reproducible;
- its list of candidate planes starts up to 3 planes inside the sphere on one side and ends up to
  3 planes outside it on the other, so "min_sep planes from the edge" is not what it guarantees;
- it reports only *whether* a twin / stacking fault occurred, not where.
The recipe itself: going down the (111) stack from the top defect, each defect plane j_k splits
the particle; the crystal below it is the crystal above it transformed by a czone `Reflection`
about the plane (a coherent twin: stacking ...ABC|BA...) or a czone `Translation` by a/3<11-2>
(two Shockley partials, = -a/6<11-2> modulo the lattice: an intrinsic stacking fault
...ABC|BCA...; its sign flips below every twin, because a twin reverses the stacking order).
Each slab is a czone `Volume` (the sphere and the half-space below its plane) with its own
`Generator`; a czone `MultiVolume` with priorities (lower defects win) merges them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from ase.data import atomic_numbers
from czone.generator import Generator
from czone.transform import Reflection, Translation
from czone.volume import MultiVolume, Volume
from czone.volume.algebraic import Plane, Sphere

from hrtem_wf.materials import DEFECT_KINDS, FCC_METALS, GRAIN_BOUNDARY_KINDS

# Fractional coordinates of the conventional FCC cell (space group 225, Fm-3m).
FCC_BASIS = np.array([[0.0, 0.0, 0.0], [0.0, 0.5, 0.5], [0.5, 0.0, 0.5], [0.5, 0.5, 0.0]])

# [111] plane normal in the crystal frame (cubic axes).
NORMAL_111 = np.ones(3) / np.sqrt(3.0)


@dataclass
class PlanarDefect:
    kind: str  # "twin" or "stacking_fault"
    plane_index: int  # j: the plane lies at n.x = j * d111 from the particle centre
    offset_A: float  # j * d111, signed distance of the plane from the centre along [111]


@dataclass
class Particle:
    """A particle in its crystal frame, centred on the origin."""

    positions_A: np.ndarray  # (N, 3) crystal-frame positions
    numbers: np.ndarray  # (N,) atomic numbers
    radius_A: float
    lattice_constant_A: float
    occupied_planes: tuple[int, int]  # lowest and highest occupied (111) plane j
    defects: list[PlanarDefect] = field(default_factory=list)
    n_defects_drawn: int = 0  # before capping to what fits in the particle
    grain_boundary: dict | None = None  # kind, plane_index, offset_A, rotation, ...
    extra: dict = field(default_factory=dict)  # family-specific draws (layers, added atoms)


def d111_A(lattice_constant_A: float) -> float:
    """Spacing of {111} planes in an FCC crystal."""
    return lattice_constant_A / np.sqrt(3.0)


def fcc_generator(material: str, lattice_constant_A: float) -> Generator:
    """A czone crystal generator for an elemental FCC metal, lattice site at the origin."""
    if material not in FCC_METALS:
        raise ValueError(
            f"material {material!r}: only elemental FCC metals {FCC_METALS} are implemented"
        )
    # the 4-atom conventional cell of Fm-3m written out: pymatgen's space-group expansion
    # (Generator.from_spacegroup) gives the same cell but costs ~1 s per call
    return Generator.from_unit_cell(
        Z=[atomic_numbers[material]] * 4,
        coords=FCC_BASIS,
        cellDims=[lattice_constant_A] * 3,
        cellAngs=[90.0] * 3,
    )


def occupied_plane_range(generator: Generator, radius_A: float) -> tuple[int, int]:
    """Lowest and highest (111) plane index that holds atoms of the perfect sphere."""
    sphere = Volume(alg_objects=[Sphere(radius=radius_A, center=np.zeros(3))], generator=generator)
    sphere.populate_atoms()
    a = generator.lattice.a
    plane_index = np.rint(sphere.atoms @ NORMAL_111 / d111_A(a)).astype(int)
    return int(plane_index.min()), int(plane_index.max())


def max_defects_that_fit(occupied: tuple[int, int], min_separation_planes: int) -> int:
    """How many defect planes fit with min_separation_planes between them and from both edges."""
    low, high = occupied
    n_candidates = (high - min_separation_planes) - (low + min_separation_planes) + 1
    if n_candidates <= 0:
        return 0
    # n planes need n_candidates >= n + (n - 1) * (min_sep - 1), see choose_defect_planes
    return (n_candidates + min_separation_planes - 1) // min_separation_planes


def choose_defect_planes(
    occupied: tuple[int, int], n_defects: int, min_separation_planes: int, rng: np.random.Generator
) -> list[int]:
    """n_defects plane indices, uniform over all sets obeying the separations, ascending.

    Planes j with j - low >= min_sep and high - j >= min_sep are candidates; a set of n of the K
    candidates with gaps >= min_sep maps one-to-one onto an n-subset of K - (n-1)(min_sep-1)
    points (shift the k-th chosen point down by k (min_sep - 1)), so drawing that subset
    uniformly draws the defect sets uniformly."""
    if min_separation_planes < 1:
        raise ValueError("planar_defects.min_separation_planes must be >= 1")
    if n_defects == 0:
        return []
    if n_defects > max_defects_that_fit(occupied, min_separation_planes):
        raise ValueError(f"{n_defects} defects do not fit between planes {occupied}")
    first_candidate = occupied[0] + min_separation_planes
    n_candidates = occupied[1] - min_separation_planes - first_candidate + 1
    n_compressed = n_candidates - (n_defects - 1) * (min_separation_planes - 1)
    compressed = np.sort(rng.choice(n_compressed, size=n_defects, replace=False))
    return [
        int(first_candidate + c + k * (min_separation_planes - 1)) for k, c in enumerate(compressed)
    ]


def defected_volume(
    generator: Generator, radius_A: float, defects: list[PlanarDefect]
) -> Volume | MultiVolume:
    """The czone volume of a sphere with the given {111} defects (see module docstring)."""
    sphere = Sphere(radius=radius_A, center=np.zeros(3))
    if not defects:
        return Volume(alg_objects=[sphere], generator=generator)
    a = generator.lattice.a
    # two Shockley partials a/6<11-2> in the (111) plane: an intrinsic fault (see docstring)
    fault_shift_A = (a / 3.0) * np.array([1.0, 1.0, -2.0])
    n = len(defects)
    volumes = [Volume(alg_objects=[sphere], generator=generator, priority=n)]
    crystal_below = generator
    stacking_sign = 1.0
    for k, defect in enumerate(sorted(defects, key=lambda d: -d.plane_index)):
        plane = Plane(normal=NORMAL_111, point=defect.offset_A * NORMAL_111)
        if defect.kind == "twin":
            transform = Reflection(plane)
            stacking_sign = -stacking_sign  # a twin reverses ABC -> CBA below it
        elif defect.kind == "stacking_fault":
            transform = Translation(shift=stacking_sign * fault_shift_A)
        else:
            raise ValueError(f"unknown planar defect kind {defect.kind!r}; use {DEFECT_KINDS}")
        crystal_below = crystal_below.from_generator(transformation=[transform])
        # the slab below this plane; Plane interior is the side opposite to its normal
        volumes.append(
            Volume(alg_objects=[sphere, plane], generator=crystal_below, priority=n - (k + 1))
        )
    return MultiVolume(volumes=volumes)


def build_particle(
    material: str,
    lattice_constant_A: float,
    radius_A: float,
    n_defects: int,
    kinds: list[str],
    min_separation_planes: int,
    rng: np.random.Generator,
) -> Particle:
    """An FCC sphere with up to n_defects {111} planar defects, in its crystal frame.

    n_defects is capped at the number that fits with the required separations (small particles
    hold fewer defects); the kind of each defect is drawn uniformly from `kinds`."""
    unknown = set(kinds) - set(DEFECT_KINDS)
    if unknown or not kinds:
        raise ValueError(f"planar_defects.kinds {kinds}: choose from {DEFECT_KINDS}")
    generator = fcc_generator(material, lattice_constant_A)
    occupied = occupied_plane_range(generator, radius_A)
    n_placed = min(n_defects, max_defects_that_fit(occupied, min_separation_planes))
    planes = choose_defect_planes(occupied, n_placed, min_separation_planes, rng)
    spacing_A = d111_A(lattice_constant_A)
    defects = [
        PlanarDefect(
            kind=str(kinds[rng.integers(len(kinds))]), plane_index=j, offset_A=j * spacing_A
        )
        for j in planes
    ]
    volume = defected_volume(generator, radius_A, defects)
    volume.populate_atoms()
    return Particle(
        positions_A=np.asarray(volume.atoms, dtype=float),
        numbers=np.rint(volume.species).astype(int),
        radius_A=radius_A,
        lattice_constant_A=lattice_constant_A,
        occupied_planes=occupied,
        defects=defects,
        n_defects_drawn=n_defects,
    )


def rotation_about(axis: np.ndarray, angle_rad: float) -> np.ndarray:
    """Rotation matrix about a unit axis (Rodrigues)."""
    axis = np.asarray(axis, dtype=float) / np.linalg.norm(axis)
    k = np.array([[0.0, -axis[2], axis[1]], [axis[2], 0.0, -axis[0]], [-axis[1], axis[0], 0.0]])
    return np.eye(3) + np.sin(angle_rad) * k + (1.0 - np.cos(angle_rad)) * (k @ k)


def build_grain_boundary_particle(
    material: str,
    lattice_constant_A: float,
    radius_A: float,
    kind: str,
    min_separation_planes: int,
    min_distance_A: float,
    rng: np.random.Generator,
) -> Particle:
    """An FCC sphere split at a (111) plane into two grains (SI 1.8, Optimal Au).

    The plane is drawn uniformly among the (111) planes at least min_separation_planes from the
    surface. The grain below it is the crystal rotated about a point of the plane, either about
    [111] by an angle uniform in [0, 2 pi) (`rotation_about_111`) or by a rotation uniform on
    SO(3) (`random_rotation`). Atoms of the rotated grain closer than min_distance_A to the
    upper grain are removed (a grain boundary has no overlapping atoms)."""
    from scipy.spatial import cKDTree

    from hrtem_wf.sampling import random_rotation

    if kind not in GRAIN_BOUNDARY_KINDS:
        raise ValueError(f"grain boundary kind {kind!r}: choose from {GRAIN_BOUNDARY_KINDS}")
    generator = fcc_generator(material, lattice_constant_A)
    occupied = occupied_plane_range(generator, radius_A)
    if max_defects_that_fit(occupied, min_separation_planes) < 1:
        raise ValueError(
            f"no (111) plane of a {radius_A:.1f} A particle is {min_separation_planes} "
            "planes from its surface: too small for a grain boundary"
        )
    (plane_index,) = choose_defect_planes(occupied, 1, min_separation_planes, rng)
    offset_A = plane_index * d111_A(lattice_constant_A)
    point = offset_A * NORMAL_111
    if kind == "rotation_about_111":
        angle = float(rng.uniform(0.0, 2.0 * np.pi))
        rotation = rotation_about(NORMAL_111, angle)
    else:
        angle = float("nan")
        rotation = random_rotation(rng)
    sphere = Volume(alg_objects=[Sphere(radius=radius_A, center=np.zeros(3))], generator=generator)
    sphere.populate_atoms()
    upper = np.asarray(sphere.atoms, dtype=float)
    upper_numbers = np.rint(sphere.species).astype(int)
    keep = upper @ NORMAL_111 >= offset_A
    upper, upper_numbers = upper[keep], upper_numbers[keep]
    # the rotated crystal, from a sphere large enough to cover the particle after rotation
    big = Volume(
        alg_objects=[
            Sphere(radius=radius_A + 2 * abs(offset_A) + lattice_constant_A, center=np.zeros(3))
        ],
        generator=generator,
    )
    big.populate_atoms()
    lower = (np.asarray(big.atoms, dtype=float) - point) @ rotation.T + point
    lower_numbers = np.rint(big.species).astype(int)
    keep = (np.linalg.norm(lower, axis=1) <= radius_A) & (lower @ NORMAL_111 < offset_A)
    lower, lower_numbers = lower[keep], lower_numbers[keep]
    distance, _ = cKDTree(upper).query(lower, k=1)
    clear = distance >= min_distance_A
    boundary = {
        "kind": kind,
        "plane_index": int(plane_index),
        "offset_A": float(offset_A),
        "angle_rad": angle,
        "rotation": rotation,
        "n_removed": int((~clear).sum()),
    }
    return Particle(
        positions_A=np.vstack([upper, lower[clear]]),
        numbers=np.concatenate([upper_numbers, lower_numbers[clear]]),
        radius_A=radius_A,
        lattice_constant_A=lattice_constant_A,
        occupied_planes=occupied,
        grain_boundary=boundary,
    )
