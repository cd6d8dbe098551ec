"""Evaluation of atomic-column detection (confidence maps) and of exit-wave reconstruction.

Columns. A column network outputs confidence maps (Madsen et al. 2018, Adv. Theory Simul. 1,
1800037): an array (C + 1, H, W), channel k < C the confidence of a column of class k, the last
channel the background. `find_columns` turns the maps into columns following Madsen's section
2.5 (eqs. 7-8): watershed segments of the background map seeded at its local minima below
epsilon, a class probability per segment, a position per segment, and the rule that discards
segments more background than column. The detections are then scored against the ground truth:

    detected = find_columns(maps)                        # epsilon 0.995 (Madsen's), t = 0.1
    counts = column_counts(detected, true_yx, true_classes, radius_px, n_classes)  # per image
    total = sum(counts_per_image)                        # ColumnCounts add like confusion counts
    column_metrics(total, pixel_size_A)   # precision, recall, f1, position_rmse_A, confusion, ...

A detection and a true column are matched one to one (`match_columns`: the assignment of least
total distance among pairs at most `radius_px` apart); matched pairs are true positives, the
other detections false positives, the other true columns false negatives; precision, recall and
f1 follow `hrtem_wf.evaluations.metrics` (nothing true and nothing detected: all 1.0).

Exit waves. An exit-wave network outputs (2, H, W) = (real, imaginary) part. Larsen et al. 2023
score it by the RMSE of the real and imaginary parts (`exit_wave_rmse`) against the Y-scramble
baseline: each prediction compared with the target of a randomly chosen other image
(`y_scramble_rmse`), the error of a model that has learnt nothing about its input image.

Conventions: positions are continuous pixel coordinates (y, x), pixel (i, j) centred at (i, j)
(those of `hrtem_wf.images.columns.pixel_coordinates`); the background is the LAST channel of a
confidence map; a true class -1 means unclassified (matched and counted, but left out of the
class confusion); distances are in pixels until `column_metrics` converts the RMSE to A.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.ndimage as ndi
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components, minimum_spanning_tree
from scipy.spatial.distance import cdist

from .metrics import SegmentationCounts, metrics_from_counts

_EIGHT_NEIGHBOURS = np.ones((3, 3), bool)


@dataclass(frozen=True, eq=False)
class DetectedColumns:
    """Columns found in one set of confidence maps (C classes).

    yx_px: (N, 2) float positions (y, x) in pixel coordinates; classes: (N,) int, the most
    probable class; probabilities: (N, C) p_n(c_k) of the class channels (eq. 7, normalised
    together with the background, so a row sums to 1 - background_probability);
    background_probability: (N,) p_n(c_0); n_pixels: (N,) int, the size of each segment."""

    yx_px: np.ndarray
    classes: np.ndarray
    probabilities: np.ndarray
    background_probability: np.ndarray
    n_pixels: np.ndarray

    def __len__(self) -> int:
        return len(self.classes)


#: Eq. 8's t: Madsen recommends about 0.5, which (see `find_columns`) drops even an ideal
#: Gaussian column of amplitude 1 at epsilon 0.995 (its ratio is 0.23); 0.1 keeps Gaussian-like
#: columns of peak confidence above about 0.45 (ratio 0.10) and drops weaker ones.
DISCARD_T = 0.1


def find_columns(
    maps: np.ndarray, epsilon: float = 0.995, t: float = DISCARD_T, min_pixels: int = 1
) -> DetectedColumns:
    """Columns in confidence maps (C + 1, H, W), background last, by Madsen et al. 2018 sec. 2.5.

    1. Seeds: the local minima of the background map B whose value is below `epsilon`. A local
       minimum is a regional minimum in the 8-neighbourhood: a connected plateau of equal value
       whose neighbours are all higher (one seed per plateau, so a flat-bottomed minimum, e.g. a
       saturated B = 0, is one column).
    2. Segments: the watershed basins of B from those seeds, with a hard upper limit: only pixels
       with B < epsilon belong to a segment. The basins are those of flooding B from the seeds
       (Meyer's priority flood, as skimage's watershed: every pixel joins the basin of its
       lowest neighbour), computed as the minimum spanning forest, rooted at the seeds, of the
       8-connected graph of the pixels with B < epsilon, edges ordered by max(B(p), B(q)) and
       then min(B(p), B(q)) (watershed cuts, Cousty et al. 2009). It runs on the float map
       without quantisation, and every pixel below epsilon gets a segment, since every
       connected region below epsilon holds a minimum. scipy.ndimage.watershed_ift is not used:
       its path cost is the largest step |B(p) - B(q)| along the path, not the level of B, so a
       weak column's seed takes the outer flanks of a strong neighbour (of two Gaussians 11 px
       apart, amplitudes 1 and 0.3, it leaves the strong one 9 of its 137 pixels).
    3. Class probabilities (eq. 7): p_n(c_k) proportional to the sum over the segment's pixels
       of channel k, for the C class channels and the background c_0 alike, normalised so that
       the C + 1 sum to 1. The column's class is the argmax over the C class channels.
    4. Position: the centre of mass of the segment's pixels weighted by 1 - B.
    5. Discard (eq. 8): a segment is dropped when sum over classes p_n(c_k) < t * p_n(c_0).
       `min_pixels` (not in Madsen's procedure; 1 = off) also drops segments of fewer pixels.

    Maps are meant to be probabilities in [0, 1] (softmax or sigmoid outputs). Mind eq. 8 with a
    generous epsilon: for an ideal Gaussian column of amplitude A (B = 1 - A g), the segment
    reaches g = a = (1 - epsilon) / A and the ratio of eq. 8 is A (1 - a) / (ln(1 / a) - A (1 - a))
    whatever the width: 0.231 for A = 1 and epsilon = 0.995, so t = 0.5 keeps only columns sharper
    than a Gaussian, and a lower t (or epsilon) suits Gaussian-like maps.

    An all-background map (B >= epsilon everywhere) has no detections; C = 1 works like any C.
    Returns DetectedColumns, the columns in the order of their seeds (row by row)."""
    maps = np.asarray(maps, dtype=np.float64)
    if maps.ndim != 3 or maps.shape[0] < 2:
        raise ValueError(
            f"maps must be (C + 1, H, W) with C >= 1 class channels and the background last, "
            f"got shape {maps.shape}"
        )
    if not np.all(np.isfinite(maps)):
        raise ValueError("maps must be finite")
    if not 0.0 < epsilon <= 1.0:
        raise ValueError(f"epsilon must be in (0, 1], got {epsilon}")
    if t < 0:
        raise ValueError(f"t must be >= 0, got {t}")
    if int(min_pixels) != min_pixels or min_pixels < 1:
        raise ValueError(f"min_pixels must be a whole number >= 1, got {min_pixels}")
    n_classes = maps.shape[0] - 1
    background = maps[-1]

    seeds, n_seeds = _regional_minima(background, epsilon)
    segments = _flood(background, seeds, background < epsilon)

    flat = segments.ravel()
    bins = n_seeds + 1
    n_pixels = np.bincount(flat, minlength=bins)[1:]
    sums = np.stack([np.bincount(flat, weights=m.ravel(), minlength=bins)[1:] for m in maps])
    total = sums.sum(axis=0)
    p = np.divide(sums, total, out=np.zeros_like(sums), where=total != 0)  # (C + 1, n_seeds)
    p_classes, p_background = p[:n_classes], p[-1]

    weight = 1.0 - background
    rows, cols = np.indices(background.shape)
    mass = np.bincount(flat, weights=weight.ravel(), minlength=bins)[1:]
    y_moment = np.bincount(flat, weights=(weight * rows).ravel(), minlength=bins)[1:]
    x_moment = np.bincount(flat, weights=(weight * cols).ravel(), minlength=bins)[1:]

    keep = (
        (n_pixels >= min_pixels)
        & (p_classes.sum(axis=0) >= t * p_background)  # eq. 8
        & (mass > 0)
    )
    yx = np.stack([y_moment[keep] / mass[keep], x_moment[keep] / mass[keep]], axis=1)
    probabilities = p_classes[:, keep].T
    return DetectedColumns(
        yx_px=yx.reshape(-1, 2),
        classes=np.argmax(probabilities, axis=1).astype(int),
        probabilities=probabilities.reshape(-1, n_classes),
        background_probability=p_background[keep],
        n_pixels=n_pixels[keep].astype(int),
    )


def _regional_minima(background: np.ndarray, epsilon: float) -> tuple[np.ndarray, int]:
    """Labels 1..n of the regional minima (8-connected plateaus lower than all their neighbours)
    of `background` below `epsilon`, 0 elsewhere."""
    local = (background == ndi.minimum_filter(background, footprint=_EIGHT_NEIGHBOURS)) & (
        background < epsilon
    )
    # Adjacent local-minimum pixels have equal values, so a connected group is a plateau; it is
    # a regional minimum unless it has an equal-valued neighbour that is not a local minimum (a
    # shelf that drains further down).
    lowest_local = ndi.minimum_filter(
        np.where(local, background, np.inf),
        footprint=_EIGHT_NEIGHBOURS,
        mode="constant",
        cval=np.inf,
    )
    shelf_edge = ~local & (background == lowest_local)
    labels, n = ndi.label(local, structure=_EIGHT_NEIGHBOURS)
    on_shelf = np.unique(labels[ndi.binary_dilation(shelf_edge, _EIGHT_NEIGHBOURS) & local])
    if len(on_shelf):
        labels[np.isin(labels, on_shelf)] = 0
        labels, n = ndi.label(labels > 0, structure=_EIGHT_NEIGHBOURS)
    return labels, n


def _flood(background: np.ndarray, seeds: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """Watershed basins of `background` from the labelled `seeds`, restricted to `inside` (0
    outside): the minimum spanning forest of the 8-connected graph of the inside pixels, edges
    weighted by (max, min) of their ends' values, with every seed pixel tied to a common root by
    an edge lighter than all others. Kruskal adds a pixel with its lightest edge, the one to its
    lowest neighbour, so its path to the root descends to the seed a priority flood would give
    it; cutting the root leaves one tree per seed pixel."""
    segments = np.zeros(background.shape, np.int64)
    index = np.full(background.shape, -1, np.int64)
    pixels = np.flatnonzero(inside)
    if len(pixels) == 0 or seeds.max() == 0:
        return segments
    n = len(pixels)
    index.flat[pixels] = np.arange(n)
    # Dense ranks of the values: exact integer edge weights that order edges by their higher end,
    # then by their lower end, so a pixel joins the basin of its LOWEST lower neighbour (as in
    # Meyer's priority flood) rather than of any lower one.
    _, rank = np.unique(background.ravel()[pixels], return_inverse=True)
    levels = float(rank.max() + 2)
    heads, tails, weights = [], [], []
    height, width = background.shape
    for dy, dx in ((0, 1), (1, 0), (1, 1), (1, -1)):  # each 8-neighbour pair once
        x0, x1 = max(0, -dx), width - max(0, dx)  # p = (y, x), q = (y + dy, x + dx)
        a = index[: height - dy, x0:x1]
        b = index[dy:, x0 + dx : x1 + dx]
        both = (a >= 0) & (b >= 0)
        a, b = a[both], b[both]
        heads.append(a)
        tails.append(b)
        # >= 1: the sparse graph takes a zero weight for a missing edge
        weights.append(np.maximum(rank[a], rank[b]) * levels + np.minimum(rank[a], rank[b]) + 1.0)
    seed_nodes = index.flat[np.flatnonzero(seeds)]
    heads.append(np.full(len(seed_nodes), n))  # node n: the root
    tails.append(seed_nodes)
    weights.append(np.full(len(seed_nodes), 0.5))
    graph = coo_matrix(
        (np.concatenate(weights), (np.concatenate(heads), np.concatenate(tails))),
        shape=(n + 1, n + 1),
    ).tocsr()
    forest = minimum_spanning_tree(graph).tocoo()
    off_root = (forest.row != n) & (forest.col != n)
    trees = coo_matrix(
        (np.ones(np.count_nonzero(off_root)), (forest.row[off_root], forest.col[off_root])),
        shape=(n, n),
    )
    _, tree_of = connected_components(trees, directed=False)
    label_of_tree = np.zeros(tree_of.max() + 1, np.int64)
    label_of_tree[tree_of[seed_nodes]] = seeds.flat[np.flatnonzero(seeds)]
    segments.flat[pixels] = label_of_tree[tree_of]
    return segments


def match_columns(
    predicted_yx: np.ndarray, true_yx: np.ndarray, radius_px: float
) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one matching of predicted and true positions (M, 2), at most `radius_px` apart.

    Among all matchings that use only pairs within the radius it takes one with the most pairs
    and, among those, the least total distance: scipy's linear_sum_assignment on costs equal to
    the distance within the radius and a constant larger than any sum of such distances beyond
    it, whose pairs are then dropped. (Assigning on raw distances and then dropping the far
    pairs could lose a within-radius pair to a far one; greedy nearest-neighbour matching can
    lose pairs or add distance.)

    Returns pairs (K, 2) int, indices into predicted and true (ascending predicted index), and
    their distances (K,) in pixels. Empty inputs give K = 0."""
    predicted_yx = np.asarray(predicted_yx, dtype=np.float64).reshape(-1, 2)
    true_yx = np.asarray(true_yx, dtype=np.float64).reshape(-1, 2)
    if not (np.isfinite(radius_px) and radius_px > 0):
        raise ValueError(f"radius_px must be finite and > 0, got {radius_px}")
    if len(predicted_yx) == 0 or len(true_yx) == 0:
        return np.zeros((0, 2), int), np.zeros(0)
    distance = cdist(predicted_yx, true_yx)
    within = distance <= radius_px
    beyond_cost = (min(distance.shape) + 1) * radius_px + 1.0
    rows, cols = linear_sum_assignment(np.where(within, distance, beyond_cost))
    kept = within[rows, cols]
    pairs = np.stack([rows[kept], cols[kept]], axis=1).astype(int)
    return pairs, distance[rows[kept], cols[kept]]


@dataclass(eq=False)
class ColumnCounts:
    """Sums over columns that the metrics derive from; they add over images (`a + b`, `sum`).

    true_positive: matched pairs (so also the number of position errors summed);
    false_positive: unmatched detections; false_negative: unmatched true columns;
    squared_error_sum_px2: sum over matched pairs of the squared distance (px^2);
    confusion: (n_classes, n_classes) int, rows the true class, columns the detected class, of the
    matched pairs whose true class is >= 0 (empty (0, 0) until counts with classes are added)."""

    true_positive: int = 0
    false_positive: int = 0
    false_negative: int = 0
    squared_error_sum_px2: float = 0.0
    confusion: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.int64))

    @property
    def n_matched(self) -> int:
        return self.true_positive

    def __add__(self, other: ColumnCounts) -> ColumnCounts:
        if not isinstance(other, ColumnCounts):
            return NotImplemented
        if self.confusion.size == 0:
            confusion = other.confusion.copy()
        elif other.confusion.size == 0:
            confusion = self.confusion.copy()
        elif self.confusion.shape != other.confusion.shape:
            raise ValueError(
                f"confusion matrices of {self.confusion.shape} and {other.confusion.shape} "
                "classes do not add"
            )
        else:
            confusion = self.confusion + other.confusion
        return ColumnCounts(
            self.true_positive + other.true_positive,
            self.false_positive + other.false_positive,
            self.false_negative + other.false_negative,
            self.squared_error_sum_px2 + other.squared_error_sum_px2,
            confusion,
        )

    def __radd__(self, other) -> ColumnCounts:
        if isinstance(other, int) and other == 0:  # the start of sum()
            return self
        return NotImplemented

    def __eq__(self, other) -> bool:
        if not isinstance(other, ColumnCounts):
            return NotImplemented
        return (
            (self.true_positive, self.false_positive, self.false_negative)
            == (other.true_positive, other.false_positive, other.false_negative)
            and self.squared_error_sum_px2 == other.squared_error_sum_px2
            and np.array_equal(self.confusion, other.confusion)
        )

    __hash__ = None


