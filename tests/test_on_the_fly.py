"""Training images drawn on the fly from stored exit waves (hrtem_wf.models.on_the_fly): the images
rule's own draw, reproducible per (model seed, epoch, structure, repeat), fresh every epoch,
from training structures only, with the dataset's fixed validation images."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import ENERGY_EV, SAMPLING_A, TINY_MODEL_BLOCK, disk, load_config, weak_phase_object
from hrtem_wf import cli
from hrtem_wf.config import ConfigError, check_references, validate_block
from hrtem_wf.datasets import build_dataset
from hrtem_wf.images import draw_images
from hrtem_wf.io import StoreError, read_arrays, write_arrays
from hrtem_wf.models import on_the_fly, train
from hrtem_wf.models.on_the_fly import (
    ExitWaveCache,
    OnTheFlyImages,
    collate_drawn,
    image_seed,
    single_draw,
    training_stores,
)

N_STRUCTURES = 8
SPLIT = {"train": 0.5, "validation": 0.25, "test": 0.25}

# Every effect that draws per image on: lens, focal spread, plasmons, blur, dose, a drawn pixel
# size, the MTF, the median filter, the crop.
IMAGES_BLOCK = validate_block(
    "images",
    {
        "simulations": "sims",
        "device": "cpu",
        "draws_per_structure": 3,
        "defocus_A": {"distribution": "uniform", "low": -100.0, "high": 300.0},
        "aberrations": {"preset": "none", "coefficients": {"C30": 1.0e6}},
        "focal_spread": {
            "method": "quasi_coherent",
            "sigma_A": 30.0,
            "samples": 1,
            "extent_sigmas": 3.0,
        },
        "frozen_phonons": "all",
        "plasmons": {
            "weight": {"distribution": "uniform", "low": 0.4, "high": 0.9},
            "background": 1.0,
        },
        "blur_A": {"distribution": "uniform", "low": 0.0, "high": 1.0},
        "dose_e_per_A2": {"distribution": "loguniform", "low": 100.0, "high": 1000.0},
        "detector": {
            "pixel_size_A": {"distribution": "uniform", "low": 0.2, "high": 0.24},
            "mtf": {"c1": 0.1, "c2": 0.5, "c3": 2.5},
            "blur_sigma_px": 0.0,
            "median_filter_px": 3,
        },
        "crop_px": [64, 64],
        "label": {
            "method": "phase",
            "threshold": 0.2618,
            "smoothing_sigma_px": 2.0,
            "smoothing_threshold": 0.1,
        },
    },
)
FLY_BLOCK = validate_block(
    "models",
    {
        **{k: v for k, v in TINY_MODEL_BLOCK.items() if k != "on_the_fly"},
        "epochs": 2,
        "on_the_fly": {"images": "img", "workers": 0},
    },
)


def _waves(index: int, shape=(128, 128), phonons=2):
    """A particle (a phase disc) at a position of its own on a weak-phase carbon film."""
    centre = (40 + 7 * index % 50, 44 + 11 * index % 40)
    particle = np.stack(
        [np.exp(1j * 0.4 * disk(shape, 16, (centre[0] + p, centre[1]))) for p in range(phonons)]
    ).astype(np.complex64)
    return particle * weak_phase_object(shape, phonons, seed=index), particle


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """Simulation stores as the simulate stage writes them, the images rule's stores of them and
    a dataset of those, split by structure: (root, dataset zarr, dataset parquet)."""
    root = tmp_path_factory.mktemp("fly")
    image_stores = []
    for index in range(N_STRUCTURES):
        full, particle = _waves(index)
        item = f"{index:05d}"
        simulation = root / "simulations" / "sims" / f"{item}.zarr"
        write_arrays(
            simulation,
            {"full": full, "particle": particle},
            {
                "sampling_A": list(SAMPLING_A),
                "energy_eV": ENERGY_EV,
                "frozen_phonons": len(full),
                "block_name": "sims",
                "seed": index,
                "config": {"frozen_phonons": len(full)},
                "structure_id": f"s/{item}",
                "structure": {"block_name": "s", "seed": index, "info": {"material": "Au"}},
            },
        )
        output = root / "images" / "img" / f"{item}.zarr"
        cli.main(
            [
                "images",
                "--spec",
                json.dumps(IMAGES_BLOCK),
                "--seed",
                "3",
                "--block",
                "img",
                "--index",
                str(index),
                "--simulation",
                str(simulation),
                "--output",
                str(output),
            ]
        )
        image_stores.append(str(output))
    zarr_path, parquet_path = root / "d.zarr", root / "d.parquet"
    build_dataset(
        {"images": ["img"], "split": SPLIT},
        "d",
        image_stores,
        1,
        str(zarr_path),
        str(parquet_path),
    )
    return root, str(zarr_path), str(parquet_path)


def _train_table(parquet: str) -> pd.DataFrame:
    table = pd.read_parquet(parquet)
    return table[table["split"] == "train"]


def _images(stores, seed=0, per_structure=2, **augment) -> OnTheFlyImages:
    root, _, parquet = stores
    cache = ExitWaveCache(
        training_stores(_train_table(parquet), root / "simulations" / "sims"), IMAGES_BLOCK, 1e9
    )
    return OnTheFlyImages(cache, IMAGES_BLOCK, per_structure, seed, **augment)


def test_a_drawn_image_is_what_the_images_rule_draws_with_that_seed(stores):
    images = _images(stores)
    images.cache.preload()
    for epoch, index in ((1, 0), (2, 3)):
        image, mask, record = images.draw(epoch, index)
        structure, repeat = divmod(index, 2)
        waves, attrs = read_arrays(
            images.cache.stores[structure][1], {"full": np.complex64, "particle": np.complex64}
        )
        seed = image_seed(0, epoch, record["structure_id"], repeat)
        expected, expected_masks, expected_records = draw_images(
            waves["full"],
            waves["particle"],
            SAMPLING_A,
            ENERGY_EV,
            single_draw(IMAGES_BLOCK),
            np.random.default_rng(seed),
            material="Au",
        )
        assert record["image_seed"] == seed and record["structure_id"] == attrs["structure_id"]
        np.testing.assert_array_equal(image, expected[0])
        np.testing.assert_array_equal(mask, expected_masks[0])
        assert {k: record[f"image.{k}"] for k in expected_records[0]} == expected_records[0]


def test_draws_are_reproducible_and_independent_of_loader_workers(stores):
    def batches(workers):
        images = _images(stores, augment_d4=True)
        images.cache.preload()
        images.set_epoch(3)
        loader = torch.utils.data.DataLoader(
            images,
            batch_size=3,
            shuffle=True,
            generator=torch.Generator().manual_seed(5),
            num_workers=workers,
            collate_fn=collate_drawn,
        )
        return list(loader)

    serial, parallel = batches(0), batches(2)
    assert len(serial) == len(parallel) == 3  # 4 train structures x 2 images, batches of 3
    for (a_images, a_masks, a_records), (b_images, b_masks, b_records) in zip(serial, parallel):
        assert torch.equal(a_images, b_images) and torch.equal(a_masks, b_masks)
        assert a_records == b_records


def test_every_epoch_is_a_fresh_draw_of_the_same_structures(stores):
    images = _images(stores)
    first = [images.draw(1, i) for i in range(len(images))]
    second = [images.draw(2, i) for i in range(len(images))]
    again = [images.draw(1, i) for i in range(len(images))]
    for (a, _, ra), (b, _, rb), (c, _, rc) in zip(first, second, again):
        assert ra["structure_id"] == rb["structure_id"]
        assert not np.array_equal(a, b)
        assert ra["image.defocus_A"] != rb["image.defocus_A"]
        np.testing.assert_array_equal(a, c)
        assert ra == rc
    # image r of a structure does not depend on which other structures train
    alone = _images(stores)
    alone.cache.stores = alone.cache.stores[2:3]
    np.testing.assert_array_equal(alone.draw(1, 1)[0], first[2 * 2 + 1][0])


def test_a_store_of_another_structure_is_refused(stores):
    images = _images(stores)
    structure_id, store = images.cache.stores[0]
    images.cache.stores[0] = (structure_id, images.cache.stores[1][1])
    with pytest.raises(StoreError, match="holds structure"):
        images.draw(1, 0)


def test_spectra_are_kept_in_memory_up_to_the_budget(stores):
    images = _images(stores)
    one = images.cache.waves(0).nbytes
    images.cache.budget_bytes = 2.5 * one
    assert images.cache.preload() == 2
    kept = images.cache.kept[0].full_spectrum
    assert images.cache.waves(0).full_spectrum is kept  # not read again
    assert images.cache.waves(3).full_spectrum is not images.cache.waves(3).full_spectrum


def _train(stores, out_dir, block=FLY_BLOCK, seed=0):
    root, zarr_path, parquet = stores
    return train.train_model(
        block,
        zarr_path,
        parquet,
        seed,
        str(out_dir),
        log=lambda line: None,
        image_spec=IMAGES_BLOCK,
        simulations_dir=str(root / "simulations" / "sims"),
    )


@pytest.fixture(scope="module")
def trained(stores, tmp_path_factory):
    """A model trained on the fly, twice with one seed, with the validation images each epoch
    evaluated on (their digest) recorded."""
    seen = []
    evaluate = train.evaluate_loss

    def recording(model, loader, device, loss_weights, task, split=None):
        digest = hashlib.sha256()
        for images, masks in loader:
            digest.update(images.numpy().tobytes() + masks.numpy().tobytes())
        seen.append(digest.hexdigest())
        return evaluate(model, loader, device, loss_weights, task, split)

    root = tmp_path_factory.mktemp("trained")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(train, "evaluate_loss", recording)
        runs = [_train(stores, root / f"run{k}") for k in (0, 1)]
    return root, runs, seen


def test_training_on_the_fly_is_reproducible(trained):
    root, (first, second), _ = trained
    a, b = (torch.load(root / f"run{k}" / "weights.pt") for k in (0, 1))
    assert all(torch.equal(a[key], b[key]) for key in a)
    history = [pd.read_csv(root / f"run{k}" / "history.csv") for k in (0, 1)]
    pd.testing.assert_frame_equal(
        history[0].drop(columns="seconds"), history[1].drop(columns="seconds")
    )
    pd.testing.assert_frame_equal(
        pd.read_parquet(root / "run0" / "drawn.parquet"),
        pd.read_parquet(root / "run1" / "drawn.parquet"),
    )


def test_validation_images_are_the_same_every_epoch_and_run(trained, stores):
    _, runs, seen = trained
    assert len(seen) == 2 * FLY_BLOCK["epochs"] and len(set(seen)) == 1
    validation = pd.read_parquet(stores[2]).query("split == 'validation'")
    assert runs[0]["n_val"] == len(validation)


def test_drawn_images_come_from_training_structures_only(trained, stores):
    root, (metadata, _), _ = trained
    drawn = pd.read_parquet(root / "run0" / "drawn.parquet")
    table = pd.read_parquet(stores[2])
    train_ids = set(table.loc[table["split"] == "train", "structure_id"])
    held_out = set(table.loc[table["split"] != "train", "structure_id"])
    assert set(drawn["structure_id"]) == train_ids and not train_ids & held_out
    per_epoch = len(train_ids) * IMAGES_BLOCK["draws_per_structure"]
    assert drawn.groupby("epoch").size().to_dict() == {1: per_epoch, 2: per_epoch}
    assert drawn["image_seed"].is_unique  # every image of every epoch its own draw
    assert metadata["n_train"] == per_epoch


def test_metadata_records_what_was_drawn(trained):
    _, (metadata, _), _ = trained
    fly = metadata["on_the_fly"]
    assert fly["images"] == "img" and fly["image_spec"] == IMAGES_BLOCK
    assert (
        fly["images_per_epoch"] == metadata["n_train"]
        and fly["drawn_images"] == 2 * fly["images_per_epoch"]
    )
    dose = fly["distributions"]["image.dose_e_per_A2"]
    assert 100.0 <= dose["min"] < dose["max"] <= 1000.0
    assert len(fly["sample"]) == 8 and "image.defocus_A" in fly["sample"][0]
    low, high = metadata["pixel_size_A"]
    assert 0.2 <= low < high <= 0.24
    assert metadata["nominal_pixel_size_A"] == pytest.approx(0.22)


def test_on_the_fly_without_its_images_spec_is_a_clear_error(stores, tmp_path):
    _, zarr_path, parquet = stores
    with pytest.raises(ValueError, match="images block's spec"):
        train.train_model(FLY_BLOCK, zarr_path, parquet, 0, str(tmp_path / "m"))


def _config_with_fly(**changes):
    config = load_config("tests/configs/tiny.yaml")
    config["images"]["tiny_fly"] = copy.deepcopy(config["images"]["tiny_hrtem"])
    config["models"]["tiny_unet"]["on_the_fly"] = {
        "images": "tiny_fly",
        "images_per_structure": None,
        "workers": 1,
        "memory_GB": 4.0,
    }
    for (section, name, key), value in changes.items():
        config[section][name][key] = value
    return config


def test_config_checks_name_what_is_wrong_with_an_on_the_fly_block():
    check_references(_config_with_fly())  # a valid one
    config = _config_with_fly()
    config["models"]["tiny_unet"]["on_the_fly"]["images"] = "nope"
    with pytest.raises(ConfigError, match=r"on_the_fly.images: 'nope' is not a block"):
        check_references(config)
    config = _config_with_fly()
    config["simulations"]["other_fp"] = config["simulations"]["tiny_fp"]
    config["images"]["tiny_fly"]["simulations"] = "other_fp"
    with pytest.raises(ConfigError, match="were simulated in"):
        check_references(config)
    config = _config_with_fly()
    config["images"]["tiny_fly"]["crop_px"] = [32, 32]
    with pytest.raises(ConfigError, match="must be the crop of the dataset's images"):
        check_references(config)
    config = _config_with_fly()
    config["images"]["tiny_fly"]["defocus_A"] = {"distribution": "sequence", "values": [0, 50]}
    with pytest.raises(ConfigError, match="is a `sequence`"):
        check_references(config)
    config = _config_with_fly()
    config["images"]["tiny_fly"]["focal_series"] = {"offsets_A": [-50.0, 0.0, 50.0]}
    with pytest.raises(ConfigError, match=r"tiny_fly.focal_series .* must be that of the dataset"):
        check_references(config)
    # a columns model draws the targets its dataset holds, at the same width
    config = _config_with_fly()
    columns = {"sigma_A": 0.5, "classes": {"kind": "element", "names": ["Au"]}}
    config["images"]["tiny_hrtem"]["targets"] = {"columns": columns}
    config["images"]["tiny_fly"]["targets"] = {"columns": {**columns, "sigma_A": 1.0}}
    config["models"]["tiny_unet"]["task"] = "columns"
    with pytest.raises(ConfigError, match=r"tiny_fly.targets.columns must be that of the dat"):
        check_references(config)
    config["images"]["tiny_fly"]["targets"] = {"columns": columns}
    check_references(config)


def test_statistics_set_is_a_fixed_capped_draw(stores, monkeypatch):
    images = _images(stores)
    monkeypatch.setattr(on_the_fly, "STATISTICS_IMAGES", 5)
    first = on_the_fly.statistics_images(images, workers=0)
    images.set_epoch(4)  # the training epoch does not move it
    second = on_the_fly.statistics_images(images, workers=0)
    assert len(first) == 5
    assert torch.equal(first.tensors[0], second.tensors[0])
    epoch0 = [images.draw(0, i)[0] for i in (0, len(images) - 1)]
    for drawn, held in zip(epoch0, (first.tensors[0][0, 0], first.tensors[0][-1, 0])):
        np.testing.assert_allclose(held.numpy(), on_the_fly.normalize_min_max(drawn))


def test_paths_follow_the_item_names(stores):
    root, _, parquet = stores
    pairs = training_stores(_train_table(parquet), Path("x"))
    assert all(store == Path("x") / f"{sid.split('/')[1]}.zarr" for sid, store in pairs)


def test_report_shows_what_an_on_the_fly_model_drew(trained, tmp_path):
    from hrtem_wf.evaluations.report import (
        _distribution_tables,
        _plot_distributions,
        _training_data,
    )

    root, (metadata, _), _ = trained
    model_dir = tmp_path / "unet_fly" / "seed0"
    model_dir.mkdir(parents=True)
    (model_dir / "drawn.parquet").write_bytes((root / "run0" / "drawn.parquet").read_bytes())
    frozen_dir = tmp_path / "unet" / "seed0"
    frozen_dir.mkdir(parents=True)
    tables = _distribution_tables(["results/datasets/d.parquet"], [str(frozen_dir), str(model_dir)])
    assert tables == {
        "d": "results/datasets/d.parquet",
        "unet_fly (drawn on the fly)": str(model_dir / "drawn.parquet"),
    }
    _plot_distributions(
        {"unet_fly (drawn on the fly)": str(model_dir / "drawn.parquet")},
        tmp_path / "distributions.png",
    )
    assert (tmp_path / "distributions.png").stat().st_size > 10_000
    assert _training_data("d", None) == "d"
    assert _training_data("d", metadata["on_the_fly"]) == (
        f"d (train: drawn on the fly by images.img, {metadata['n_train']} per epoch)"
    )
