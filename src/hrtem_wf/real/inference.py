"""Particle probability maps of experimental micrographs of any size, by blended tiles.

A trained UNet sees images of the training size; a micrograph is larger (and of any size). It is
cut into overlapping tiles on a regular grid, the tiles are predicted in batches, and the tile
probabilities are blended with a 2-D Hann window, so that each pixel is dominated by tiles in
which it lies far from the tile edge, where the network sees its full context.

Tile origins are multiples of the stride, and the stride is a multiple of 2**encoder_depth: every
tile sits on the same pixel grid of the network's poolings as the whole image does, so away from
tile edges a tile predicts what the whole image would.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch

from hrtem_wf.models.data import normalize_min_max
from hrtem_wf.models.model import resolve_device

#: Defaults of predict_tiled (and `hrtem-wf predict`): tiles of 512 px overlapping by half.
DEFAULT_TILE_PX = 512
DEFAULT_OVERLAP_PX = 256
#: The blend weight of pixels outside a tile's Hann window. It only has to be positive (pixels in
#: the margins at the image border get nothing else); a larger floor lets tile-edge predictions
#: into the blend: a floor of 1e-3 gave differences to whole-image inference of 8e-4.
DEFAULT_WEIGHT_FLOOR = 1e-6
#: Relative pixel-size difference to the training data above which `hrtem-wf predict` warns.
PIXEL_SIZE_TOLERANCE = 0.05


def preprocess(image: np.ndarray, median_px: int = 3) -> np.ndarray:
    """The preprocessing of experimental micrographs: a median filter, then min-max to [0, 1].

    The median filter (``median_px`` x ``median_px``, mirrored at the image edges; 0 or 1 for
    none) removes single-pixel outliers (hot pixels, X-ray hits) that would otherwise set the
    per-image min-max scaling. Returns float32.
    """
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 2:
        raise ValueError(f"preprocess takes a 2-D image, not shape {image.shape}")
    if not np.all(np.isfinite(image)):
        raise ValueError("the micrograph has NaN or infinite pixels")
    median_px = int(median_px)
    if median_px < 0:
        raise ValueError(f"median_px must be >= 0, not {median_px}")
    if median_px > 1:
        from scipy.ndimage import median_filter

        image = median_filter(image, size=median_px, mode="reflect")
    return normalize_min_max(image)


def model_encoder_depth(model: torch.nn.Module) -> int:
    """The number of halvings in the model's encoder (smp models), else ValueError."""
    from hrtem_wf.models.msdnet import MSDNet

    if isinstance(model, MSDNet):
        return 0  # no poolings: any tile size
    encoder = getattr(model, "encoder", None)
    depth = getattr(encoder, "_depth", None)
    if depth is None and hasattr(encoder, "out_channels"):
        depth = len(encoder.out_channels) - 1
    if depth is None:
        raise ValueError(
            "cannot read the encoder depth from this model; pass encoder_depth= "
            "(tiles must be divisible by 2**encoder_depth)"
        )
    return int(depth)


def hann_window(length: int, weight_floor: float, margin_px: int = 0) -> np.ndarray:
    """A Hann window over the central ``length - 2 margin_px`` pixels, clipped below at
    ``weight_floor`` (which is all the ``margin_px`` pixels at either end get).

    sin^2(pi (i + 1/2) / n) over the n central pixel centres: with no margin, windows shifted
    by length/2 add up to 1.
    """
    inner = length - 2 * margin_px
    if margin_px < 0 or inner < 1:
        raise ValueError(f"margin_px {margin_px} leaves no window in a tile of {length} px")
    window = np.zeros(length)
    window[margin_px : margin_px + inner] = np.sin(np.pi * (np.arange(inner) + 0.5) / inner) ** 2
    return np.maximum(window, weight_floor).astype(np.float32)


def _axis_layout(size: int, tile: int, stride: int, factor: int) -> tuple[int, int, int]:
    """(tile length, number of tiles, padded length) along one axis of ``size`` pixels."""
    if size <= tile:  # one tile, just large enough for the network
        length = math.ceil(size / factor) * factor
        return length, 1, length
    n_tiles = math.ceil((size - tile) / stride) + 1
    return tile, n_tiles, (n_tiles - 1) * stride + tile


