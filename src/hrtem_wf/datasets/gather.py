"""Gather image stores into one dataset: a Zarr of images and masks plus a Parquet table with
one row per image (every structure, simulation and imaging parameter, ids, seeds, split)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from hrtem_wf.io import atomic_path, read_arrays, write_arrays, write_json
from hrtem_wf.sampling import derive_seed

from .curate import curate, scaled_select, selection_report

SPLITS = ("train", "validation", "test")


def assign_splits(
    structure_ids: list[str], fractions: dict, seed: int, dataset: str
) -> dict[str, str]:
    """Split by structure (no structure in two splits), in proportions `fractions`.

    Structures are ordered by a hash of (seed, dataset, id), so the order does not depend on
    which other structures exist; then the first round(n f_train) go to train, and so on."""
    unique = sorted(set(structure_ids))
    order = sorted(unique, key=lambda sid: derive_seed(seed, dataset, 0, sid))
    n = len(order)
    n_train = int(round(n * fractions["train"]))
    n_val = int(round(n * fractions["validation"]))
    if n >= 3:  # every split gets at least one structure when there are enough
        n_train = min(max(n_train, 1), n - 2)
        n_val = min(max(n_val, 1), n - n_train - 1)
    split = {}
    for position, sid in enumerate(order):
        split[sid] = (
            "train"
            if position < n_train
            else ("validation" if position < n_train + n_val else "test")
        )
    return split


def _target_arrays(image_spec: dict) -> list[str]:
    """The per-image target arrays an images block's stores hold (hrtem_wf.images.targets)."""
    targets = image_spec.get("targets", {})
    return [
        name
        for name, key in (("column_maps", "columns"), ("exit_waves", "exit_wave"))
        if targets.get(key) is not None
    ]


def _renumbered(positions: np.ndarray, source_rows: np.ndarray) -> np.ndarray:
    """Column rows [image, y, x, class] of the kept images, numbered by dataset row."""
    new_row = np.full(int(source_rows.max(initial=-1)) + 1, -1)
    new_row[source_rows] = np.arange(len(source_rows))
    image = positions[:, 0].astype(int)
    known = image < len(new_row)
    kept = positions[known][new_row[image[known]] >= 0].copy()
    kept[:, 0] = new_row[kept[:, 0].astype(int)]
    return kept[np.argsort(kept[:, 0], kind="stable")].astype(np.float32)


def _flatten(prefix: str, values: dict) -> dict:
    flat = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(name + ".", value))
        elif isinstance(value, list):
            flat[name] = (
                str(value)
                if any(isinstance(v, (list, dict)) for v in value)
                else (",".join(map(str, value)))
            )
        else:
            flat[name] = value
    return flat


def build_dataset(
    block: dict,
    name: str,
    image_stores: list[str],
    seed: int,
    zarr_path: str,
    parquet_path: str,
    selection_path: str | None = None,
    scale: float = 1.0,
    provenance: dict | None = None,
) -> pd.DataFrame:
    """Gather the stores' images, keep those the block's `select` picks (all without one), split
    them by structure and write the Zarr, the Parquet table and the selection report (JSON).
    `provenance`: what the Zarr records of the code that made it (the datasets stage's,
    hrtem_wf.codeversion.provenance)."""
    images, masks, rows = [], [], []
    targets: dict[str, list] = {}
    positions, first_row = [], 0
    for store_path in image_stores:
        arrays, attrs = read_arrays(store_path, {"images": np.float32}, items_attr="records")
        images.append(arrays["images"])
        masks.append(read_arrays(store_path, {"masks": np.uint8}, "records")[0]["masks"])
        spec = attrs.get("config", {})  # the images block (stores of tests may lack it)
        for target in _target_arrays(spec):
            targets.setdefault(target, []).append(
                read_arrays(store_path, {target: np.float32}, "records")[0][target]
            )
        if spec.get("targets", {}).get("columns") is not None:
            table = read_arrays(store_path, {"column_positions": np.float32})[0]
            positions.append(table["column_positions"] + np.array([first_row, 0, 0, 0]))
        first_row += len(arrays["images"])
        upstream = {
            "structure_id": attrs["structure_id"],
            "image_block": attrs["block_name"],
            "image_seed": attrs["seed"],
            "simulation_block": attrs["simulation"]["block_name"],
            "simulation_seed": attrs["simulation"]["seed"],
            "structure_block": attrs["simulation"]["structure"]["block_name"],
            "structure_seed": attrs["simulation"]["structure"]["seed"],
            "image_store": store_path,
        }
        structure = _flatten("structure.", attrs["simulation"]["structure"]["info"])
        simulation = _flatten("simulation.", attrs["simulation"]["config"])
        for record in attrs["records"]:
            rows.append({**upstream, **structure, **simulation, **_flatten("image.", record)})
    shapes = {a.shape[1:] for a in images}
    if len(shapes) > 1:
        raise ValueError(f"dataset {name}: image stores have different image shapes {shapes}")

    select = scaled_select(block.get("select"), scale)
    table, counts = curate(pd.DataFrame(rows), select, seed, name)
    source_rows = table.index.to_numpy()
    table = table.reset_index(drop=True)
    splits = assign_splits(list(table["structure_id"]), block["split"], seed, name)
    table.insert(0, "row", np.arange(len(table)))
    table.insert(1, "split", table["structure_id"].map(splits))
    table.insert(2, "dataset", name)

    arrays = {
        "images": np.concatenate(images)[source_rows].astype(np.float32),
        "masks": np.concatenate(masks)[source_rows].astype(np.uint8),
    }
    for target, parts in targets.items():
        arrays[target] = np.concatenate(parts)[source_rows].astype(np.float32)
    if positions:
        arrays["column_positions"] = _renumbered(np.concatenate(positions), source_rows)
    write_arrays(
        zarr_path,
        arrays,
        {
            "dataset": name,
            "config": block,
            # the images blocks' targets and focal series (one for all, hrtem_wf.config)
            "targets": spec.get("targets", {}),
            "focal_series": spec.get("focal_series"),
            "n_images": len(table),
            "split_counts": table["split"].value_counts().to_dict(),
            "provenance": provenance,
        },
    )
    with atomic_path(parquet_path) as tmp:
        table.to_parquet(tmp, index=False)
    if selection_path is not None:
        write_json(selection_path, selection_report(select, counts, table))
    return table


__all__ = ["build_dataset", "assign_splits", "SPLITS"]
