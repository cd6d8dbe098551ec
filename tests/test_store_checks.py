"""Stores checked on read: a deleted chunk, a truncated chunk or a NaN in an exit-wave store, an
image store or a dataset stops the job that reads it, with a message naming the file; the job
writes nothing. An undamaged store reads back exactly what was written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import zarr

from conftest import BLOCK, ENERGY_EV, SAMPLING_A, TINY_MODEL_BLOCK, demo_waves
from hrtem_wf import cli
from hrtem_wf.datasets import build_dataset
from hrtem_wf.io import StoreError, open_arrays, read_arrays, write_arrays
from hrtem_wf.models import data, read_split, train_model
from test_curation import SPLIT, _write_stores

DAMAGES = {  # what each damage's message says
    "deleted": "chunks are missing",
    "truncated": "cannot be decoded",
    "nan": "NaN or infinite",
}


def damage(store: Path, array: str, item: int, how: str) -> None:
    """Damage item `item` of `array` (one chunk per item, as write_arrays stores stacks)."""
    chunk = Path(store) / array / "c" / str(item) / "0" / "0"
    assert chunk.is_file()
    if how == "deleted":
        chunk.unlink()
    elif how == "truncated":
        chunk.write_bytes(chunk.read_bytes()[: chunk.stat().st_size // 2])
    else:
        zarr.open_array(Path(store) / array, mode="r+")[item, 3, 3] = np.nan


def simulation_store(path: Path) -> Path:
    """A small exit-wave store as the simulate stage writes it (3 frozen phonons)."""
    full, particle = demo_waves()
    attrs = {
        "sampling_A": SAMPLING_A,
        "energy_eV": ENERGY_EV,
        "frozen_phonons": len(full),
        "block_name": "sim",
        "seed": 5,
        "config": {"frozen_phonons": len(full)},
        "structure_id": "s/00000",
        "structure": {"block_name": "s", "seed": 4, "info": {"material": "Au"}},
    }
    write_arrays(path, {"full": full, "particle": particle}, attrs)
    return path


def images_job(simulation: Path, output: Path) -> int:
    return cli.main(
        [
            "images",
            "--spec",
            json.dumps(BLOCK),
            "--seed",
            "1",
            "--block",
            "img",
            "--index",
            "0",
            "--simulation",
            str(simulation),
            "--output",
            str(output),
        ]
    )


def test_images_job_reads_an_undamaged_exit_wave_store(tmp_path):
    output = tmp_path / "images.zarr"
    images_job(simulation_store(tmp_path / "sim.zarr"), output)
    arrays, attrs = read_arrays(
        output, {"images": np.float32, "masks": np.uint8}, items_attr="records"
    )
    assert arrays["images"].shape == (BLOCK["draws_per_structure"], 96, 96)


@pytest.mark.parametrize("how", DAMAGES)
def test_damaged_image_store_stops_the_dataset(tmp_path, how):
    stores = _write_stores(tmp_path)
    damage(Path(stores[3]), "images", 2, how)
    outputs = [tmp_path / name for name in ("d.zarr", "d.parquet", "d.selection.json")]
    with pytest.raises(StoreError, match=DAMAGES[how]) as caught:
        build_dataset({"images": ["img"], "split": SPLIT}, "d", stores, 1, *map(str, outputs))
    assert f"{stores[3]}: array 'images'" in str(caught.value)
    assert not any(path.exists() for path in outputs)


@pytest.fixture
def curated_dataset(tmp_path):
    """A dataset as the datasets stage writes it (from small image stores), and one train row."""
    stores = _write_stores(tmp_path / "stores")
    zarr_path, parquet_path = tmp_path / "d.zarr", tmp_path / "d.parquet"
    table = build_dataset(
        {"images": ["img"], "split": SPLIT}, "d", stores, 1, str(zarr_path), str(parquet_path)
    )
    return zarr_path, parquet_path, int(table.loc[table["split"] == "train", "row"].iloc[1])


@pytest.mark.parametrize("how", DAMAGES)
def test_damaged_dataset_stops_training(curated_dataset, tmp_path, how):
    zarr_path, parquet_path, train_row = curated_dataset
    damage(zarr_path, "images", train_row, how)
    out_dir = tmp_path / "model" / "seed0"
    with pytest.raises(StoreError, match=DAMAGES[how]) as caught:
        train_model(
            TINY_MODEL_BLOCK, str(zarr_path), str(parquet_path), seed=0, out_dir=str(out_dir)
        )
    assert f"{zarr_path}: array 'images'" in str(caught.value)
    assert not (tmp_path / "model").exists()


def test_a_split_read_item_by_item_is_checked_too(curated_dataset, monkeypatch):
    zarr_path, parquet_path, train_row = curated_dataset
    damage(zarr_path, "images", train_row, "nan")
    monkeypatch.setattr(data, "IN_MEMORY_LIMIT_BYTES", 0)  # the path of splits larger than memory
    split = read_split(zarr_path, parquet_path, "train")
    with pytest.raises(StoreError, match=f"item {train_row} holds NaN"):
        split.images[train_row]


def test_an_undamaged_store_reads_back_what_was_written(tmp_path):
    full, _ = demo_waves(shape=(16, 12))
    masks = np.zeros((3, 16, 12), np.uint8)
    masks[1, 4:9, 2:5] = 1  # items 0 and 2 all zero: their chunks must be stored all the same
    attrs = {"records": [{"image_index": i} for i in range(3)], "energy_eV": ENERGY_EV}
    write_arrays(tmp_path / "s.zarr", {"full": full, "masks": masks}, attrs)
    arrays, read_attrs = read_arrays(
        tmp_path / "s.zarr", {"full": np.complex64, "masks": np.uint8}, items_attr="records"
    )
    assert read_attrs == attrs
    for name, written in (("full", full), ("masks", masks)):
        assert arrays[name].dtype == written.dtype and arrays[name].tobytes() == written.tobytes()
        plain = zarr.open_group(tmp_path / "s.zarr", mode="r")[name]
        assert plain.nchunks_initialized == plain.nchunks == 3
    stacks, _ = open_arrays(tmp_path / "s.zarr", {"full": np.complex64})
    assert stacks["full"][2].tobytes() == full[2].tobytes()


def test_dtype_shape_and_recorded_count_are_checked(tmp_path):
    store = tmp_path / "s.zarr"
    write_arrays(
        store,
        {"images": np.ones((2, 4, 4), np.float64), "masks": np.ones((3, 4, 4), np.uint8)},
        {"records": [{}, {}]},
    )
    with pytest.raises(StoreError, match="'images': dtype float64, expected float32"):
        read_arrays(store, {"images": np.float32})
    with pytest.raises(StoreError, match="arrays differ in shape"):
        read_arrays(store, {"images": np.float64, "masks": np.uint8})
    with pytest.raises(StoreError, match="'records' records 2 items, the arrays hold 3"):
        read_arrays(store, {"masks": np.uint8}, items_attr="records")
    with pytest.raises(StoreError, match=f"{tmp_path / 'none.zarr'}: not a readable Zarr store"):
        read_arrays(tmp_path / "none.zarr", {"images": np.float32})