def _batches(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def check_tiling(
    model: torch.nn.Module,
    tile_px: int,
    overlap_px: int,
    batch_size: int,
    encoder_depth: int | None = None,
) -> tuple[int, int]:
    """(encoder depth, stride) of a tiling `predict_tiled` can run; ValueError naming the
    argument otherwise: tiles and the stride tile_px - overlap_px must be positive multiples of
    2**encoder_depth (read from the model unless given)."""
    depth = model_encoder_depth(model) if encoder_depth is None else int(encoder_depth)
    factor = 2**depth
    tile_px, overlap_px, batch_size = int(tile_px), int(overlap_px), int(batch_size)
    stride = tile_px - overlap_px
    if tile_px <= 0 or tile_px % factor:
        raise ValueError(
            f"tile_px {tile_px} must be a positive multiple of 2**encoder_depth = {factor}"
        )
    if overlap_px < 0 or stride <= 0 or stride % factor:
        raise ValueError(
            f"overlap_px {overlap_px} must be >= 0 and leave a stride tile_px - "
            f"overlap_px = {stride} that is a positive multiple of {factor}"
        )
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, not {batch_size}")
    return depth, stride


def predict_tiled(
    model: torch.nn.Module,
    image01: np.ndarray,
    *,
    tile_px: int = DEFAULT_TILE_PX,
    overlap_px: int = DEFAULT_OVERLAP_PX,
    batch_size: int = 4,
    device: str | torch.device = "cpu",
    weight_floor: float = DEFAULT_WEIGHT_FLOOR,
    margin_px: int | None = None,
    encoder_depth: int | None = None,
    progress: bool = False,
    progress_desc: str | None = None,
    task: str = "segmentation",
) -> np.ndarray:
    """Particle probability (float32, the image's shape) of a preprocessed 2-D image; or, with a
    columns or exit_wave `task`, the network's maps (K, H, W) (hrtem_wf.models.loss.task_output:
    column confidences and background, or the exit wave's real and imaginary parts) of an image
    (H, W) or a focal series (C, H, W), each image preprocessed.

    ``image01`` is a preprocessed micrograph (see `preprocess`), of any size. Tiles of
    ``tile_px`` overlap by ``overlap_px``; both ``tile_px`` and the stride ``tile_px -
    overlap_px`` must be multiples of 2**encoder_depth (read from the model unless given).
    The image is mirrored beyond its bottom and right edges to fill the last tiles; an image
    smaller than a tile is predicted as one tile, mirrored to a size divisible by
    2**encoder_depth. ``device``: 'cpu', 'gpu' or a torch device; the model is moved there.

    Blending: each tile's probabilities are weighted by a separable Hann window that spans the
    tile less ``margin_px`` at each edge (default overlap_px // 4) and is ``weight_floor``
    elsewhere; sum(w p) / sum(w) is the result. Near a tile edge the network lacks context (zero
    padding within its receptive field, about 70 px for a resnet18 encoder of depth 3) and can
    be off by 0.5 there; a Hann window over the whole tile would still give pixels 30 to 60 px
    from the edge weights of 0.03 to 0.13, enough for seams of 0.01. With the margin they get
    only the floor weight, beside large weight from a tile in which they lie centrally. The
    floor only keeps weights positive where no window reaches (the margins at the image
    border); any floor weight mixes tile-edge errors in, so it is small.
    """
    image = np.asarray(image01, dtype=np.float32)
    series = image if image.ndim == 3 else image[None]
    if image.ndim not in (2, 3) or min(image.shape) < 1:
        raise ValueError(
            f"predict_tiled takes an image (H, W) or a focal series (C, H, W), not shape "
            f"{image.shape}"
        )
    takes = next((m.in_channels for m in model.modules() if isinstance(m, torch.nn.Conv2d)), None)
    if takes is not None and takes != len(series):
        raise ValueError(
            f"the network takes {takes} image(s) per input (2-D: one, (C, H, W): a focal "
            f"series), not {len(series)}"
        )
    depth, stride = check_tiling(model, tile_px, overlap_px, batch_size, encoder_depth)
    factor = 2**depth
    tile_px, overlap_px, batch_size = int(tile_px), int(overlap_px), int(batch_size)
    if not 0 < weight_floor <= 1:
        raise ValueError(f"weight_floor must be in (0, 1], not {weight_floor}")
    margin_px = overlap_px // 4 if margin_px is None else int(margin_px)
    if margin_px < 0 or 2 * margin_px > overlap_px:
        raise ValueError(
            f"margin_px {margin_px} must be >= 0 and at most half the overlap "
            f"({overlap_px} px), or neighbouring windows leave gaps"
        )
    if isinstance(device, str) and device in ("cpu", "gpu"):
        device = resolve_device(device)
    device = torch.device(device)

    height, width = series.shape[-2:]
    tile_h, n_y, padded_h = _axis_layout(height, tile_px, stride, factor)
    tile_w, n_x, padded_w = _axis_layout(width, tile_px, stride, factor)
    # Only the bottom and right are padded: the tile grid keeps the image's origin.
    padded = np.pad(
        series,
        ((0, 0), (0, padded_h - height), (0, padded_w - width)),
        mode="reflect" if min(height, width) > 1 else "edge",
    )
    # One tile along an axis needs no blending along it.
    window_y = (
        hann_window(tile_h, weight_floor, margin_px) if n_y > 1 else np.ones(tile_h, np.float32)
    )
    window_x = (
        hann_window(tile_w, weight_floor, margin_px) if n_x > 1 else np.ones(tile_w, np.float32)
    )
    weight = window_y[:, None] * window_x[None, :]

    weighted_sum = weight_sum = None  # (K, H, W) and (H, W), at the first batch's maps
    origins = [(iy * stride, ix * stride) for iy in range(n_y) for ix in range(n_x)]

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(origins), desc=progress_desc or "tiles", unit="tile", leave=False)
    model = model.to(device).eval()
    try:
        with torch.no_grad():
            for batch in _batches(origins, batch_size):
                tiles = np.stack([padded[:, y : y + tile_h, x : x + tile_w] for y, x in batch])
                maps = _task_maps(task, model(torch.from_numpy(tiles).to(device)))
                if weighted_sum is None:
                    weighted_sum = np.zeros((maps.shape[1], padded_h, padded_w), np.float32)
                    weight_sum = np.zeros((padded_h, padded_w), dtype=np.float32)
                for (y, x), tile_maps in zip(batch, maps):
                    weighted_sum[:, y : y + tile_h, x : x + tile_w] += weight * tile_maps
                    weight_sum[y : y + tile_h, x : x + tile_w] += weight
                if bar is not None:
                    bar.update(len(batch))
    finally:
        if bar is not None:
            bar.close()
    result = weighted_sum[:, :height, :width] / weight_sum[:height, :width]
    if task == "exit_wave":
        return result.astype(np.float32, copy=False)
    result = np.clip(result, 0.0, 1.0).astype(np.float32, copy=False)
    return result[0] if task == "segmentation" else result


