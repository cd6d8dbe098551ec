"""Real sets: real micrographs with hand-made particle masks, read from the files a
user has, preprocessed as the study (3 x 3 median, per-image [0, 1]) and scored per image and
overall for a trained model.

A `real_sets.<R>` config block is one of

    format: hdf5                 # `path`: datasets `images` (N, H, W) and either `maps`
    path: data/au_5nm.h5         #   (N, H, W, C) one-hot with the particle in `particle_channel`
    pixel_size_A: 0.2            #   (the study's files: NHWC, channel 1) or `labels` (N, H, W) 0/1
    format: pairs                # `micrographs`: a folder of .dm3/.dm4/.ser/.emd/.tif/.npy/.png;
    micrographs: data/exp        #   `masks`: a folder with <stem>.png for each (nonzero:
                                 #   particle);
    masks: data/exp_masks        #   the pixel size comes from each file unless given

plus `median_filter_px` (3), `resample` (true: bring micrographs whose pixel size differs from the
training data's (its range, when drawn) by > 5 % to the model's nominal pixel size, and the
prediction back; false: only warn) and optional `models` (default: every model).

`real_set_problems` reads one set; `hrtem_wf.config.check_real_sets` reads every set when the
workflow starts (the Snakefile, in its main process, dry runs too; not in each cluster job):
every micrograph readable, each with a mask of its shape, nothing else in the folders but hidden
files (names starting with '.', ignored). A problem stops the run before any job, naming the
set, the file and what is wrong.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hrtem_wf.evaluations.metrics import (
    SegmentationCounts,
    metrics_from_counts,
    segmentation_counts,
)

log = logging.getLogger(__name__)


@dataclass
class RealImage:
    name: str
    image: np.ndarray  # raw micrograph, (H, W) float32
    mask: np.ndarray  # particle mask, (H, W) uint8 in {0, 1}
    pixel_size_A: float | None


def _check_pair(name: str, image: np.ndarray, mask: np.ndarray) -> None:
    if image.shape != mask.shape:
        raise ValueError(
            f"real image {name}: micrograph {image.shape} and mask {mask.shape} differ in shape"
        )


def read_hdf5_set(
    path: str | Path, pixel_size_A: float | None = None, particle_channel: int = 1
) -> list[RealImage]:
    """`images` + `maps` (one-hot NHWC) or `images` + `labels` (binary)."""
    import h5py

    with h5py.File(path, "r") as handle:
        if "images" not in handle:
            raise ValueError(f"{path}: no dataset 'images' (has {sorted(handle)})")
        images = np.asarray(handle["images"][...], dtype=np.float32)
        if "maps" in handle:
            maps = np.asarray(handle["maps"][...])
            if maps.ndim != 4 or not 0 <= particle_channel < maps.shape[-1]:
                raise ValueError(
                    f"{path}: 'maps' must be one-hot (N, H, W, C) with channel "
                    f"{particle_channel} the particle; it is {maps.shape}"
                )
            masks = (maps[..., particle_channel] > 0.5).astype(np.uint8)
        elif "labels" in handle:
            masks = (np.asarray(handle["labels"][...]) > 0).astype(np.uint8)
        else:
            raise ValueError(f"{path}: needs 'maps' (one-hot NHWC) or 'labels' besides 'images'")
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]  # NHWC with one channel, as the study stored them
    if images.ndim == 2:
        images, masks = images[None], masks.reshape((1, *masks.shape[-2:]))
    result = []
    for index, (image, mask) in enumerate(zip(images, masks)):
        name = f"{Path(path).stem}[{index}]"
        _check_pair(name, image, mask)
        result.append(RealImage(name, image, mask, pixel_size_A))
    return result


def read_pairs_set(
    micrographs: str | Path, masks: str | Path, pixel_size_A: float | None = None
) -> list[RealImage]:
    """Every micrograph in the folder with its <stem>.png mask in `masks`."""
    from hrtem_wf.real.micrographs import MICROGRAPH_EXTENSIONS, read_mask_png, read_micrograph

    files = sorted(
        p for p in Path(micrographs).iterdir() if p.suffix.lower() in MICROGRAPH_EXTENSIONS
    )
    if not files:
        raise ValueError(f"{micrographs}: no micrographs ({', '.join(MICROGRAPH_EXTENSIONS)})")
    result = []
    for path in files:
        mask_path = Path(masks) / f"{path.stem}.png"
        if not mask_path.exists():
            raise ValueError(f"micrograph {path} has no mask {mask_path}")
        image, file_pixel_size = read_micrograph(path)
        mask = read_mask_png(mask_path)
        _check_pair(path.name, image, mask)
        result.append(RealImage(path.name, image, mask, pixel_size_A or file_pixel_size))
    return result


def real_set_problems(name: str, block: dict) -> list[str]:
    """What is wrong with the files of `real_sets.<name>` (empty: nothing), one line each."""
    from hrtem_wf.real.micrographs import MICROGRAPH_EXTENSIONS, read_mask_png, read_micrograph

    key = f"real_sets.{name}"
    if block["format"] == "hdf5":
        try:
            read_hdf5_set(block["path"], block["pixel_size_A"], block["particle_channel"])
        except (OSError, ValueError, KeyError) as error:
            return [f"{key}.path: {error}"]
        return []
    folders = {field: Path(block[field]) for field in ("micrographs", "masks")}
    missing = [f"{key}.{f}: {p} is not a folder" for f, p in folders.items() if not p.is_dir()]
    if missing:
        return missing
    problems, stems = [], set()
    for path in sorted(folders["micrographs"].iterdir()):
        if path.name.startswith("."):
            continue
        if path.suffix.lower() not in MICROGRAPH_EXTENSIONS:
            problems.append(
                f"{key}: {path} is not a micrograph ({' '.join(MICROGRAPH_EXTENSIONS)}); "
                "move it out of the folder (or hide it: a name starting with '.')"
            )
            continue
        stems.add(path.stem)
        mask_path = folders["masks"] / f"{path.stem}.png"
        try:
            image, _ = read_micrograph(path)
        except (OSError, ValueError) as error:
            text = str(error)
            problems.append(f"{key}: {text if text.startswith(str(path)) else f'{path}: {text}'}")
            continue
        if not mask_path.is_file():
            problems.append(f"{key}: micrograph {path} has no mask {mask_path}")
            continue
        try:
            mask = read_mask_png(mask_path)
        except (OSError, ValueError) as error:
            problems.append(f"{key}: mask {mask_path}: {error}")
            continue
        if mask.shape != image.shape:
            problems.append(
                f"{key}: mask {mask_path} is {mask.shape[0]} x {mask.shape[1]} px, its "
                f"micrograph {path.name} {image.shape[0]} x {image.shape[1]} px"
            )
    if not stems and not problems:
        problems.append(f"{key}.micrographs: {folders['micrographs']} holds no micrographs")
    for path in sorted(folders["masks"].iterdir()):
        if path.name.startswith(".") or (path.suffix.lower() == ".png" and path.stem in stems):
            continue
        problems.append(f"{key}: {path} is the mask of no micrograph in {folders['micrographs']}")
    return problems


def read_real_set(block: dict) -> list[RealImage]:
    if block["format"] == "hdf5":
        return read_hdf5_set(block["path"], block["pixel_size_A"], block["particle_channel"])
    if block["format"] == "pairs":
        return read_pairs_set(block["micrographs"], block["masks"], block["pixel_size_A"])
    raise ValueError(f"real set format must be 'hdf5' or 'pairs', not {block['format']!r}")


def _zoom_to(array: np.ndarray, shape: tuple[int, int], order: int) -> np.ndarray:
    from scipy.ndimage import zoom

    factors = (shape[0] / array.shape[0], shape[1] / array.shape[1])
    out = zoom(array, factors, order=order, grid_mode=True, mode="reflect")
    return out[: shape[0], : shape[1]]


def predict_real_image(
    model,
    item: RealImage,
    training_pixel_size_A,
    nominal_pixel_size_A: float | None,
    block: dict,
    device="cpu",
) -> tuple[np.ndarray, str | None]:
    """(particle probability at the micrograph's own pixels, the pixel-size warning if any).

    training_pixel_size_A: the training images' pixel size, a number or [low, high] (the model's
    `pixel_size_A`); a micrograph off it gets a warning and, with the block's `resample`, is
    resampled to nominal_pixel_size_A (the model's `nominal_pixel_size_A`; None: not at all)."""
    from hrtem_wf.real.inference import pixel_size_mismatch, predict_micrograph

    median_px = block["median_filter_px"]
    warning = pixel_size_mismatch(
        item.pixel_size_A, training_pixel_size_A, nominal_pixel_size_A=nominal_pixel_size_A
    )
    if warning is None or not block["resample"] or nominal_pixel_size_A is None:
        return predict_micrograph(model, item.image, median_px=median_px, device=device), warning
    ratio = item.pixel_size_A / float(nominal_pixel_size_A)
    shape = tuple(max(8, int(round(n * ratio))) for n in item.image.shape)
    probability = predict_micrograph(
        model, _zoom_to(item.image, shape, order=1), median_px=median_px, device=device
    )
    return np.clip(_zoom_to(probability, item.image.shape, order=1), 0.0, 1.0), warning + (
        f"; resampled x{ratio:.3g} for the network and back for scoring"
    )


def score_real_set(
    model_dir: str | Path, name: str, block: dict, threshold: float = 0.5, device: str | None = None
) -> dict:
    """F1 (and the other pixel metrics) per image and pooled over the real set's pixels; with
    pixel sizes, the particles of the network's masks against the hand masks' (counts, sizes:
    hrtem_wf.real.sizes), per image and pooled."""
    from hrtem_wf.models.model import TrainedModel, resolve_device
    from hrtem_wf.real.sizes import measure_particles, relative_errors, size_summary

    trained = TrainedModel.read(model_dir)
    torch_device = resolve_device(device or trained.block["device"])
    model = trained.load_network(torch_device)
    training_pixel_size_A = trained.pixel_size_A
    pooled, per_image, warnings = SegmentationCounts(), [], []
    found = {"network": [], "hand": []}  # the particles of every image, pooled
    fragments = {"network": 0, "hand": 0}
    for item in read_real_set(block):
        probability, warning = predict_real_image(
            model, item, training_pixel_size_A, trained.nominal_pixel_size_A, block, torch_device
        )
        if warning:
            log.warning("real set %s, %s: %s", name, item.name, warning)
            warnings.append(f"{item.name}: {warning}")
        counts = segmentation_counts(probability, item.mask, threshold)
        pooled = pooled + counts
        record = {
            "image": item.name,
            "pixel_size_A": item.pixel_size_A,
            "shape": list(item.image.shape),
            **metrics_from_counts(counts),
        }
        if item.pixel_size_A:
            for side, mask in (("network", probability > threshold), ("hand", item.mask)):
                these, n_fragments = measure_particles(mask, item.pixel_size_A)
                found[side] += these
                fragments[side] += n_fragments
                record[f"{side}_particles"] = len(these)
        per_image.append(record)
    sizes = None
    if all(image["pixel_size_A"] for image in per_image):
        summaries = {side: size_summary(found[side], fragments[side]) for side in found}
        sizes = {
            **summaries,
            **relative_errors(summaries["network"], summaries["hand"]),
            "diameters_nm": {
                side: [p.diameter_nm for p in found[side] if not p.touches_border] for side in found
            },
        }
    return {
        "real_set": name,
        "model": trained.name,
        "seed": trained.seed,
        "model_dir": str(model_dir),
        "training_dataset": trained.dataset,
        "training_pixel_size_A": training_pixel_size_A,
        "training_nominal_pixel_size_A": trained.nominal_pixel_size_A,
        "threshold": threshold,
        "n_images": len(per_image),
        **metrics_from_counts(pooled),
        "mean_image_f1": float(np.mean([image["f1"] for image in per_image])),
        "warnings": warnings,
        "particles": sizes,  # None without pixel sizes
        "per_image": per_image,
    }


__all__ = [
    "RealImage",
    "read_real_set",
    "read_hdf5_set",
    "read_pairs_set",
    "predict_real_image",
    "score_real_set",
]
