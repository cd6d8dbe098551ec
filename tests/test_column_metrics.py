"""Evaluation of column detection and of exit waves (hrtem_wf.evaluations.columns): columns from
confidence maps (Madsen 2018 sec. 2.5), their matching to the truth, counts and metrics, and the
RMSE and Y-scramble baseline of exit waves (Larsen 2023), against numbers worked out by hand."""

from __future__ import annotations

import heapq

import numpy as np
import pytest
import scipy.ndimage

from hrtem_wf.evaluations.columns import (
    ColumnCounts,
    DetectedColumns,
    column_counts,
    column_metrics,
    exit_wave_rmse,
    find_columns,
    match_columns,
    random_derangement,
    y_scramble_rmse,
)

SIGMA = 2.0
EPSILON = 0.995


def gaussian_maps(shape, yx, classes, n_classes, amplitudes=None) -> np.ndarray:
    """(n_classes + 1, H, W): a Gaussian of SIGMA px per column in its class channel (their maximum
    where they overlap), background = 1 - max over the class channels."""
    rows, cols = np.indices(shape)
    maps = np.zeros((n_classes + 1, *shape))
    amplitudes = np.ones(len(yx)) if amplitudes is None else amplitudes
    for (y, x), label, amplitude in zip(yx, classes, amplitudes):
        blob = amplitude * np.exp(-((rows - y) ** 2 + (cols - x) ** 2) / (2 * SIGMA**2))
        maps[label] = np.maximum(maps[label], blob)
    maps[-1] = 1.0 - maps[:-1].max(axis=0)
    return maps


def eq8_ratio(amplitude: float, epsilon: float = EPSILON) -> float:
    """sum of the class sums / background sum over the pixels with B < epsilon of an isolated
    Gaussian B = 1 - A g, in the continuum: the segment reaches g = a = (1 - epsilon) / A, its
    area is 2 pi s^2 ln(1/a), its class sum A 2 pi s^2 (1 - a)."""
    a = (1 - epsilon) / amplitude
    return amplitude * (1 - a) / (np.log(1 / a) - amplitude * (1 - a))


# ---------------------------------------------------------------------------- find_columns


def test_every_column_is_found_within_005_px_with_its_class():
    offsets = [(0.31, -0.27), (-0.45, 0.12), (0.08, 0.49), (-0.2, -0.38), (0.44, 0.0)]
    yx = [(12 + 16 * (i // 3) + dy, 12 + 16 * (i % 3) + dx) for i, (dy, dx) in enumerate(offsets)]
    classes = [0, 1, 1, 0, 1]
    maps = gaussian_maps((44, 60), yx, classes, n_classes=2)

    detected = find_columns(maps, epsilon=EPSILON, t=0.1)  # eq. 8 ratio 0.231 > 0.1: all kept

    assert len(detected) == 5
    assert detected.yx_px.shape == (5, 2) and detected.probabilities.shape == (5, 2)
    for (y, x), label in zip(yx, classes):
        distance = np.hypot(*(detected.yx_px - (y, x)).T)
        nearest = int(np.argmin(distance))
        assert distance[nearest] < 0.05
        assert detected.classes[nearest] == label
    # hard limit: a column's segment is exactly its pixels with background < epsilon
    rows, cols = np.indices(maps.shape[1:])
    for (y, x), size in zip(yx, detected.n_pixels):
        near = np.hypot(rows - y, cols - x) < 8
        assert size == np.count_nonzero(near & (maps[-1] < EPSILON))
    # eq. 7: the C + 1 probabilities of a segment sum to 1
    np.testing.assert_allclose(
        detected.probabilities.sum(axis=1) + detected.background_probability, 1.0
    )


def test_one_class_maps():
    maps = gaussian_maps((30, 40), [(10.2, 10.7), (18.6, 28.1)], [0, 0], n_classes=1)

    detected = find_columns(maps, t=0.1)

    assert detected.probabilities.shape == (2, 1)
    np.testing.assert_array_equal(detected.classes, [0, 0])
    np.testing.assert_allclose(detected.yx_px, [(10.2, 10.7), (18.6, 28.1)], atol=0.05)


def test_the_t_rule_of_eq8_discards_the_weak_blob_and_keeps_the_strong_one():
    strong, weak = (15.3, 14.6), (16.0, 45.2)
    maps = gaussian_maps((32, 60), [strong, weak], [0, 1], n_classes=2, amplitudes=[1.0, 0.1])
    # Eq. 8 by hand on the pixels of each segment (the pixels below epsilon near each blob).
    rows, cols = np.indices(maps.shape[1:])
    ratios, background_p = [], []
    for y, x in (strong, weak):
        segment = (np.hypot(rows - y, cols - x) < 10) & (maps[-1] < EPSILON)
        class_sum, background_sum = maps[:2, segment].sum(), maps[2, segment].sum()
        ratios.append(class_sum / background_sum)
        background_p.append(background_sum / (class_sum + background_sum))
    # the continuum values: 0.231 (A = 1) and 0.0328 (A = 0.1)
    assert ratios[0] == pytest.approx(eq8_ratio(1.0), rel=0.03)
    assert ratios[1] == pytest.approx(eq8_ratio(0.1), rel=0.03)
    assert 0.2 < ratios[0] < 0.25 and 0.03 < ratios[1] < 0.04

    kept = find_columns(maps, epsilon=EPSILON, t=0.1)  # 0.0328 < 0.1 <= 0.231
    assert len(kept) == 1
    np.testing.assert_allclose(kept.yx_px[0], strong, atol=0.05)
    assert kept.classes[0] == 0
    assert kept.background_probability[0] == pytest.approx(background_p[0])
    assert len(find_columns(maps, epsilon=EPSILON, t=0.02)) == 2  # both ratios above 0.02
    assert len(find_columns(maps, epsilon=EPSILON, t=0.5)) == 0  # the defaults: both below 0.5
    assert len(find_columns(maps)) == 1  # the default t = 0.1 keeps the strong one


def test_all_background_gives_no_columns():
    for background in (1.0, 0.998):  # everywhere >= epsilon = 0.995
        maps = np.zeros((3, 20, 24))
        maps[-1] = background
        maps[0] = 1.0 - background
        detected = find_columns(maps)
        assert len(detected) == 0
        assert detected.yx_px.shape == (0, 2) and detected.probabilities.shape == (0, 2)


def test_a_flat_minimum_is_one_column():
    maps = gaussian_maps((30, 30), [(15.0, 15.0)], [0], n_classes=1)
    maps[0, 14:17, 14:17] = 1.0  # a saturated 3 x 3 centre: background exactly 0
    maps[1] = 1.0 - maps[0]

    detected = find_columns(maps, t=0.1)

    assert len(detected) == 1
    np.testing.assert_allclose(detected.yx_px[0], (15.0, 15.0), atol=1e-9)


def test_a_terrace_that_drains_to_a_column_is_no_seed():
    rows, cols = np.indices((30, 30))
    background = 1.0 - np.exp(-((rows - 15) ** 2 + (cols - 15) ** 2) / (2 * 3.0**2))
    # a flat terrace in rows 3-7, level with the column's slope 7.5 px out: higher than row 8
    # below it, lower than everything else around it
    background[3:8, 12:19] = 1.0 - np.exp(-(7.5**2) / (2 * 3.0**2))
    window_min = scipy.ndimage.minimum_filter(background, footprint=np.ones((3, 3)))
    _, n_groups = scipy.ndimage.label(background == window_min, structure=np.ones((3, 3)))
    assert n_groups == 2  # the terrace's inside is a local minimum pixel by pixel

    detected = find_columns(np.stack([1.0 - background, background]), t=0.0)

    assert len(detected) == 1  # but not a regional minimum: the terrace joins the column


def priority_flood(background: np.ndarray, epsilon: float) -> np.ndarray:
    """Meyer's flooding from the 8-connected single-pixel minima below epsilon (the test maps
    have no plateaus), restricted to background < epsilon: labels 1.. in raster order."""
    height, width = background.shape
    labels = np.zeros(background.shape, int)
    queue = []
    for y in range(height):
        for x in range(width):
            window = background[max(0, y - 1) : y + 2, max(0, x - 1) : x + 2]
            if background[y, x] < epsilon and background[y, x] == window.min():
                labels[y, x] = labels.max() + 1
                heapq.heappush(queue, (background[y, x], len(queue), y, x))
    order = len(queue)
    while queue:
        _, _, y, x = heapq.heappop(queue)
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                v, u = y + dy, x + dx
                if 0 <= v < height and 0 <= u < width and labels[v, u] == 0:
                    if background[v, u] < epsilon:
                        labels[v, u] = labels[y, x]
                        order += 1
                        heapq.heappush(queue, (background[v, u], order, v, u))
    return labels


def test_touching_columns_split_like_a_priority_flood():
    # A strong column and a weak one 11 px apart: their segments meet at the ridge between them.
    maps = gaussian_maps(
        (36, 46), [(17.4, 14.2), (18.1, 25.3)], [0, 1], n_classes=2, amplitudes=[1.0, 0.3]
    )
    flood = priority_flood(maps[-1], EPSILON)
    assert flood.max() == 2

    detected = find_columns(maps, epsilon=EPSILON, t=0.01)

    assert len(detected) == 2
    np.testing.assert_array_equal(detected.classes, [0, 1])
    np.testing.assert_array_equal(detected.n_pixels, [np.count_nonzero(flood == k) for k in (1, 2)])
    assert detected.n_pixels.sum() == np.count_nonzero(maps[-1] < EPSILON)
    assert np.hypot(*(detected.yx_px[0] - (17.4, 14.2))) < 0.1  # little mass beyond the ridge


def test_find_columns_rejects_bad_maps():
    with pytest.raises(ValueError, match="C >= 1"):
        find_columns(np.ones((1, 8, 8)))
    with pytest.raises(ValueError, match="C >= 1"):
        find_columns(np.ones((8, 8)))
    with pytest.raises(ValueError, match="epsilon"):
        find_columns(np.ones((2, 8, 8)), epsilon=1.5)


# ---------------------------------------------------------------------------- match_columns


def test_optimal_matching_differs_from_greedy_nearest_neighbour():
    predicted = [(0.0, 1.0), (0.0, 2.9)]
    true = [(0.0, 0.0), (0.0, 1.8)]
    # greedy: the closest pair first, p0-t1 (0.8), then p1-t0 (2.9): 3.7 in total;
    # optimal: p0-t0 (1.0) + p1-t1 (1.1) = 2.1.
    pairs, distances = match_columns(predicted, true, radius_px=5.0)

    np.testing.assert_array_equal(pairs, [[0, 0], [1, 1]])
    np.testing.assert_allclose(distances, [1.0, 1.1])


def test_far_pairs_never_cost_a_pair_within_the_radius():
    # p0 sits on t0. Raw distances make {p0-t0 (0), p1-t1 (3.041)} the cheapest assignment
    # (3.041 < 1.5 + 1.581), and so does greedy; p1-t1 is beyond the radius 3, which would leave
    # one pair. Both pairs of {p0-t1 (1.5), p1-t0 (1.581)} are within it: that matching is kept.
    predicted = [(0.0, 0.0), (0.5, -1.5)]
    true = [(0.0, 0.0), (0.0, 1.5)]

    pairs, distances = match_columns(predicted, true, radius_px=3.0)

    np.testing.assert_array_equal(pairs, [[0, 1], [1, 0]])
    np.testing.assert_allclose(distances, [1.5, np.sqrt(0.25 + 2.25)])


def test_a_pair_beyond_the_radius_stays_unmatched():
    pairs, distances = match_columns([(5.0, 5.0), (20.0, 20.0)], [(5.5, 5.0), (24.0, 20.0)], 3.0)

    np.testing.assert_array_equal(pairs, [[0, 0]])
    np.testing.assert_allclose(distances, [0.5])


def test_empty_inputs_match_nothing():
    for predicted, true in (([], [(1.0, 2.0)]), ([(1.0, 2.0)], []), ([], [])):
        pairs, distances = match_columns(np.zeros((0, 2)) if not predicted else predicted, true, 2)
        assert pairs.shape == (0, 2) and distances.shape == (0,)


# ---------------------------------------------------------------------------- counts, metrics


def detections(yx, classes, n_classes=2) -> DetectedColumns:
    yx = np.asarray(yx, float).reshape(-1, 2)
    probabilities = np.eye(n_classes)[np.asarray(classes, int)].reshape(-1, n_classes)
    return DetectedColumns(yx, np.asarray(classes, int), probabilities, np.zeros(len(yx)), None)


TRUE_YX = [(10.0, 10.0), (10.0, 30.0), (30.0, 10.0), (30.0, 30.0), (50.0, 50.0)]
TRUE_CLASSES = [0, 1, 1, 0, 1]


def test_counts_and_metrics_of_a_hand_case():
    # 4 detections: 3 within 3 px of a true column (distances 0.5, 1.0, 1.0; the third of the
    # wrong class, 0 for 1), one far from all. True columns 3 and 4 are missed.
    detected = detections([(10.3, 10.4), (10.0, 31.0), (30.6, 10.8), (70.0, 5.0)], [0, 1, 0, 1])

    counts = column_counts(detected, TRUE_YX, TRUE_CLASSES, radius_px=3.0, n_classes=2)

    assert (counts.true_positive, counts.false_positive, counts.false_negative) == (3, 1, 2)
    assert counts.squared_error_sum_px2 == pytest.approx(0.25 + 1.0 + 1.0)
    np.testing.assert_array_equal(counts.confusion, [[1, 0], [1, 1]])  # rows true, cols detected

    metrics = column_metrics(counts, pixel_size_A=0.1)

    assert metrics["precision"] == pytest.approx(0.75)
    assert metrics["recall"] == pytest.approx(0.6)
    assert metrics["f1"] == pytest.approx(2 * 0.75 * 0.6 / 1.35)
    assert metrics["position_rmse_A"] == pytest.approx(np.sqrt(2.25 / 3) * 0.1)
    assert metrics["class_accuracy"] == pytest.approx(2 / 3)
    assert metrics["confusion"] == [[1, 0], [1, 1]]
    assert (metrics["n_true"], metrics["n_detected"], metrics["n_matched"]) == (5, 4, 3)


def test_counts_add_over_images_and_unclassified_columns_stay_out_of_the_confusion():
    first = column_counts(
        detections([(10.3, 10.4), (10.0, 31.0), (30.6, 10.8), (70.0, 5.0)], [0, 1, 0, 1]),
        TRUE_YX,
        TRUE_CLASSES,
        radius_px=3.0,
        n_classes=2,
    )
    # second image: two true columns, the unclassified one (-1) found 2 px off, the other missed
    second = column_counts(
        detections([(5.0, 7.0)], [1]), [(5.0, 5.0), (40.0, 40.0)], [-1, 0], 3.0, n_classes=2
    )
    assert second == ColumnCounts(1, 0, 1, 4.0, np.zeros((2, 2), np.int64))

    total = first + second

    assert total == sum([first, second])
    assert (total.true_positive, total.false_positive, total.false_negative) == (4, 1, 3)
    assert total.squared_error_sum_px2 == pytest.approx(6.25)
    np.testing.assert_array_equal(total.confusion, [[1, 0], [1, 1]])
    metrics = column_metrics(total, pixel_size_A=0.5)
    assert metrics["precision"] == pytest.approx(4 / 5)
    assert metrics["recall"] == pytest.approx(4 / 7)
    assert metrics["position_rmse_A"] == pytest.approx(np.sqrt(6.25 / 4) * 0.5)
    assert metrics["class_accuracy"] == pytest.approx(2 / 3)  # 3 classified pairs, not 4


def test_metrics_of_empty_counts():
    empty = column_metrics(ColumnCounts(), pixel_size_A=0.1)
    assert (empty["precision"], empty["recall"], empty["f1"]) == (1.0, 1.0, 1.0)
    assert empty["position_rmse_A"] is None and empty["class_accuracy"] is None
    assert empty["confusion"] == []

    missed = column_metrics(
        column_counts(detections([], []), [(1.0, 1.0)], [0], 2.0, n_classes=2), 0.1
    )
    assert (missed["precision"], missed["recall"], missed["f1"]) == (0.0, 0.0, 0.0)
    assert missed["position_rmse_A"] is None and missed["confusion"] == [[0, 0], [0, 0]]


def test_column_counts_from_find_columns():
    yx = [(10.3, 11.2), (10.8, 27.4), (26.1, 18.9)]
    classes = [1, 0, 1]
    detected = find_columns(gaussian_maps((38, 40), yx, classes, n_classes=2), t=0.1)

    counts = column_counts(detected, yx, classes, radius_px=2.0, n_classes=2)

    assert (counts.true_positive, counts.false_positive, counts.false_negative) == (3, 0, 0)
    np.testing.assert_array_equal(counts.confusion, [[1, 0], [0, 2]])
    assert column_metrics(counts, 0.1)["position_rmse_A"] < 0.005


# ---------------------------------------------------------------------------- exit waves


def test_exit_wave_rmse_by_hand():
    true = np.zeros((2, 2, 2))
    predicted = np.zeros((2, 2, 2))
    predicted[0] = [[1.0, -1.0], [3.0, 1.0]]  # squared errors 1, 1, 9, 1: mean 3
    predicted[1] = [[2.0, 0.0], [0.0, 0.0]]  # squared errors 4, 0, 0, 0: mean 1

    result = exit_wave_rmse(predicted, true)

    assert result["rmse_real"] == pytest.approx(np.sqrt(3.0))
    assert result["rmse_imag"] == pytest.approx(1.0)
    assert result["rmse"] == pytest.approx(np.sqrt(16.0 / 8))


def test_exit_wave_rmse_checks_shapes():
    with pytest.raises(ValueError, match="differ in shape"):
        exit_wave_rmse(np.zeros((2, 4, 4)), np.zeros((2, 4, 5)))
    with pytest.raises(ValueError, match=r"\(2, H, W\)"):
        exit_wave_rmse(np.zeros((3, 4, 4)), np.zeros((3, 4, 4)))
    with pytest.raises(ValueError, match="real"):
        exit_wave_rmse(np.zeros((4, 4), complex), np.zeros((4, 4), complex))


def test_y_scramble_of_two_images_by_hand():
    true = np.stack([np.full((2, 3, 3), 1.0), np.full((2, 3, 3), 4.0)])
    predicted = np.stack([np.full((2, 3, 3), 1.5), np.full((2, 3, 3), 2.0)])
    # the only derangement of two: prediction 0 against target 1 (|1.5 - 4| = 2.5), prediction 1
    # against target 0 (|2 - 1| = 1)
    assert y_scramble_rmse(predicted, true, np.random.default_rng(3)) == pytest.approx(1.75)


def test_y_scramble_never_pairs_an_image_with_itself():
    # prediction = target = the constant k for image k: the term of image i is |i - j(i)|. The
    # two derangements of three give 1, 1, 2 (mean 4/3); a fixed point would give a term 0.
    images = np.stack([np.full((2, 2, 2), float(k)) for k in range(3)])
    for seed in range(40):
        assert y_scramble_rmse(images, images, seed) == pytest.approx(4 / 3)
    for n in range(2, 7):
        for seed in range(30):
            assert np.all(random_derangement(n, seed) != np.arange(n))
    with pytest.raises(ValueError, match="N >= 2"):
        y_scramble_rmse(images[:1], images[:1], 0)
