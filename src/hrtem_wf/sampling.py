"""Seeds and parameter distributions shared by every stage.

Per-item randomness comes from a seed derived from (global seed, block name, index), so reruns
are bit-identical and growing a set never changes the items it already has.

A distribution in the config is a small mapping:

    {distribution: fixed, value: 5.0}
    {distribution: uniform, low: 2.0, high: 8.0}
    {distribution: loguniform, low: 100, high: 1000}
    {distribution: normal, mean: 40, sd: 10, min: 30, max: 50}   # truncated when min/max given
    {distribution: choice, values: [100, 300, 600]}
    {distribution: mixture, weights: [0.5, 0.5], components: [<spec>, <spec>]}
                                    # a component drawn by weight, then a value from it
    {distribution: sequence, values: [-500, -400, ...], jitter_sd: 20}
                                    # the index-th value (cycling) + N(0, jitter_sd): grids
                                    # such as the study's focal series; needs an index

A bare number is accepted as shorthand for ``fixed``.

Where one value must stand for a distribution (the training pixel size a micrograph is resampled
to), it is `nominal(spec)`, the median; where a check needs its range, `support(spec)`.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

# scipy.stats is imported where a truncated normal is drawn or evaluated, not here: it costs
# 0.5 s to import, and every job imports this module (benchmarks/jobs.py).


def derive_seed(global_seed: int, block: str, index: int, stream: str = "") -> int:
    """A 63-bit seed that depends only on (global seed, block name, index, stream name)."""
    key = f"{int(global_seed)}|{block}|{int(index)}|{stream}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "little") >> 1


def rng_for(global_seed: int, block: str, index: int, stream: str = "") -> np.random.Generator:
    return np.random.default_rng(derive_seed(global_seed, block, index, stream))


def sample(spec: Any, rng: np.random.Generator, index: int | None = None) -> float:
    """Draw one value from a distribution spec (see module docstring); `index` is the position
    in a grid (`sequence` only)."""
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        return float(spec)
    kind = spec["distribution"]
    if kind == "sequence":
        if index is None:
            raise ValueError(
                "a `sequence` distribution is a grid: it can only be used where "
                "draws are numbered (images: defocus_A, dose_e_per_A2)"
            )
        value = float(spec["values"][int(index) % len(spec["values"])])
        jitter = float(spec.get("jitter_sd", 0.0))
        return value + float(rng.normal(0.0, jitter)) if jitter > 0 else value
    if kind == "fixed":
        return spec["value"]
    if kind == "uniform":
        return float(rng.uniform(spec["low"], spec["high"]))
    if kind == "loguniform":
        return float(np.exp(rng.uniform(np.log(spec["low"]), np.log(spec["high"]))))
    if kind == "normal":
        mean, sd = float(spec["mean"]), float(spec["sd"])
        lo, hi = spec.get("min", -np.inf), spec.get("max", np.inf)
        if sd == 0:
            return float(np.clip(mean, lo, hi))
        from scipy.stats import truncnorm

        a, b = (lo - mean) / sd, (hi - mean) / sd
        return float(truncnorm.rvs(a, b, loc=mean, scale=sd, random_state=rng))
    if kind == "choice":
        values = spec["values"]
        return values[int(rng.integers(len(values)))]
    if kind == "mixture":
        weights = np.asarray(spec["weights"], dtype=float)
        component = int(rng.choice(len(weights), p=weights / weights.sum()))
        return sample(spec["components"][component], rng)
    raise ValueError(f"unknown distribution {kind!r}")


def support(spec: Any) -> tuple[float, float]:
    """The (low, high) range a spec can produce; used for checks and plots."""
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        return float(spec), float(spec)
    kind = spec["distribution"]
    if kind == "fixed":
        return float(spec["value"]), float(spec["value"])
    if kind in ("uniform", "loguniform"):
        return float(spec["low"]), float(spec["high"])
    if kind == "normal":
        return float(spec.get("min", -np.inf)), float(spec.get("max", np.inf))
    if kind == "choice":
        return float(min(spec["values"])), float(max(spec["values"]))
    if kind == "sequence":
        if float(spec.get("jitter_sd", 0.0)) > 0:
            return -np.inf, np.inf
        return float(min(spec["values"])), float(max(spec["values"]))
    if kind == "mixture":
        ranges = [support(component) for component in spec["components"]]
        return min(r[0] for r in ranges), max(r[1] for r in ranges)
    raise ValueError(f"unknown distribution {kind!r}")


def nominal(spec: Any) -> float:
    """The median of a spec: the one value that stands for the distribution where one is needed
    (a fixed number is itself). Where the CDF is 1/2 over an interval (a `choice` of an even
    number of values), the interval's midpoint, as numpy.median. A `sequence` counts as its
    grid's values drawn alike, each plus N(0, jitter_sd); a `mixture`, by bisection of `cdf`."""
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        return float(spec)
    kind = spec["distribution"]
    if kind == "fixed":
        return float(spec["value"])
    if kind == "uniform":
        return 0.5 * (float(spec["low"]) + float(spec["high"]))
    if kind == "loguniform":
        return float(np.sqrt(float(spec["low"]) * float(spec["high"])))
    if kind == "normal":
        mean, sd = float(spec["mean"]), float(spec["sd"])
        lo, hi = spec.get("min", -np.inf), spec.get("max", np.inf)
        if sd == 0:
            return float(np.clip(mean, lo, hi))
        from scipy.stats import truncnorm

        return float(truncnorm.median((lo - mean) / sd, (hi - mean) / sd, loc=mean, scale=sd))
    if kind == "choice" or (kind == "sequence" and float(spec.get("jitter_sd", 0.0)) == 0):
        return float(np.median(spec["values"]))
    if kind in ("sequence", "mixture"):
        return _median_by_bisection(spec)
    raise ValueError(f"unknown distribution {kind!r}")


