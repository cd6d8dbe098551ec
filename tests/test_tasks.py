"""The tasks beyond particle masks, through the workflow: Madsen-style Au particles on a zone
axis imaged as a focal series with column and exit-wave targets, a column network (UNet) and an
exit-wave network (MSD-net) trained and evaluated, and the report's tables for them.

The run reuses the tiny config's finished run (its segmentation model is not retrained) and
adds the blocks of TASK_BLOCKS."""

from __future__ import annotations

import json

import ase.io
import numpy as np
import pandas as pd
import pytest
import scipy.ndimage

from hrtem_wf.io import read_arrays

pytestmark = pytest.mark.workflow

OFFSETS_A = [-40.0, 0.0, 40.0]
CELL_PX = 160  # the 32 A cell at 0.2 A
SIGMA_A = 0.3

TASK_BLOCKS = {
    "structures": {
        "tiny_layered": {
            "count": 3,
            "material": "Au",
            "lattice_constant_A": 4.07825,
            "shape": "layered",
            "layered": {"layers": {"distribution": "uniform", "low": 2.0, "high": 3.0}},
            "zone_axis": {"axes": ["110"], "tilt_max_deg": 0.0},
            "planar_defects": {"max_count": 0, "kinds": ["twin"], "min_separation_planes": 2},
            "cell_A": [32.0, 32.0],
            "edge_margin_A": 5.0,
            "embedding_fraction": 0.1,
            "substrate": {
                "material": "amorphous_carbon",
                "thickness_A": 8.0,
                "density_per_A3": 0.1103,
                "min_distance_A": 1.4,
            },
            "vacuum_A": 2.0,
        }
    },
    "simulations": {"tiny_layered_fp": {"structures": "tiny_layered"}},
    "images": {
        "tiny_tasks": {
            "simulations": "tiny_layered_fp",
            "crop_px": None,  # the whole 32 A cell: the particle and every column in each image
            "focal_series": {"offsets_A": OFFSETS_A},
            "targets": {
                "columns": {"sigma_A": SIGMA_A, "classes": {"kind": "element", "names": ["Au"]}},
                "exit_wave": {"low_pass_sigma_A": 0.15},
            },
        }
    },
    "datasets": {"tiny_tasks_set": {"images": ["tiny_tasks"]}},
    "models": {
        "tiny_columns": {"dataset": "tiny_tasks_set", "task": "columns", "epochs": 2},
        "tiny_waves": {
            "dataset": "tiny_tasks_set",
            "task": "exit_wave",
            "architecture": "MSDNet",
            "options": {"depth": 6, "width": 2},
            "epochs": 2,
        },
        # the same tasks trained on images (and targets) drawn afresh each epoch
        "tiny_columns_fly": {
            "dataset": "tiny_tasks_set",
            "task": "columns",
            "epochs": 2,
            "checkpoint": "best_val_f1",
            "on_the_fly": {"images": "tiny_tasks", "images_per_structure": 2, "workers": 0},
        },
        "tiny_waves_fly": {
            "dataset": "tiny_tasks_set",
            "task": "exit_wave",
            "architecture": "MSDNet",
            "options": {"depth": 6, "width": 2},
            "epochs": 1,
            "on_the_fly": {"images": "tiny_tasks", "images_per_structure": 2, "workers": 0},
        },
    },
}


@pytest.fixture(scope="module")
def tasks_run(tiny_run, tmp_path_factory):
    flow = tiny_run.clone(tmp_path_factory.mktemp("tasks") / "run")
    config = flow.config
    for section, blocks in TASK_BLOCKS.items():
        for name, changes in blocks.items():
            base = {
                "simulations": config["simulations"]["tiny_fp"],
                "images": config["images"]["tiny_hrtem"],
                "datasets": config["datasets"]["tiny_set"],
                "models": config["models"]["tiny_unet"],
            }.get(section, {})
            block = {**base, **changes}
            if section == "models":
                block.pop("decoder_channels", None) if "architecture" in changes else None
            config[section][name] = block
    flow.write_config(config)
    flow.snakemake()
    return flow