def column_counts(
    detected: DetectedColumns,
    true_yx: np.ndarray,
    true_classes: np.ndarray,
    radius_px: float,
    n_classes: int,
) -> ColumnCounts:
    """Counts of one image: detections matched to the true columns (M, 2) of classes (M,) (-1:
    unclassified) by `match_columns` within `radius_px`."""
    true_yx = np.asarray(true_yx, dtype=np.float64).reshape(-1, 2)
    true_classes = np.asarray(true_classes, dtype=int).reshape(-1)
    predicted_classes = np.asarray(detected.classes, dtype=int).reshape(-1)
    if len(true_classes) != len(true_yx):
        raise ValueError(f"{len(true_yx)} true positions but {len(true_classes)} true classes")
    if len(predicted_classes) != len(detected.yx_px):
        raise ValueError(
            f"{len(detected.yx_px)} detected positions but {len(predicted_classes)} classes"
        )
    if np.any(true_classes < -1) or np.any(true_classes >= n_classes):
        raise ValueError(f"true classes must be -1 or in [0, {n_classes}), got {true_classes}")
    if np.any(predicted_classes < 0) or np.any(predicted_classes >= n_classes):
        raise ValueError(f"detected classes must be in [0, {n_classes}), got {predicted_classes}")
    pairs, distances = match_columns(detected.yx_px, true_yx, radius_px)
    matched = len(pairs)
    confusion = np.zeros((n_classes, n_classes), np.int64)
    if matched:
        truth = true_classes[pairs[:, 1]]
        classified = truth >= 0
        np.add.at(confusion, (truth[classified], predicted_classes[pairs[classified, 0]]), 1)
    return ColumnCounts(
        true_positive=matched,
        false_positive=len(detected.yx_px) - matched,
        false_negative=len(true_yx) - matched,
        squared_error_sum_px2=float(np.sum(distances**2)),
        confusion=confusion,
    )


