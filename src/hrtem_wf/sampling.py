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
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
from scipy.stats import truncnorm


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