def cdf(spec: Any, x: float) -> float:
    """P(value <= x) for a spec (a `sequence`: its index uniform over the grid)."""
    x = float(x)
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        return float(x >= spec)
    kind = spec["distribution"]
    if kind == "fixed":
        return float(x >= spec["value"])
    if kind in ("uniform", "loguniform"):
        low, high = float(spec["low"]), float(spec["high"])
        if low == high:
            return float(x >= low)
        if kind == "loguniform":
            if x <= 0:
                return 0.0
            x, low, high = np.log(x), np.log(low), np.log(high)
        return float(np.clip((x - low) / (high - low), 0.0, 1.0))
    if kind == "normal":
        mean, sd = float(spec["mean"]), float(spec["sd"])
        lo, hi = spec.get("min", -np.inf), spec.get("max", np.inf)
        if sd == 0:
            return float(x >= np.clip(mean, lo, hi))
        from scipy.stats import truncnorm

        return float(truncnorm.cdf(x, (lo - mean) / sd, (hi - mean) / sd, loc=mean, scale=sd))
    if kind in ("choice", "sequence"):
        values = np.asarray(spec["values"], dtype=float)
        jitter = float(spec.get("jitter_sd", 0.0))
        if kind == "sequence" and jitter > 0:
            from scipy.stats import norm

            return float(np.mean(norm.cdf(x, loc=values, scale=jitter)))
        return float(np.mean(values <= x))
    if kind == "mixture":
        weights = np.asarray(spec["weights"], dtype=float)
        values = [cdf(component, x) for component in spec["components"]]
        return float(np.dot(weights, values) / weights.sum())
    raise ValueError(f"unknown distribution {kind!r}")


def _median_by_bisection(spec: Any) -> float:
    """The midpoint of the interval where the CDF crosses 1/2 (found by bisection)."""

    def first_x(reached) -> float:  # the smallest float x with reached(cdf(spec, x))
        lo, hi = -1.0, 1.0
        while reached(cdf(spec, lo)):
            lo *= 2.0
        while not reached(cdf(spec, hi)):
            hi *= 2.0
        while (middle := 0.5 * (lo + hi)) not in (lo, hi):
            lo, hi = (lo, middle) if reached(cdf(spec, middle)) else (middle, hi)
        return hi

    return 0.5 * (first_x(lambda p: p >= 0.5) + first_x(lambda p: p > 0.5))


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A rotation matrix uniform on SO(3) (all three angles, in-plane included).

    Built from a uniformly random unit quaternion (Shoemake's method)."""
    u1, u2, u3 = rng.random(3)
    q = np.array(
        [
            np.sqrt(1 - u1) * np.sin(2 * np.pi * u2),
            np.sqrt(1 - u1) * np.cos(2 * np.pi * u2),
            np.sqrt(u1) * np.sin(2 * np.pi * u3),
            np.sqrt(u1) * np.cos(2 * np.pi * u3),
        ]
    )
    x, y, z, w = q
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )
