"""Experimental micrographs: tiled inference, the readers and writers, `hrtem-wf predict`.

The network is untrained but deterministic (seeded weights, BatchNorm statistics from a few
synthetic micrographs), so its output varies over the image like a real predictor's and tiled
inference can be checked against whole-image inference pixel by pixel.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import tifffile
import torch

from conftest import TINY_MODEL_BLOCK
from hrtem_wf.evaluations.evaluate import predict_particle_probability
from hrtem_wf.models.model import TrainedModel, build_model
from hrtem_wf.real.inference import (
    DEFAULT_OVERLAP_PX,
    DEFAULT_TILE_PX,
    pixel_size_mismatch,
    predict_micrograph,
    predict_tiled,
    preprocess,
)
from hrtem_wf.real.micrographs import (
    angstrom_per_unit,
    read_mask_png,
    read_micrograph,
    write_mask_png,
    write_probability_tiff,
)

BLOCK = {
    **TINY_MODEL_BLOCK,
    "encoder": "resnet18",
    "encoder_depth": 3,
    "decoder_channels": [16, 8, 4],
}
#: A very cheap smp UNet (dpn68's stem has 10 channels; one decoder block), for the 4096 x 4096
#: run of the command line: about 0.4 s per megapixel on two shared CPU cores, resnet18 1.1 s.
FAST_BLOCK = {**TINY_MODEL_BLOCK, "encoder": "dpn68", "encoder_depth": 1, "decoder_channels": [2]}
TOLERANCE = 1e-3
BORDER_PX = 64


def synthetic_micrograph(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    """Raw counts: smooth blobs (particles), lattice fringes, noise and a few hot pixels."""
    rng = np.random.default_rng(seed)
    height, width = shape
    yy, xx = np.mgrid[:height, :width].astype(np.float32)
    image = np.zeros(shape, np.float32)
    for _ in range(max(3, height * width // 40000)):
        cy, cx, radius = rng.uniform(0, height), rng.uniform(0, width), rng.uniform(10, 40)
        image += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * radius**2))
    image += 0.3 * np.sin(xx / 3.0) * np.sin(yy / 3.0)
    image += rng.normal(0.0, 0.2, shape).astype(np.float32)
    image = 100.0 + 50.0 * image
    image.flat[rng.integers(0, image.size, 5)] = 1e4  # hot pixels: the median filter's job
    return image.astype(np.float32)


def calibrated_model(block: dict) -> torch.nn.Module:
    """Seeded weights; BatchNorm running statistics averaged over six synthetic micrographs."""
    torch.manual_seed(0)
    model = build_model(block)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None  # a plain average over the calibration batches
    model.train()
    with torch.no_grad():
        for step in range(3):
            batch = np.stack(
                [preprocess(synthetic_micrograph((256, 256), 100 + 2 * step + k)) for k in range(2)]
            )
            model(torch.from_numpy(batch[:, None]))
    return model.eval()


def save_model_dir(path, model: torch.nn.Module, block: dict, **extra) -> str:
    path.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path / "weights.pt")
    metadata = {
        "block": block,
        "model": "t",
        "seed": 0,
        "dataset": None,
        "pixel_size_A": None,
        "best_epoch": 1,
        **extra,
    }
    (path / "metadata.json").write_text(json.dumps(metadata))
    return str(path)


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return calibrated_model(BLOCK)


@pytest.fixture(scope="module")
def model_dir(model, tmp_path_factory) -> str:
    return save_model_dir(tmp_path_factory.mktemp("model"), model, BLOCK)


@pytest.fixture(scope="module")
def tiled_and_whole(model):
    """A preprocessed 1024 x 1024 micrograph, its tiled and its whole-image probabilities."""
    image01 = preprocess(synthetic_micrograph((1024, 1024)))
    assert image01.min() == 0.0 and image01.max() == 1.0  # unchanged by the re-normalization
    whole = predict_particle_probability(model, image01[None])[0]
    tiled = predict_tiled(model, image01)
    return image01, tiled, whole


def tile_edges(
    size: int, tile_px: int = DEFAULT_TILE_PX, overlap_px: int = DEFAULT_OVERLAP_PX
) -> list[int]:
    """First pixel of every tile and first pixel after every tile, inside the image."""
    stride = tile_px - overlap_px
    starts = range(0, size - tile_px + 1, stride)
    return sorted({e for s in starts for e in (s, s + tile_px) if 0 < e < size})


# --- tiled inference ------------------------------------------------------------------------


def test_tiled_inference_equals_whole_image_inference(tiled_and_whole):
    _, tiled, whole = tiled_and_whole
    assert tiled.shape == whole.shape == (1024, 1024) and tiled.dtype == np.float32
    # A test that means something: the network's output varies over the image.
    assert whole.std() > 0.05 and whole.max() - whole.min() > 0.5
    inner = np.s_[BORDER_PX:-BORDER_PX, BORDER_PX:-BORDER_PX]
    difference = float(np.abs(tiled - whole)[inner].max())
    assert difference <= TOLERANCE, (
        f"tiled vs whole-image inference: max difference {difference:.3g} at least "
        f"{BORDER_PX} px from the border (tolerance {TOLERANCE})"
    )


def test_tiled_inference_is_seamless(tiled_and_whole):
    _, tiled, whole = tiled_and_whole
    edges = tile_edges(1024)
    assert edges == [256, 512, 768]
    inner = slice(BORDER_PX, -BORDER_PX)
    on_edges = max(float(np.abs(tiled - whole)[inner, e - 1 : e + 1].max()) for e in edges)
    on_edges = max(
        on_edges, *(float(np.abs(tiled - whole)[e - 1 : e + 1, inner].max()) for e in edges)
    )
    assert on_edges <= TOLERANCE, f"max difference on tile boundary lines {on_edges:.3g}"
    # Jumps across tile edges: those of the whole-image result, no more.
    excess = 0.0
    for e in edges:
        jump_x = np.abs(tiled[inner, e] - tiled[inner, e - 1])
        jump_y = np.abs(tiled[e, inner] - tiled[e - 1, inner])
        excess = max(
            excess,
            float(np.max(jump_x - np.abs(whole[inner, e] - whole[inner, e - 1]))),
            float(np.max(jump_y - np.abs(whole[e, inner] - whole[e - 1, inner]))),
        )
    assert excess <= TOLERANCE, f"jumps across tile edges exceed the whole image's by {excess:.3g}"


def test_odd_sized_image_keeps_shape_and_matches_whole_image_inside(model):
    image01 = preprocess(synthetic_micrograph((700, 900), seed=1))
    tiled = predict_tiled(model, image01, batch_size=3)
    assert tiled.shape == (700, 900) and tiled.dtype == np.float32
    assert np.all(np.isfinite(tiled)) and tiled.min() >= 0.0 and tiled.max() <= 1.0
    # The whole-image network needs sizes divisible by 8: compare on the top-left 696 x 896,
    # away from the bottom and right, where the two see different borders (mirror vs zeros).
    whole = predict_particle_probability(model, image01[None, :696, :896])[0]
    region = np.s_[BORDER_PX:600, BORDER_PX:800]
    difference = float(np.abs(tiled[region] - whole[region]).max())
    assert difference <= TOLERANCE, f"700 x 900: max difference {difference:.3g}"


def test_image_smaller_than_a_tile_is_one_mirrored_tile(model):
    image01 = preprocess(synthetic_micrograph((200, 300), seed=2))
    tiled = predict_tiled(model, image01)
    assert tiled.shape == (200, 300) and tiled.dtype == np.float32
    assert tiled.min() >= 0.0 and tiled.max() <= 1.0
    # One tile of 200 x 304 (divisible by 2**3), mirrored at the right edge.
    padded = np.pad(image01, ((0, 0), (0, 4)), mode="reflect")
    expected = predict_particle_probability(model, padded[None])[0][:, :300]
    np.testing.assert_allclose(tiled, expected, atol=1e-5)


def test_tiling_arguments_are_checked(model):
    image01 = np.zeros((64, 64), np.float32)
    with pytest.raises(ValueError, match="multiple of 2\\*\\*encoder_depth = 8"):
        predict_tiled(model, image01, tile_px=100, overlap_px=52)
    with pytest.raises(ValueError, match="stride"):
        predict_tiled(model, image01, tile_px=128, overlap_px=128)
    with pytest.raises(ValueError, match="takes 1 image"):
        predict_tiled(model, np.zeros((2, 64, 64), np.float32))
    with pytest.raises(ValueError, match="an image .* or a focal series"):
        predict_tiled(model, np.zeros((1, 2, 64, 64), np.float32))


def test_preprocess_median_filter_then_min_max():
    image = np.full((32, 48), 10.0, np.float32)
    image[5:20, 5:30] = 20.0
    image[25, 40] = 1e5  # a hot pixel
    result = preprocess(image)
    assert result.dtype == np.float32 and result.min() == 0.0 and result.max() == 1.0
    assert result[25, 40] == 0.0  # the hot pixel is gone and does not set the scale
    assert result[10, 10] == 1.0
    unfiltered = preprocess(image, median_px=0)
    assert unfiltered[25, 40] == 1.0 and unfiltered[10, 10] < 1e-3


# --- reading and writing --------------------------------------------------------------------


def test_tiff_pixel_size_in_nm_reads_as_angstrom(tmp_path):
    data = np.arange(30 * 40, dtype=np.uint16).reshape(30, 40)
    px_nm = 0.0523
    tifffile.imwrite(
        tmp_path / "imagej.tif",
        data,
        imagej=True,
        resolution=(1 / px_nm, 1 / px_nm),
        metadata={"unit": "nm"},
    )
    tifffile.imwrite(
        tmp_path / "centimetre.tiff",
        data,
        resolution=(1 / (px_nm * 1e-7),) * 2,
        resolutionunit="CENTIMETER",
    )
    tifffile.imwrite(tmp_path / "plain.tif", data)
    for name in ("imagej.tif", "centimetre.tiff"):
        image, pixel_size = read_micrograph(tmp_path / name)
        assert image.dtype == np.float32 and image.shape == (30, 40)
        np.testing.assert_array_equal(image, data)
        assert pixel_size == pytest.approx(0.523, rel=1e-6), name
    assert read_micrograph(tmp_path / "plain.tif")[1] is None


def test_probability_tiff_round_trip(tmp_path):
    probability = np.random.default_rng(0).random((50, 70)).astype(np.float32)
    write_probability_tiff(tmp_path / "p.tif", probability, 0.237)
    image, pixel_size = read_micrograph(tmp_path / "p.tif")
    np.testing.assert_array_equal(image, probability)
    assert pixel_size == pytest.approx(0.237, rel=1e-6)
    write_probability_tiff(tmp_path / "q.tif", probability, None)
    assert read_micrograph(tmp_path / "q.tif")[1] is None


def _signal(data: np.ndarray, scale: float, units: str, title: str = "image") -> dict:
    axes = [
        {"name": name, "size": n, "scale": 1.0, "offset": 0.0, "units": None, "navigate": True}
        for name, n in zip("tz", data.shape[:-2])
    ]
    axes += [
        {"name": name, "size": n, "scale": scale, "offset": 0.0, "units": units, "navigate": False}
        for name, n in zip("yx", data.shape[-2:])
    ]
    return {
        "data": data,
        "axes": axes,
        "metadata": {"General": {"title": title}, "Signal": {}},
        "original_metadata": {},
    }


def test_emd_ncem_with_pixel_size(tmp_path, caplog):
    from rsciio.emd import file_writer  # writes NCEM EMD (rsciio reads Velox too)

    data = np.random.default_rng(1).random((48, 64)).astype(np.float32)
    file_writer(tmp_path / "image.emd", _signal(data, 0.0731, "nm"))
    image, pixel_size = read_micrograph(tmp_path / "image.emd")
    np.testing.assert_array_equal(image, data)
    assert pixel_size == pytest.approx(0.731, rel=1e-6)

    stack = np.random.default_rng(2).random((3, 48, 64)).astype(np.float32)
    file_writer(tmp_path / "stack.emd", _signal(stack, 25.0, "pm", title="series"))
    with caplog.at_level(logging.WARNING, logger="hrtem_wf"):
        image, pixel_size = read_micrograph(tmp_path / "stack.emd")
    np.testing.assert_array_equal(image, stack[0])
    assert pixel_size == pytest.approx(0.25)
    assert any("first 2-D image" in record.getMessage() for record in caplog.records)


def test_npy_and_png_micrographs(tmp_path, caplog):
    from PIL import Image

    data = np.random.default_rng(3).random((20, 30))
    np.save(tmp_path / "a.npy", data)
    image, pixel_size = read_micrograph(tmp_path / "a.npy")
    assert image.dtype == np.float32 and pixel_size is None
    np.testing.assert_allclose(image, data, rtol=1e-6)
    np.save(tmp_path / "stack.npy", np.stack([data, 2 * data]))
    with caplog.at_level(logging.WARNING, logger="hrtem_wf"):
        image, _ = read_micrograph(tmp_path / "stack.npy")
    np.testing.assert_allclose(image, data, rtol=1e-6)
    assert any("stack" in record.getMessage() for record in caplog.records)
    np.save(tmp_path / "line.npy", np.zeros(10))
    with pytest.raises(ValueError, match="not a 2-D image"):
        read_micrograph(tmp_path / "line.npy")

    gray = (np.arange(20 * 30) % 256).astype(np.uint8).reshape(20, 30)
    Image.fromarray(gray).save(tmp_path / "gray.png")
    Image.fromarray(np.stack([gray] * 3, axis=-1)).save(tmp_path / "rgb.png")
    for name in ("gray.png", "rgb.png"):
        image, pixel_size = read_micrograph(tmp_path / name)
        np.testing.assert_array_equal(image, gray.astype(np.float32))
        assert pixel_size is None


def test_mask_png_round_trip(tmp_path):
    from PIL import Image

    mask = (np.random.default_rng(4).random((40, 50)) > 0.5).astype(np.uint8)
    write_mask_png(tmp_path / "m.png", mask)
    with Image.open(tmp_path / "m.png") as png:
        assert png.mode == "L" and set(np.unique(np.asarray(png))) == {0, 255}
    read = read_mask_png(tmp_path / "m.png")
    assert read.dtype == np.uint8
    np.testing.assert_array_equal(read, mask)
    rgba = np.zeros((40, 50, 4), np.uint8)
    rgba[..., 3] = 255  # opaque everywhere: alpha is not the mask
    rgba[mask == 1, 0] = 7
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(read_mask_png(tmp_path / "rgba.png"), mask)


def test_unsupported_extension_is_a_clear_error(tmp_path):
    (tmp_path / "image.jpg").write_bytes(b"\xff\xd8")
    with pytest.raises(ValueError, match="unsupported micrograph format '.jpg'"):
        read_micrograph(tmp_path / "image.jpg")


def test_units_and_pixel_size_check():
    assert angstrom_per_unit("nm") == 10.0
    assert angstrom_per_unit("pm") == 0.01
    assert angstrom_per_unit("m") == 1e10
    assert angstrom_per_unit("\u00b5m") == angstrom_per_unit("um") == 1e4
    assert angstrom_per_unit("Å") == angstrom_per_unit("A") == angstrom_per_unit("angstrom") == 1
    assert angstrom_per_unit("1 / nm") is None and angstrom_per_unit(None) is None
    assert pixel_size_mismatch(0.2, 0.2) is None and pixel_size_mismatch(0.209, 0.2) is None
    assert "differs by 25%" in pixel_size_mismatch(0.25, 0.2)
    assert pixel_size_mismatch(None, 0.2) is None and pixel_size_mismatch(0.5, None) is None
    assert pixel_size_mismatch(0.3, [0.2, 0.4]) is None and pixel_size_mismatch(0.5, [0.2, 0.4])


# --- hrtem-wf predict ----------------------------------------------------------------------


def test_cli_predict_writes_probability_and_mask(model, model_dir, tmp_path, caplog):
    from rsciio.emd import file_writer

    from hrtem_wf.cli import main

    tif_image = synthetic_micrograph((300, 520), seed=5)
    tifffile.imwrite(
        tmp_path / "first.tif",
        tif_image,
        imagej=True,
        resolution=(5.0, 5.0),
        metadata={"unit": "nm"},
    )  # 0.2 nm = 2 A
    emd_image = synthetic_micrograph((200, 260), seed=6)
    file_writer(tmp_path / "second.emd", _signal(emd_image, 18.0, "pm"))
    out = tmp_path / "out"
    with caplog.at_level(logging.INFO, logger="hrtem_wf"):
        assert (
            main(
                [
                    "predict",
                    model_dir,
                    str(tmp_path / "first.tif"),
                    str(tmp_path / "second.emd"),
                    "--out",
                    str(out),
                ]
            )
            == 0
        )
    assert sorted(p.name for p in out.iterdir()) == [
        "first_mask.png",
        "first_particles.csv",
        "first_probability.tif",
        "particle_sizes.json",
        "particle_sizes.png",
        "particles.csv",
        "second_mask.png",
        "second_particles.csv",
        "second_probability.tif",
    ]  # the files' pixel sizes: each micrograph's particles measured, and pooled
    reloaded = TrainedModel.read(model_dir).load_network()
    for stem, image, pixel_size in (("first", tif_image, 2.0), ("second", emd_image, 0.18)):
        probability, written_pixel_size = read_micrograph(out / f"{stem}_probability.tif")
        assert probability.shape == image.shape and written_pixel_size == pytest.approx(pixel_size)
        np.testing.assert_allclose(probability, predict_micrograph(reloaded, image), atol=1e-6)
        mask = read_mask_png(out / f"{stem}_mask.png")
        np.testing.assert_array_equal(mask, probability > 0.5)
        assert 0 < mask.mean() < 1  # the threshold falls inside the probability range
    lines = [r.getMessage() for r in caplog.records if "particle fraction" in r.getMessage()]
    assert len(lines) == 2 and "300 x 520 px, pixel size 2 A" in lines[0]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_cli_predict_warns_on_pixel_size_mismatch(model, tmp_path, caplog):
    from hrtem_wf.cli import main

    trained_at = save_model_dir(tmp_path / "model", model, BLOCK, pixel_size_A=0.2)
    for name, px_nm in (("same", 0.0205), ("coarse", 0.05)):
        tifffile.imwrite(
            tmp_path / f"{name}.tif",
            synthetic_micrograph((64, 96)),
            imagej=True,
            resolution=(1 / px_nm, 1 / px_nm),
            metadata={"unit": "nm"},
        )
    with caplog.at_level(logging.WARNING, logger="hrtem_wf"):
        main(
            [
                "predict",
                trained_at,
                str(tmp_path / "same.tif"),
                str(tmp_path / "coarse.tif"),
                "--out",
                str(tmp_path / "out"),
            ]
        )
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "coarse.tif" in warnings[0] and "0.5 A differs by 150%" in warnings[0]


def test_cli_predict_large_npy(tmp_path):
    """A 4096 x 4096 micrograph (with the cheapest network, to keep the test short)."""
    from PIL import Image

    from hrtem_wf.cli import main

    fast_dir = save_model_dir(tmp_path / "fast", calibrated_model(FAST_BLOCK), FAST_BLOCK)
    rng = np.random.default_rng(7)
    np.save(tmp_path / "large.npy", rng.normal(100.0, 10.0, (4096, 4096)).astype(np.float32))
    out = tmp_path / "out"
    main(
        [
            "predict",
            fast_dir,
            str(tmp_path / "large.npy"),
            "--out",
            str(out),
            "--tile-px",
            "512",
            "--overlap-px",
            "32",
            "--batch-size",
            "8",
        ]
    )
    probability, pixel_size = read_micrograph(out / "large_probability.tif")
    assert probability.shape == (4096, 4096) and pixel_size is None
    assert probability.min() >= 0.0 and probability.max() <= 1.0
    with Image.open(out / "large_mask.png") as png:
        assert png.size == (4096, 4096)
    np.testing.assert_array_equal(read_mask_png(out / "large_mask.png"), probability > 0.5)