def _store(flow, name="tiny_tasks", item="00000"):
    path = flow.path / "results" / "images" / name / f"{item}.zarr"
    arrays, attrs = read_arrays(path, {"images": np.float32}, "records")
    for group in ({"masks": np.uint8}, {"column_maps": np.float32}, {"exit_waves": np.float32}):
        arrays |= read_arrays(path, group, "records")[0]
    arrays |= read_arrays(path, {"column_positions": np.float32})[0]
    return arrays, attrs


def test_a_focal_series_store_holds_its_channels_and_targets(tasks_run):
    arrays, attrs = _store(tasks_run)
    k, crop = 2, (CELL_PX, CELL_PX)
    assert arrays["images"].shape == (k, len(OFFSETS_A), *crop)
    assert arrays["masks"].shape == (k, *crop)
    assert arrays["column_maps"].shape == (k, 2, *crop)  # Au + background
    assert arrays["exit_waves"].shape == (k, 2, *crop)
    assert [r["focal_series_offsets_A"] for r in attrs["records"]] == [OFFSETS_A] * k
    # the dataset carries them, the columns renumbered by dataset row
    dataset = tasks_run.path / "results" / "datasets" / "tiny_tasks_set.zarr"
    images = read_arrays(dataset, {"images": np.float32})[0]["images"]
    positions = read_arrays(dataset, {"column_positions": np.float32})[0]["column_positions"]
    assert images.shape == (3 * k, len(OFFSETS_A), *crop)
    table = pd.read_parquet(dataset.with_suffix(".parquet"))
    # the dataset's own name, not a target array's, names its rows (and seeds its split)
    assert set(table["dataset"]) == {"tiny_tasks_set"}
    for row, store, image in table[["row", "image_store", "image.image_index"]].itertuples(False):
        store_positions = read_arrays(tasks_run.path / store, {"column_positions": np.float32})[0]
        expected = store_positions["column_positions"]
        expected = expected[expected[:, 0] == image][:, 1:]
        np.testing.assert_array_equal(positions[positions[:, 0] == row][:, 1:], expected)
    assert len(positions) > 10


def test_column_maps_peak_at_the_structures_projected_columns(tasks_run):
    """The positions table holds the particle's projected columns (computed here from the
    structure's atoms) on each image's detector grid; the maps peak there, within 0.1 A."""
    from hrtem_wf.images.columns import pixel_coordinates, projected_columns

    arrays, attrs = _store(tasks_run)
    atoms = ase.io.read(
        tasks_run.path / "results" / "structures" / "tiny_layered" / "00000.extxyz",
        format="extxyz",
    )
    particle = atoms[atoms.arrays["particle"] == 1]
    assert len(particle) > 20
    sampling = attrs["simulation"]["config"]["exit_wave_sampling_A"]
    extent_A = np.diag(atoms.cell.array)[[1, 0]]
    for index, record in enumerate(attrs["records"]):
        shape = (record["detector_height_px"], record["detector_width_px"])
        origin = (record["crop_y0_px"], record["crop_x0_px"])
        pixel_A = extent_A[0] / shape[0]
        yx = pixel_coordinates(projected_columns(atoms).yx_A, sampling, extent_A, shape, origin)
        inside = yx[np.all((yx >= -0.5) & (yx < CELL_PX - 0.5), axis=1)]
        table = arrays["column_positions"][arrays["column_positions"][:, 0] == index]
        assert len(table) == len(inside) > 10
        np.testing.assert_allclose(
            np.sort(table[:, 1:3], axis=0), np.sort(inside, axis=0), atol=1e-4
        )
        channel = arrays["column_maps"][index, 0]
        np.testing.assert_allclose(arrays["column_maps"][index, 1], 1 - channel, atol=1e-6)
        for y, x in inside[np.all((inside > 3) & (inside < CELL_PX - 4), axis=1)]:
            iy, ix = int(round(y)), int(round(x))
            window = channel[iy - 2 : iy + 3, ix - 2 : ix + 3]
            cy, cx = scipy.ndimage.center_of_mass(window**8)
            assert window.max() > 0.9
            assert np.hypot(iy - 2 + cy - y, ix - 2 + cx - x) * pixel_A < 0.1