def _task_maps(task: str, outputs: torch.Tensor) -> np.ndarray:
    """(B, K, h, w) float32: the particle probability (K = 1) or the task's maps."""
    from hrtem_wf.models.loss import task_output

    if task == "segmentation":
        return torch.softmax(outputs.float(), dim=1)[:, 1:2].cpu().numpy()
    return task_output(task, outputs.float()).cpu().numpy()


def predict_micrograph(
    model: torch.nn.Module, raw_image: np.ndarray, *, median_px: int = 3, **tiling
) -> np.ndarray:
    """Particle probability (or a task's maps) of a raw micrograph (H, W) or focal series
    (C, H, W): `preprocess` each image, then `predict_tiled`."""
    if np.ndim(raw_image) == 3:
        return predict_tiled(
            model, np.stack([preprocess(image, median_px) for image in raw_image]), **tiling
        )
    return predict_tiled(model, preprocess(raw_image, median_px=median_px), **tiling)


def pixel_size_mismatch(
    pixel_size_A: float | None,
    training: float | list[float] | None,
    tolerance: float = PIXEL_SIZE_TOLERANCE,
    nominal_pixel_size_A: float | None = None,
) -> str | None:
    """A warning text when ``pixel_size_A`` is off the training pixel size by > ``tolerance``.

    training: a number, or [low, high] when the training pixel size was drawn (off means
    outside the range); nominal_pixel_size_A: the one to resample to (TrainedModel
    .nominal_pixel_size_A), named in the text. None when it matches, or when either pixel size
    is unknown.
    """
    if pixel_size_A is None or training is None:
        return None
    values = [float(v) for v in training] if isinstance(training, (list, tuple)) else [training]
    low, high = min(values), max(values)
    if low * (1 - tolerance) <= pixel_size_A <= high * (1 + tolerance):
        return None
    trained = f"{low:.4g} A" if low == high else f"{low:.4g} to {high:.4g} A"
    nearest = low if pixel_size_A < low else high
    return (
        f"pixel size {pixel_size_A:.4g} A differs by {abs(pixel_size_A / nearest - 1):.0%} "
        f"from the training data's {trained} (more than {tolerance:.0%}); the network sees "
        f"features at a scale it was not trained on: resample the micrograph to the "
        f"training pixel size"
        + ("" if nominal_pixel_size_A is None else f" ({nominal_pixel_size_A:.4g} A)")
    )