def column_metrics(counts: ColumnCounts, pixel_size_A: float) -> dict:
    """Detection metrics from (summed) counts.

    precision, recall, f1: as `metrics.metrics_from_counts` (nothing true and nothing detected:
    1.0; nothing detected of something true: precision 0.0, and recall 0.0 the other way round);
    position_rmse_A: root mean square distance of the matched pairs times `pixel_size_A` (None
    without pairs); class_accuracy: trace / sum of the confusion (None when it is empty);
    confusion (list of lists, rows true, columns detected); n_true, n_detected, n_matched."""
    if not pixel_size_A > 0:
        raise ValueError(f"pixel_size_A must be > 0, got {pixel_size_A}")
    tp, fp, fn = counts.true_positive, counts.false_positive, counts.false_negative
    scores = metrics_from_counts(SegmentationCounts(tp, fp, fn))
    classified = int(counts.confusion.sum())
    return {
        "precision": scores["precision"],
        "recall": scores["recall"],
        "f1": scores["f1"],
        "position_rmse_A": float(np.sqrt(counts.squared_error_sum_px2 / tp) * pixel_size_A)
        if tp
        else None,
        "class_accuracy": float(np.trace(counts.confusion) / classified) if classified else None,
        "confusion": counts.confusion.astype(int).tolist(),
        "n_true": tp + fn,
        "n_detected": tp + fp,
        "n_matched": tp,
    }