def test_the_exit_wave_target_is_the_stored_wave_low_passed_and_resampled(tasks_run):
    """(tests/imaging/test_columns.py checks the low pass against scipy's Gaussian filter.)"""
    from hrtem_wf.images.formation import resample_to_pixel_size
    from hrtem_wf.images.targets import low_pass

    arrays, attrs = _store(tasks_run)
    simulation = tasks_run.path / "results" / "simulations" / "tiny_layered_fp" / "00000.zarr"
    waves, sim_attrs = read_arrays(simulation, {"full": np.complex64})
    sampling = tuple(sim_attrs["sampling_A"])
    mean = waves["full"].astype(np.complex128).mean(axis=0)
    for record, target in zip(attrs["records"], arrays["exit_waves"]):
        y0, x0 = record["crop_y0_px"], record["crop_x0_px"]
        smooth = low_pass(mean, sampling, 0.15)
        for part, values in zip(target, (smooth.real, smooth.imag)):
            expected = resample_to_pixel_size(values, sampling, record["pixel_size_A"])
            np.testing.assert_allclose(
                part, expected[y0 : y0 + CELL_PX, x0 : x0 + CELL_PX], atol=1e-6
            )
    assert np.abs(arrays["exit_waves"][:, 1]).max() > 0.05  # the particle shifts the phase


def test_column_and_exit_wave_networks_train_on_the_focal_series(tasks_run):
    from hrtem_wf.models.model import TrainedModel
    from hrtem_wf.models.msdnet import MSDNet

    for name, task in (("tiny_columns", "columns"), ("tiny_waves", "exit_wave")):
        trained = TrainedModel.read(tasks_run.path / "results" / "models" / name / "seed0")
        assert trained.task == task and trained.channels == (3, 2)
        assert trained.metadata["focal_series"] == {"offsets_A": OFFSETS_A}
        history = pd.read_csv(trained.history_path)
        assert np.isfinite(history["val_loss"]).all()
        if task == "columns":  # the validation split's column-detection F1, each epoch
            assert history["val_f1"].between(0.0, 1.0).all()
        else:
            assert history["val_f1"].isna().all()
    waves = TrainedModel.read(tasks_run.path / "results" / "models" / "tiny_waves" / "seed0")
    assert isinstance(waves.load_network(), MSDNet)


def test_evaluations_and_report_of_the_other_tasks(tasks_run):
    results = tasks_run.path / "results"
    columns = json.loads((results / "evaluations" / "tiny_columns" / "seed0.json").read_text())
    waves = json.loads((results / "evaluations" / "tiny_waves" / "seed0.json").read_text())
    assert columns["task"] == "columns" and columns["class_names"] == ["Au"]
    assert 0.0 <= columns["f1"] <= 1.0 and columns["n_true"] > 10
    assert waves["task"] == "exit_wave" and waves["rmse"] > 0 and waves["y_scramble_rmse"] > 0
    summary = (results / "report" / "summary.md").read_text()
    assert "## Atomic columns (Madsen et al. 2018)" in summary and "tiny_columns" in summary
    assert "## Exit waves (Larsen et al. 2023)" in summary and "tiny_waves" in summary
    assert "## Conditions (Table 1 of the study)" in summary  # the segmentation model's
    assert (results / "report" / "examples.png").stat().st_size > 10_000


