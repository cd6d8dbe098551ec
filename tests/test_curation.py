"""Curation (a dataset block's `select`): exact counts and distributions, reproducible per seed,
split by structure, and the selection report written beside the dataset."""

from __future__ import annotations

import copy
import json

import numpy as np
import pandas as pd
import pytest
import zarr

from conftest import SCHEMA, load_config
from hrtem_wf.config import ConfigError, validate
from hrtem_wf.datasets import build_dataset, curate, scaled_select
from hrtem_wf.io import write_arrays

N_STRUCTURES, FOCAL_POINTS, REPEATS = 12, 3, 2  # 6 images per structure
SPLIT = {"train": 0.5, "validation": 0.25, "test": 0.25}


def _write_stores(directory) -> list[str]:
    """One image store per structure with known metadata; pixel values encode (structure, image)."""
    stores = []
    for s in range(N_STRUCTURES):
        material = "Au" if s % 3 else "CdSe"
        records, images = [], []
        for index in range(FOCAL_POINTS * REPEATS):
            focal_point, repeat = divmod(index, REPEATS)
            records.append(
                {
                    "image_index": index,
                    "focal_point": focal_point,
                    "material": material,
                    "defocus_A": -100.0 + 100.0 * focal_point + s,
                    "dose_e_per_A2": [100.0, 600.0][repeat],
                    "focal_spread_sigma_A": 15.0,
                }
            )
            images.append(np.full((8, 8), 100 * s + index, dtype=np.float32))
        info = {
            "material": material,
            "radius_A": 10.0 + s,
            "substrate_thickness_A": 20.0 + 5 * s,
            "n_defects": s % 3,
        }
        attrs = {
            "structure_id": f"blk/{s:05d}",
            "block_name": "img",
            "seed": s,
            "simulation": {
                "block_name": "sim",
                "seed": s,
                "config": {"frozen_phonons": 1},
                "structure": {"block_name": "blk", "seed": s, "info": info},
            },
            "records": records,
        }
        path = directory / f"{s:05d}.zarr"
        write_arrays(
            str(path),
            {"images": np.stack(images), "masks": np.zeros((len(images), 8, 8), np.uint8)},
            attrs,
        )
        stores.append(str(path))
    return stores


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    return _write_stores(tmp_path_factory.mktemp("stores"))


@pytest.fixture(scope="module")
def table(stores, tmp_path_factory):
    out = tmp_path_factory.mktemp("all")
    return build_dataset(
        {"images": ["img"], "split": SPLIT},
        "all",
        stores,
        1,
        str(out / "d.zarr"),
        str(out / "d.parquet"),
    )


def test_where_keeps_exactly_the_matching_images(table):
    select = {
        "where": {
            "image.dose_e_per_A2": {"min": 500},
            "structure.material": ["Au"],
            "structure.radius_A": {"min": 12.0, "max": 19.0},
        }
    }
    rows, counts = curate(table, select, seed=1, dataset="d")
    expected = table[
        (table["image.dose_e_per_A2"] >= 500)
        & (table["structure.material"] == "Au")
        & table["structure.radius_A"].between(12.0, 19.0)
    ]
    assert list(rows.index) == list(expected.index) and len(rows) > 0
    assert counts["available"] == {"images": 72, "structures": 12}
    assert counts["where"] == {
        "images": len(expected),
        "structures": expected["structure_id"].nunique(),
    }


def test_counts_are_exact_and_reproducible(table):
    select = {"structures": 5, "focal_conditions": 2, "images": 9}
    rows, counts = curate(table, select, seed=1, dataset="d")
    assert rows["structure_id"].nunique() == 5 == counts["structures"]["structures"]
    assert counts["focal_conditions"]["images"] == 5 * 2 * REPEATS
    assert len(rows) == 9 == counts["images"]["images"]
    assert rows.groupby("structure_id").size().sort_values().tolist() == [
        1,
        2,
        2,
        2,
        2,
    ]  # spread evenly
    again, _ = curate(table, select, seed=1, dataset="d")
    assert list(again.index) == list(rows.index)
    other, _ = curate(table, select, seed=2, dataset="d")
    assert list(other.index) != list(rows.index)


def test_focal_conditions_per_structure(table):
    rows, _ = curate(table, {"structures": 4, "focal_conditions": 2}, seed=3, dataset="d")
    per_structure = rows.groupby("structure_id")["image.focal_point"].nunique()
    assert (per_structure == 2).all() and len(per_structure) == 4
    assert (rows.groupby("structure_id").size() == 2 * REPEATS).all()  # every repeat of a lens


def test_a_larger_request_keeps_the_smaller_picks(table):
    small, _ = curate(table, {"structures": 3}, seed=1, dataset="d")
    large, _ = curate(table, {"structures": 7}, seed=1, dataset="d")
    assert set(small["structure_id"]) < set(large["structure_id"])


def test_asking_for_more_than_there_is_is_a_clear_error(table):
    with pytest.raises(ValueError, match=r"select.structures: asks for 5, but only 4"):
        curate(table, {"where": {"structure.material": ["CdSe"]}, "structures": 5}, 1, "d")
    with pytest.raises(ValueError, match=r"no column 'image.dose'.*image.dose_e_per_A2"):
        curate(table, {"where": {"image.dose": {"min": 1}}}, 1, "d")
    with pytest.raises(ValueError, match="range needs a numeric column"):
        curate(table, {"where": {"structure.material": {"min": 1}}}, 1, "d")


def test_dataset_holds_the_selected_images_split_by_structure(stores, tmp_path):
    block = {
        "images": ["img"],
        "split": SPLIT,
        "select": {"where": {"image.dose_e_per_A2": [600.0]}, "structures": 8, "images": 16},
    }
    paths = [str(tmp_path / name) for name in ("d.zarr", "d.parquet", "d.selection.json")]
    table = build_dataset(block, "curated", stores, 1, *paths)
    assert len(table) == 16 and table["structure_id"].nunique() <= 8
    assert (table["image.dose_e_per_A2"] == 600.0).all()
    assert table.groupby("structure_id")["split"].nunique().max() == 1  # no structure in two splits
    images = zarr.open_group(paths[0], mode="r")["images"][...]
    assert images.shape == (16, 8, 8)
    structure = table["structure_id"].str.split("/").str[1].astype(int)
    np.testing.assert_array_equal(images[:, 0, 0], 100 * structure + table["image.image_index"])
    report = json.loads(open(paths[2]).read())
    assert report["select"] == block["select"]
    assert report["counts"]["images"]["images"] == 16
    assert sum(report["split_images"].values()) == 16
    dose = report["distributions"]["image.dose_e_per_A2"]
    assert dose["min"] == dose["max"] == 600.0
    radius = report["distributions"]["structure.radius_A"]
    assert sum(radius["histogram"]["counts"]) == 16
    assert radius["min"] == table["structure.radius_A"].min()
    assert (
        report["distributions"]["image.material"]["counts"]
        == table["image.material"].value_counts().to_dict()
    )
    pd.testing.assert_frame_equal(pd.read_parquet(paths[1]), table, check_dtype=False)


def test_scale_shrinks_select_counts():
    assert scaled_select({"structures": 400, "images": 1000, "focal_conditions": 2}, 0.01) == {
        "structures": 4,
        "images": 10,
        "focal_conditions": 2,
    }
    assert scaled_select({"structures": 10}, 0.01) == {"structures": 1}
    assert scaled_select(None) == {}


def test_schema_checks_select():
    config = load_config("config/config.yaml")
    bad = copy.deepcopy(config)
    bad["datasets"]["au_small_demo"]["select"] = {"where": {"image.dose_e_per_A2": {"low": 1}}}
    with pytest.raises(ConfigError, match="datasets.au_small_demo.select"):
        validate(bad, SCHEMA)
    good = copy.deepcopy(config)
    good["datasets"]["au_small_demo"]["select"] = {
        "where": {"image.dose_e_per_A2": {"min": 1}, "image.material": ["Au"]},
        "structures": 3,
        "images": 10,
    }
    validate(good, SCHEMA)