def _exit_waves(array, name: str, ndim: int) -> np.ndarray:
    array = np.asarray(array)
    if np.iscomplexobj(array):
        raise ValueError(f"{name} must be real, the real and imaginary parts as channels")
    array = array.astype(np.float64)
    if array.ndim != ndim or array.shape[-3] != 2:
        expected = "(2, H, W)" if ndim == 3 else "(N, 2, H, W)"
        raise ValueError(f"{name} must be {expected} (real, imaginary part), got {array.shape}")
    return array


def exit_wave_rmse(predicted: np.ndarray, true: np.ndarray) -> dict:
    """RMSE of a predicted exit wave (2, H, W) = (real, imaginary part) against the true one.

    Returns rmse_real, rmse_imag and rmse, the root of the mean squared error over both channels
    (= sqrt((rmse_real^2 + rmse_imag^2) / 2))."""
    predicted = _exit_waves(predicted, "predicted", 3)
    true = _exit_waves(true, "true", 3)
    if predicted.shape != true.shape:
        raise ValueError(f"predicted {predicted.shape} and true {true.shape} differ in shape")
    squared = (predicted - true) ** 2
    return {
        "rmse_real": float(np.sqrt(squared[0].mean())),
        "rmse_imag": float(np.sqrt(squared[1].mean())),
        "rmse": float(np.sqrt(squared.mean())),
    }