def test_perfect_column_maps_find_every_column(tasks_run, monkeypatch):
    """The evaluation, fed the true confidence maps, finds every column at its place: the maps,
    the positions table, the watershed and the matching agree."""
    import hrtem_wf.evaluations.evaluate as evaluate

    results = tasks_run.path / "results"
    dataset = results / "datasets" / "tiny_tasks_set"
    maps = read_arrays(f"{dataset}.zarr", {"column_maps": np.float32})[0]["column_maps"]
    table = pd.read_parquet(f"{dataset}.parquet")
    test_rows = iter(table[table["split"] == "test"].sort_values("row")["row"].tolist())

    def truth(model, raw_images, task, device):
        return np.stack([maps[next(test_rows)] for _ in raw_images])

    monkeypatch.setattr(evaluate, "predict_maps", truth)
    metrics = evaluate.evaluate_model(
        str(results / "models" / "tiny_columns" / "seed0"), f"{dataset}.zarr", f"{dataset}.parquet"
    )
    assert metrics["n_true"] > 10
    assert metrics["f1"] == 1.0 and metrics["class_accuracy"] == 1.0
    assert metrics["position_rmse_A"] < 0.02


def test_on_the_fly_training_draws_the_targets_of_each_drawn_image(tasks_run, monkeypatch):
    """An on-the-fly column or exit-wave model draws its targets with each image, from that
    draw's record: column maps of the structure's projected columns on the drawn detector grid,
    the exit wave low-passed, resampled and cropped as the drawn image; seeded per (model seed,
    epoch, structure, repeat), so a draw is the same when drawn again."""
    from hrtem_wf.config import validate
    from hrtem_wf.images.columns import projected_columns
    from hrtem_wf.images.targets import column_targets, exit_wave_targets
    from hrtem_wf.models.model import TrainedModel
    from hrtem_wf.models.on_the_fly import ExitWaveCache, OnTheFlyImages

    config = tasks_run.config
    spec = validate(config)["images"]["tiny_tasks"]
    monkeypatch.chdir(tasks_run.path)  # the stores name their structures from there
    results = tasks_run.path / "results"
    store = results / "simulations" / "tiny_layered_fp" / "00000.zarr"
    stores = [(read_arrays(store, {"full": np.complex64})[1]["structure_id"], store)]
    for task, model in (("columns", "tiny_columns_fly"), ("exit_wave", "tiny_waves_fly")):
        cache = ExitWaveCache(stores, spec, 1e9, task)
        drawn = OnTheFlyImages(cache, spec, 2, model_seed=0)
        image, target, record = drawn.draw(epoch=3, index=1)
        again = drawn.draw(epoch=3, index=1)
        np.testing.assert_array_equal(again[0], image)
        np.testing.assert_array_equal(again[1], target)
        assert not np.array_equal(drawn.draw(epoch=4, index=1)[0], image)
        assert image.shape == (len(OFFSETS_A), CELL_PX, CELL_PX)
        drawn_record = {k.removeprefix("image."): v for k, v in record.items()}
        waves, sim_attrs = read_arrays(store, {"full": np.complex64})
        sampling = tuple(sim_attrs["sampling_A"])
        if task == "columns":
            atoms = ase.io.read(results / "structures" / "tiny_layered" / "00000.extxyz")
            columns = projected_columns(atoms, spec["targets"]["columns"]["tolerance_A"])
            expected = column_targets(
                columns, spec["targets"]["columns"], [drawn_record], sampling, (CELL_PX,) * 2
            )[0][0]
            assert target.max() > 0.9
        else:
            expected = exit_wave_targets(
                waves["full"], spec["targets"]["exit_wave"], [drawn_record], sampling
            )[0]
        np.testing.assert_allclose(target, expected, atol=1e-6)
        assert target.shape == (2, CELL_PX, CELL_PX)
        normalized, tensor_target, _ = drawn[0]
        assert normalized.shape == (len(OFFSETS_A), CELL_PX, CELL_PX)
        assert tensor_target.dtype.is_floating_point
        trained = TrainedModel.read(results / "models" / model / "seed0")
        assert trained.task == task and trained.channels == (3, 2)
        fly = trained.metadata["on_the_fly"]
        assert fly["images_per_epoch"] == 2 * fly["structures"]  # 2 per training structure
    assert config["models"]["tiny_columns_fly"]["on_the_fly"]["images"] == "tiny_tasks"
