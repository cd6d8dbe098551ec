"""Atomic columns of a structure, where its images show them: positions, classes and confidence
maps (the targets of Madsen et al. 2018; Larsen's MSD-net columns).

    columns = projected_columns(atoms, tolerance_A=0.5)          # along the beam (z)
    yx_px = pixel_coordinates(columns.yx_A, sampling_A, extent_A, detector_shape, origin_yx)
    maps = confidence_maps(yx_px, classes, n_classes, shape_px, sigma_px, period_px)

A column is a set of particle atoms in a line along the crystal's own column direction (the
zone axis, which a tilted particle carries a few degrees off the beam): their positions
projected along that direction are within `tolerance_A` of a neighbour in the set (single
linkage). Its position is the mean of their (y, x), their projection along the beam, where the
image shows the column; its height is their number, its composition their element counts
("Au7", "S2", "Mo1"). The direction is found from the atoms (`column_direction`: the shortest
interatomic vector within `max_tilt_deg` of the beam, averaged over the atoms that repeat
along it), so a particle tilted 4 deg off <111> keeps its columns of several atoms instead of
falling apart into single atoms 0.5 A apart in projection; untilted, it is the beam.

Geometry, that of image formation (`formation.resample_to_pixel_size`): exit-wave pixel j
samples the cell at j * sampling (abTEM's grid); the detector resamples the cell's extent L onto
n pixels with edge-aligned pixels (scipy's grid_mode), so its pixels are L / n wide (the
nominal pixel size rounded to a whole number of pixels per cell) and pixel i is centred on
(i + 1/2) * L / n - sampling / 2; the crop then starts at `origin_yx`. A column at y (A) lies at
detector pixel coordinate (y + sampling / 2) * n / L - 1/2 - y0, and the same for x.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

CLASS_KINDS = ("element", "height", "composition")


@dataclass(frozen=True)
class Columns:
    """Projected atomic columns: positions (M, 2) in A as (y, x), heights (M,) and compositions
    (M,) such as 'Au7' or 'Mo1S2' (elements in alphabetical order, each with its count)."""

    yx_A: np.ndarray
    heights: np.ndarray
    compositions: np.ndarray

    def __len__(self) -> int:
        return len(self.heights)


#: Column directions further than this from the beam are not looked for: a particle tilted
#: more shows no columns (Madsen 2018 tilts 0-5 deg and finds detection worse beyond 3).
MAX_TILT_DEG = 8.0


def column_direction(
    positions: np.ndarray, max_tilt_deg: float = MAX_TILT_DEG, max_repeat_A: float = 10.0
) -> np.ndarray:
    """The unit vector (x, y, z), z > 0, along which the atoms at `positions` (N, 3) line up in
    columns: of the interatomic vectors within `max_tilt_deg` of z and shorter than
    `max_repeat_A`, the shortest one that at least a quarter of the atoms repeat along (a
    lattice vector of the crystal, not a chance pair), averaged over those atoms' pairs. The
    beam (0, 0, 1) when there is none (a single layer, fewer than 2 atoms)."""
    beam = np.array([0.0, 0.0, 1.0])
    if len(positions) < 2:
        return beam
    pairs = cKDTree(positions).query_pairs(max_repeat_A, output_type="ndarray")
    if len(pairs) == 0:
        return beam
    vectors = positions[pairs[:, 1]] - positions[pairs[:, 0]]
    vectors *= np.where(vectors[:, 2] < 0, -1.0, 1.0)[:, None]  # point up the beam
    length = np.linalg.norm(vectors, axis=1)
    tilt = np.degrees(np.arccos(np.clip(vectors[:, 2] / np.maximum(length, 1e-12), -1, 1)))
    near = tilt <= max_tilt_deg
    if not near.any():
        return beam
    vectors, length = vectors[near], length[near]
    for candidate in vectors[np.argsort(length)]:
        same = np.linalg.norm(vectors - candidate, axis=1) < 0.2  # the same lattice vector
        if same.sum() >= max(1, len(positions) // 4):
            mean = vectors[same].mean(axis=0)
            return mean / np.linalg.norm(mean)
    return beam


def projected_columns(
    atoms, tolerance_A: float = 0.5, particle_only: bool = True, along_crystal: bool = True
) -> Columns:
    """The columns of `atoms` (module docstring) within the periodic cell in x and y.

    particle_only: only atoms with atoms.arrays['particle'] == 1 (a hrtem_wf structure's
    particle, not its substrate), where that array exists; along_crystal: group the atoms along
    their `column_direction` (else along the beam, z)."""
    if tolerance_A <= 0:
        raise ValueError(f"tolerance_A must be > 0, got {tolerance_A}")
    keep = np.ones(len(atoms), bool)
    if particle_only and "particle" in atoms.arrays:
        keep = atoms.arrays["particle"].astype(bool)
    xy = atoms.positions[keep, :2]
    symbols = np.asarray(atoms.get_chemical_symbols())[keep]
    if len(xy) == 0:
        return Columns(np.zeros((0, 2)), np.zeros(0, int), np.zeros(0, str))
    period = np.diag(atoms.cell.array)[:2]
    wrapped = np.mod(xy, period)
    # Grouped in the projection along the column direction: a shear of x, y by z (periodic in
    # x and y alike); positions stay the beam's projection.
    direction = column_direction(atoms.positions[keep]) if along_crystal else np.array([0, 0, 1])
    z = atoms.positions[keep, 2]
    sheared = np.mod(xy - np.outer(z - z.mean(), direction[:2] / direction[2]), period)
    pairs = cKDTree(sheared, boxsize=period).query_pairs(tolerance_A, output_type="ndarray")
    links = np.ones(len(pairs), bool)
    graph = coo_matrix((links, (pairs[:, 0], pairs[:, 1])), shape=(len(xy), len(xy)))
    count, labels = connected_components(graph, directed=False)
    yx, heights, compositions = [], [], []
    for label in range(count):
        members = np.flatnonzero(labels == label)
        # the mean across the periodic edge: members unwrapped next to the first one
        offsets = wrapped[members] - wrapped[members[0]]
        offsets -= period * np.round(offsets / period)
        x, y = np.mod(wrapped[members[0]] + offsets.mean(axis=0), period)
        yx.append((y, x))
        heights.append(len(members))
        counts = Counter(symbols[members])
        compositions.append("".join(f"{el}{counts[el]}" for el in sorted(counts)))
    order = np.lexsort((np.array(yx)[:, 1], np.array(yx)[:, 0]))  # row by row
    return Columns(np.array(yx)[order], np.array(heights)[order], np.array(compositions)[order])


def column_classes(columns: Columns, kind: str, names: list) -> np.ndarray:
    """Class index per column (-1: none of `names`).

    kind element: names are elements, a column's class is its most frequent element's;
    height: names are heights (ints, ascending), a column's class is the largest <= its height;
    composition: names are compositions ('Mo1', 'S2', 'S1'), matched exactly."""
    if kind not in CLASS_KINDS:
        raise ValueError(f"class kind must be one of {CLASS_KINDS}, not {kind!r}")
    if kind == "height":
        bounds = np.asarray(names, int)
        if np.any(np.diff(bounds) <= 0):
            raise ValueError(f"heights must ascend, got {list(names)}")
        return np.searchsorted(bounds, columns.heights, side="right") - 1
    if kind == "composition":
        keys = list(columns.compositions)
    else:
        keys = [_majority_element(composition) for composition in columns.compositions]
    index = {name: i for i, name in enumerate(names)}
    return np.array([index.get(key, -1) for key in keys], int)


def _majority_element(composition: str) -> str:
    """'Mo1S2' -> 'S': the element with the most atoms (ties: the later name)."""
    counts = re.findall(r"([A-Z][a-z]?)(\d+)", composition)
    return max(counts, key=lambda pair: (int(pair[1]), pair[0]))[0]


def pixel_coordinates(
    yx_A: np.ndarray,
    sampling_A: float | tuple[float, float],
    extent_A: tuple[float, float],
    detector_shape: tuple[int, int],
    origin_yx: tuple[int, int] = (0, 0),
) -> np.ndarray:
    """Continuous detector pixel coordinates (y, x) of positions in A, for exit waves of
    `sampling_A` over the cell's `extent_A` resampled to `detector_shape` pixels
    (`formation.resampled_shape`) and cropped at `origin_yx` (module docstring)."""
    sampling = np.broadcast_to(np.asarray(sampling_A, float), (2,))
    pixel_A = np.asarray(extent_A, float) / np.asarray(detector_shape, float)
    return (np.asarray(yx_A, float) + sampling / 2) / pixel_A - 0.5 - np.asarray(origin_yx)


def confidence_maps(
    yx_px: np.ndarray,
    classes: np.ndarray,
    n_classes: int,
    shape_px: tuple[int, int],
    sigma_px: float,
    period_px: tuple[float, float] | None = None,
) -> np.ndarray:
    """(n_classes + 1, H, W) float32: channel c holds a Gaussian of `sigma_px` at each column of
    class c (their maximum where two overlap), the last channel is the background, 1 minus the
    largest class value. Columns of class -1 are left out. period_px: the cell's size in
    detector pixels, so columns beyond an edge of the periodic cell show at the other side."""
    if sigma_px <= 0:
        raise ValueError(f"sigma_px must be > 0, got {sigma_px}")
    height, width = (int(n) for n in shape_px)
    maps = np.zeros((n_classes + 1, height, width), np.float32)
    rows, cols = np.arange(height)[:, None], np.arange(width)[None, :]
    reach = 4.0 * sigma_px
    shifts = [(0.0, 0.0)]
    if period_px is not None:
        py, px = period_px
        shifts = [(dy * py, dx * px) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    for (y, x), label in zip(np.asarray(yx_px, float), np.asarray(classes, int)):
        if label < 0:
            continue
        if label >= n_classes:
            raise ValueError(f"class {label} of a column is not below n_classes = {n_classes}")
        for dy, dx in shifts:
            cy, cx = y + dy, x + dx
            if not (-reach < cy < height - 1 + reach and -reach < cx < width - 1 + reach):
                continue
            y0, y1 = max(0, int(cy - reach)), min(height, int(cy + reach) + 2)
            x0, x1 = max(0, int(cx - reach)), min(width, int(cx + reach) + 2)
            r2 = (rows[y0:y1] - cy) ** 2 + (cols[:, x0:x1] - cx) ** 2
            blob = np.exp(-r2 / (2 * sigma_px**2)).astype(np.float32)
            np.maximum(maps[label, y0:y1, x0:x1], blob, out=maps[label, y0:y1, x0:x1])
    maps[-1] = 1.0 - maps[:-1].max(axis=0) if n_classes else 1.0
    return maps
