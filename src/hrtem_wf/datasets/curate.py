"""Curation: a dataset block's `select` picks images by their metadata, reproducibly per seed.

    select:
      where:                    # Parquet columns (see a dataset's .parquet): a range or a set
        image.dose_e_per_A2: {min: 200, max: 700}      # inclusive; either bound may be left out
        structure.material: [Au]
      structures: 40            # unique structures, drawn among those left by `where`
      focal_conditions: 2       # per structure: distinct focal points (lenses), drawn
      images: 300               # images in all, drawn among those left, spread evenly over
                                #   the structures (a 1st image of each, then a 2nd, ...)

With a top-level `scale`, the structures and images counts scale too (`scaled_select`).

Each step draws by a hash of (seed, dataset, item), so a selection does not depend on which
other items exist and a larger request keeps the smaller one's picks. Asking for more than the
filters leave is an error that says how many there are. `selection_report` gives what was asked,
the counts after each step and the realized distributions (written beside the dataset).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from hrtem_wf.sampling import derive_seed

#: Columns whose distributions every selection report (and the report's histograms) shows.
DISTRIBUTION_COLUMNS = {
    "image.dose_e_per_A2": "dose (e/A^2)",
    "image.defocus_A": "defocus (A)",
    "image.focal_spread_sigma_A": "focal spread sigma (A)",
    "image.pixel_size_A": "pixel size (A)",
    "structure.substrate_thickness_A": "substrate thickness (A)",
    "structure.radius_A": "particle radius (A)",
    "structure.n_defects": "planar defects",
    "image.material": "material",
}
HISTOGRAM_BINS = 10


def _draw_key(seed: int, dataset: str, stream: str, key: str) -> int:
    """The position of item `key` in the dataset's draw of `stream` (structure, focal, image)."""
    return derive_seed(seed, dataset, 0, f"{stream}|{key}")


def _hash_order(keys: list[str], seed: int, dataset: str, stream: str) -> list[str]:
    return sorted(keys, key=lambda key: _draw_key(seed, dataset, stream, key))


def _where(table: pd.DataFrame, where: dict) -> pd.Series:
    keep = pd.Series(True, index=table.index)
    for column, condition in where.items():
        if column not in table.columns:
            near = [c for c in table.columns if column.split(".")[-1] in c]
            raise ValueError(
                f"select.where: no column {column!r} in the dataset's table"
                + (f" (did you mean {near}?)" if near else "")
            )
        values = table[column]
        if isinstance(condition, dict):
            if not pd.api.types.is_numeric_dtype(values):
                raise ValueError(
                    f"select.where.{column}: a range needs a numeric column "
                    f"(it holds {values.dtype}); give a list of values"
                )
            if "min" in condition:
                keep &= values >= condition["min"]
            if "max" in condition:
                keep &= values <= condition["max"]
        else:
            keep &= values.isin(list(condition))
    return keep


def _lens_keys(rows: pd.DataFrame) -> pd.Series:
    """One key per focal condition: (structure, image block, focal point); every image its own
    lens when the stores predate focal points."""
    focal = rows["image.focal_point"] if "image.focal_point" in rows else rows["image.image_index"]
    return rows["structure_id"] + "#" + rows["image_block"] + "#" + focal.astype(str)


def _balanced_order(rows: pd.DataFrame, seed: int, dataset: str) -> list:
    """Row labels in drawing order: one image of every structure (structures in hash order),
    then a second of each, and so on, each structure's images in hash order; so n images cover
    min(n, structures) structures."""
    keys = rows["image_store"] + "#" + rows["image.image_index"].astype(str)
    image_hash = keys.map(lambda key: _draw_key(seed, dataset, "image", key))
    structure_hash = rows["structure_id"].map(
        lambda sid: _draw_key(seed, dataset, "structure", sid)
    )
    rank = image_hash.groupby(rows["structure_id"]).rank(method="first")
    return list(
        pd.DataFrame({"rank": rank, "structure": structure_hash})
        .sort_values(["rank", "structure"])
        .index
    )


def _need(available: int, wanted: int, what: str) -> None:
    if wanted > available:
        raise ValueError(
            f"select.{what}: asks for {wanted}, but only {available} are left after "
            f"the filters before it"
        )


def scaled_select(select: dict | None, scale: float = 1.0) -> dict:
    """`select` with its structures and images counts x scale (at least 1), as a recipe run at
    `scale` shrinks its structure sets; focal conditions per structure stay."""
    select = dict(select or {})
    for key in ("structures", "images"):
        if key in select:
            select[key] = max(1, int(round(int(select[key]) * float(scale))))
    return select


def curate(
    table: pd.DataFrame, select: dict | None, seed: int, dataset: str
) -> tuple[pd.DataFrame, dict]:
    """(the selected rows in their original order, counts after each step)."""
    select = select or {}
    counts = {
        "available": {"images": len(table), "structures": int(table["structure_id"].nunique())}
    }

    def note(step: str, rows: pd.DataFrame) -> None:
        counts[step] = {"images": len(rows), "structures": int(rows["structure_id"].nunique())}

    rows = table[_where(table, select.get("where") or {})]
    note("where", rows)
    if "structures" in select:
        unique = sorted(rows["structure_id"].unique())
        _need(len(unique), int(select["structures"]), "structures")
        chosen = set(_hash_order(unique, seed, dataset, "structure")[: int(select["structures"])])
        rows = rows[rows["structure_id"].isin(chosen)]
        note("structures", rows)
    if "focal_conditions" in select:
        wanted = int(select["focal_conditions"])
        lens = _lens_keys(rows)
        keep = set()
        for structure_id, lenses in lens.groupby(rows["structure_id"]):
            unique = sorted(lenses.unique())
            _need(len(unique), wanted, f"focal_conditions (structure {structure_id})")
            keep |= set(_hash_order(unique, seed, dataset, "focal")[:wanted])
        rows = rows[lens.isin(keep)]
        note("focal_conditions", rows)
    if "images" in select:
        _need(len(rows), int(select["images"]), "images")
        rows = rows.loc[sorted(_balanced_order(rows, seed, dataset)[: int(select["images"])])]
        note("images", rows)
    return rows, counts


def distributions(table: pd.DataFrame) -> dict:
    """Per reported column: min / quantiles / max and a histogram, or value counts."""
    result = {}
    for column in DISTRIBUTION_COLUMNS:
        if column not in table.columns or table[column].isna().all():
            continue
        values = table[column].dropna()
        if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            values = values.astype(float)
            counts, edges = np.histogram(values, bins=HISTOGRAM_BINS)
            result[column] = {
                "min": float(values.min()),
                "q25": float(values.quantile(0.25)),
                "median": float(values.median()),
                "q75": float(values.quantile(0.75)),
                "max": float(values.max()),
                "mean": float(values.mean()),
                "histogram": {"counts": counts.tolist(), "edges": edges.tolist()},
            }
        else:
            result[column] = {"counts": {str(k): int(v) for k, v in values.value_counts().items()}}
    return result


def selection_report(select: dict | None, counts: dict, selected: pd.DataFrame) -> dict:
    return {
        "select": select or {},
        "counts": counts,
        "split_images": selected["split"].value_counts().to_dict() if "split" in selected else {},
        "split_structures": (
            selected.groupby("split")["structure_id"].nunique().to_dict()
            if "split" in selected
            else {}
        ),
        "unique_focal_conditions": int(_lens_keys(selected).nunique()),
        "distributions": distributions(selected),
    }


__all__ = ["curate", "distributions", "scaled_select", "selection_report", "DISTRIBUTION_COLUMNS"]