def random_derangement(n: int, rng: np.random.Generator | int | None = None) -> np.ndarray:
    """A uniformly random permutation of range(n) without fixed points (n >= 2), by rejection:
    about e permutations drawn on average."""
    if n < 2:
        raise ValueError(f"a derangement needs n >= 2, got {n}")
    rng = np.random.default_rng(rng)
    identity = np.arange(n)
    while True:
        permutation = rng.permutation(n)
        if not np.any(permutation == identity):
            return permutation


def y_scramble_rmse(
    predicted: np.ndarray, true: np.ndarray, rng: np.random.Generator | int | None = None
) -> float:
    """Y-scramble baseline (Larsen et al. 2023) of predictions (N, 2, H, W) against their targets:
    the mean over images i of the `exit_wave_rmse` rmse of predicted[i] against true[j(i)], j a
    random derangement (`random_derangement(N, rng)`), so that no image meets its own target.
    Needs N >= 2."""
    predicted = _exit_waves(predicted, "predicted", 4)
    true = _exit_waves(true, "true", 4)
    if predicted.shape != true.shape:
        raise ValueError(f"predicted {predicted.shape} and true {true.shape} differ in shape")
    if len(predicted) < 2:
        raise ValueError(f"the Y-scramble needs N >= 2 images, got {len(predicted)}")
    other = random_derangement(len(predicted), rng)
    per_image = np.sqrt(((predicted - true[other]) ** 2).mean(axis=(1, 2, 3)))
    return float(per_image.mean())
