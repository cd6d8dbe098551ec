"""Are two `results/` trees the same, provenance aside? For refactors that must not change
behaviour: run the demo before and after, then

    .venv/bin/python benchmarks/compare_runs.py BEFORE/results AFTER/results

Compares every structure (.extxyz: atoms, cell, per-atom arrays, info), store (.zarr: every
array bit for bit, attributes), table (.parquet, .csv), weights (.pt, tensor by tensor) and
JSON file, leaving out the provenance that names code and package versions (PROVENANCE) and
wall-clock times (TIMES). Logs, benchmarks and figures are not compared. Prints one line per
file that differs and a count; exits 1 when any differs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

# Keys naming code or package versions, at any depth: these may change in a refactor.
PROVENANCE = {
    "versions",
    "provenance",
    "code_version",
    "libraries",
    "hrtem_wf_version",
    "structure_code_version",
    "training_code_version",
    "evaluation_code_version",
}
# Keys and columns holding wall-clock measurements: different on every run.
TIMES = ("seconds", "time", "date", "elapsed", "wall")
SKIPPED = ("logs", "benchmarks", "report", "plan")


def kept(key: str) -> bool:
    # a table's flattened columns name their key last: structure.provenance
    return key.rsplit(".", 1)[-1] not in PROVENANCE and not any(
        word in key.lower() for word in TIMES
    )


def strip(value):
    """The value without its provenance and time keys, at every depth."""
    if isinstance(value, dict):
        return {k: strip(v) for k, v in value.items() if kept(str(k))}
    if isinstance(value, list):
        return [strip(v) for v in value]
    return value


def same_json(a, b) -> bool:
    return json.dumps(strip(a), sort_keys=True, default=str) == json.dumps(
        strip(b), sort_keys=True, default=str
    )


def compare_extxyz(a: Path, b: Path) -> str | None:
    import ase.io

    x, y = ase.io.read(a, format="extxyz"), ase.io.read(b, format="extxyz")
    if not (np.array_equal(x.numbers, y.numbers) and np.array_equal(x.positions, y.positions)):
        return "atoms differ"
    if not np.array_equal(x.cell.array, y.cell.array):
        return "cell differs"
    if sorted(x.arrays) != sorted(y.arrays) or any(
        not np.array_equal(x.arrays[k], y.arrays[k]) for k in x.arrays
    ):
        return "per-atom arrays differ"
    if not same_json(x.info, y.info):
        return f"info differs: {strip(x.info)} vs {strip(y.info)}"
    return None


def compare_zarr(a: Path, b: Path) -> str | None:
    import zarr

    x, y = zarr.open_group(str(a), mode="r"), zarr.open_group(str(b), mode="r")
    if sorted(x.array_keys()) != sorted(y.array_keys()):
        return f"arrays {sorted(x.array_keys())} vs {sorted(y.array_keys())}"
    for name in x.array_keys():
        p, q = x[name], y[name]
        if p.dtype != q.dtype or p.shape != q.shape:
            return f"{name}: {p.dtype}{p.shape} vs {q.dtype}{q.shape}"
        if not np.array_equal(p[...], q[...], equal_nan=p.dtype.kind in "fc"):
            return f"{name}: values differ"
    if not same_json(dict(x.attrs), dict(y.attrs)):
        return "attributes differ"
    return None


def compare_table(a: Path, b: Path) -> str | None:
    import pandas as pd

    read = pd.read_parquet if a.suffix == ".parquet" else pd.read_csv
    x, y = read(a), read(b)
    x = x[[c for c in x.columns if kept(str(c))]]
    y = y[[c for c in y.columns if kept(str(c))]]
    if list(x.columns) != list(y.columns):
        return f"columns {list(x.columns)} vs {list(y.columns)}"
    # provenance columns hold JSON text in some tables: compare them stripped
    for column in x.columns:
        if x[column].dtype == object and x[column].astype(str).str.startswith("{").all():
            x[column] = [json.dumps(strip(json.loads(v)), sort_keys=True) for v in x[column]]
            y[column] = [json.dumps(strip(json.loads(v)), sort_keys=True) for v in y[column]]
    if not x.equals(y):
        return "rows differ"
    return None


def compare_weights(a: Path, b: Path) -> str | None:
    import torch

    x = torch.load(a, map_location="cpu", weights_only=True)
    y = torch.load(b, map_location="cpu", weights_only=True)
    if sorted(x) != sorted(y):
        return "parameter names differ"
    differing = [k for k in x if not torch.equal(x[k], y[k])]
    return f"{len(differing)} tensors differ, e.g. {differing[0]}" if differing else None


def compare_json(a: Path, b: Path) -> str | None:
    x, y = json.loads(a.read_text()), json.loads(b.read_text())
    return None if same_json(x, y) else "values differ"


COMPARE = {
    ".extxyz": compare_extxyz,
    ".zarr": compare_zarr,
    ".parquet": compare_table,
    ".csv": compare_table,
    ".pt": compare_weights,
    ".json": compare_json,
}


def outputs(root: Path) -> dict[str, Path]:
    found = {}
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if relative.parts[0] in SKIPPED or any(p.endswith(".zarr") for p in relative.parts[:-1]):
            continue
        if path.suffix in COMPARE:
            found[str(relative)] = path
    return found


def main() -> int:
    before, after = (Path(p) for p in sys.argv[1:3])
    x, y = outputs(before), outputs(after)
    problems = [f"{name}: only in {before}" for name in sorted(set(x) - set(y))]
    problems += [f"{name}: only in {after}" for name in sorted(set(y) - set(x))]
    for name in sorted(set(x) & set(y)):
        difference = COMPARE[x[name].suffix](x[name], y[name])
        if difference:
            problems.append(f"{name}: {difference}")
    print(*problems, sep="\n")
    print(f"{len(set(x) & set(y))} outputs compared, {len(problems)} differ")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
