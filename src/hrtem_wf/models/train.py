"""The training loop: plain PyTorch, deterministic given the seed; keeps the weights of the epoch
with the lowest validation loss (the study's), or of the best validation F1, or the last."""

from __future__ import annotations

import csv
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from hrtem_wf.io import atomic_path, write_json

from .data import SegmentationDataset, read_split
from .loss import task_loss, task_output
from .model import build_model, check_image_shape, count_parameters, resolve_device

#: One row per epoch; images_seen: the training images passed through the network so far
#: (fresh draws with on_the_fly, repeats of the dataset's otherwise), the learning curves' axis.
HISTORY_COLUMNS = (
    "epoch",
    "images_seen",
    "train_loss",
    "train_f1",
    "val_loss",
    "val_f1",
    "lr",
    "seconds",
)


class PixelCounts:
    """Running particle-pixel counts (true/false positives, false negatives) for a hard F1; a
    regression task (columns, exit_wave) counts nothing and its F1 is NaN."""

    def __init__(self, task: str = "segmentation") -> None:
        self.true_positive = self.false_positive = self.false_negative = 0
        self.task = task

    def add(self, logits: torch.Tensor, particle_mask: torch.Tensor) -> None:
        if self.task != "segmentation":
            return
        # Class 1 wins the 2-class argmax exactly when its softmax probability exceeds 0.5.
        predicted = logits.argmax(dim=1) == 1
        labelled = particle_mask == 1
        self.true_positive += int((predicted & labelled).sum())
        self.false_positive += int((predicted & ~labelled).sum())
        self.false_negative += int((~predicted & labelled).sum())

    def f1(self) -> float:
        if self.task != "segmentation":
            return float("nan")
        errors = self.false_positive + self.false_negative
        if self.true_positive + errors == 0:
            return 1.0  # nothing to find and nothing found
        return self.true_positive / (self.true_positive + 0.5 * errors)


class ColumnCounts:
    """Running column-detection counts of a columns model on a split, in the split's order:
    Madsen's watershed on the predicted maps (hrtem_wf.evaluations.columns, as the evaluation
    finds them), matched to the split's true columns within the targets' match_radius_A; its F1
    is the detection F1 (the validation F1 of a columns model's history)."""

    def __init__(self, split) -> None:
        from hrtem_wf.evaluations.columns import ColumnCounts as Counts

        self.split, self.seen, self.pooled = split, 0, Counts()
        self.radius_A = float(split.attrs["targets"]["columns"]["match_radius_A"])

    def add(self, logits: torch.Tensor, _targets: torch.Tensor) -> None:
        from hrtem_wf.evaluations.columns import column_counts, find_columns

        maps = task_output("columns", logits.float()).cpu().numpy()
        positions, table = self.split.column_positions, self.split.table
        for image_maps in maps:
            row = int(table["row"].iloc[self.seen])
            true = positions[positions[:, 0] == row]
            pixel_size_A = float(table["image.pixel_size_A"].iloc[self.seen])
            self.pooled = self.pooled + column_counts(
                find_columns(image_maps),
                true[:, 1:3],
                true[:, 3].astype(int),
                self.radius_A / pixel_size_A,
                image_maps.shape[0] - 1,
            )
            self.seen += 1

    def f1(self) -> float:
        from hrtem_wf.evaluations.columns import column_metrics

        return float(column_metrics(self.pooled, 1.0)["f1"])


#: Which epoch's weights a run keeps: the study's lowest validation loss, or the alternatives.
def evaluate_loss(
    model: torch.nn.Module,
    loader,
    device: torch.device,
    loss_weights: dict,
    task: str = "segmentation",
    split=None,
) -> tuple[float, float]:
    """(mean loss per image, F1) of ``model`` in eval mode over ``loader``: the pooled hard pixel
    F1 of particle masks; a columns model with its `split` (the loader's, in order): the column
    detection F1; else NaN."""
    model.eval()
    loss_sum, n_images = 0.0, 0
    counts = ColumnCounts(split) if task == "columns" and split is not None else PixelCounts(task)
    with torch.no_grad():
        for images, masks in loader:
            images, masks = images.to(device), masks.to(device)
            logits = model(images)
            loss_sum += float(task_loss(task, logits, masks, loss_weights)) * len(images)
            n_images += len(images)
            counts.add(logits, masks)
    return loss_sum / n_images, counts.f1()


def recalibrate_batchnorm(model: torch.nn.Module, loader, device: torch.device) -> None:
    """Replace BatchNorm running statistics by their exact average over ``loader`` (precise BN).

    With few batches per epoch and fast-moving weights, the momentum-averaged statistics lag
    the batch statistics the network trains with, and the model collapses in eval mode (seen:
    validation F1 0 at training F1 0.9 on the demo set); exact statistics remove that lag."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average over the whole pass
    model.train()
    with torch.no_grad():
        for images, _ in loader:
            model(images.to(device))
    for norm, momentum in zip(norms, momenta):
        norm.momentum = momentum


def _train_one_epoch(
    model, loader, optimizer, device, loss_weights, records: list | None = None, task="segmentation"
) -> tuple[float, float]:
    """(mean loss, pooled hard F1) of one pass over `loader`; the records of drawn images (a
    loader's third item) are appended to `records`."""
    model.train()
    loss_sum, n_images, counts = 0.0, 0, PixelCounts(task)
    for images, masks, *drawn in loader:
        if records is not None and drawn:
            records.extend(drawn[0])
        images, masks = images.to(device), masks.to(device)
        optimizer.zero_grad(set_to_none=True)
        logits = model(images)
        loss = task_loss(task, logits, masks, loss_weights)
        loss.backward()
        optimizer.step()
        loss_sum += float(loss.detach()) * len(images)
        n_images += len(images)
        counts.add(logits.detach(), masks)
    return loss_sum / n_images, counts.f1()


def _pixel_size_A(table) -> float | list[float] | None:
    """The training images' pixel size (A), [min, max] when it varies, None when not recorded."""
    if "image.pixel_size_A" not in table or table["image.pixel_size_A"].isna().all():
        return None
    low, high = float(table["image.pixel_size_A"].min()), float(table["image.pixel_size_A"].max())
    return low if low == high else [low, high]


def _nominal_pixel_size_A(table) -> float | None:
    """The pixel size (A) micrographs are resampled to for this model: the median over the
    training images of their image block's nominal pixel size (the median of its
    detector.pixel_size_A, hrtem_wf.sampling.nominal): one block, that block's nominal. Tables
    written before images recorded it give the median of the recorded pixel sizes when they are
    all one, else None; None when none are recorded."""
    column = "image.nominal_pixel_size_A"
    if column in table and not table[column].isna().any():
        return float(np.median(table[column].to_numpy(dtype=float)))
    recorded = _pixel_size_A(table)
    return recorded if isinstance(recorded, float) else None


def _model_name(block: dict, out_dir: Path) -> str:
    """The block's name: given as block['name'], else read from results/models/<N>/seed<k>."""
    if block.get("name"):
        return str(block["name"])
    out_dir = out_dir.resolve()
    return out_dir.parent.name if out_dir.name.startswith("seed") else out_dir.name


class DrawnTraining:
    """The training images of an `on_the_fly` block: the loaders of each epoch's fresh draws and
    of the fixed BatchNorm-statistics draw, and what was drawn (hrtem_wf.models.on_the_fly)."""

    def __init__(self, block, image_spec, simulations_dir, train_split, seed, log):
        from .on_the_fly import (
            ExitWaveCache,
            OnTheFlyImages,
            statistics_images,
            training_stores,
        )

        fly = block["on_the_fly"]
        if image_spec is None or simulations_dir is None:
            raise ValueError(
                "an on_the_fly models block needs the images block's spec and the folder of "
                "its simulation stores"
            )
        # CUDA does not survive the loader's fork: images drawn on the GPU are drawn in-process.
        self.image_spec = image_spec
        self.workers = 0 if image_spec["device"] == "gpu" else int(fly["workers"])
        per_structure = fly["images_per_structure"] or image_spec["draws_per_structure"]
        cache = ExitWaveCache(
            training_stores(train_split.table, simulations_dir),
            image_spec,
            float(fly["memory_GB"]) * 1024**3,
            block.get("task", "segmentation"),
        )
        self.kept = cache.preload()
        self.dataset = OnTheFlyImages(
            cache,
            image_spec,
            per_structure,
            seed,
            augment_d4=bool(block["augment_d4"]),
            augment_photometric=block["augment_photometric"],
        )
        self.statistics = statistics_images(self.dataset, self.workers)
        self.records: list[dict] = []
        log(
            f"drawing {len(self.dataset)} training images per epoch on the fly "
            f"({per_structure} per structure of {len(cache)}, {self.kept} kept in memory, "
            f"{self.workers} loader workers, images block {fly['images']})"
        )

    def loader(self, epoch: int, batch_size: int, generator):
        self.dataset.set_epoch(epoch)
        from .on_the_fly import collate_drawn

        return torch.utils.data.DataLoader(
            self.dataset,
            batch_size=batch_size,
            shuffle=True,
            generator=generator,
            num_workers=self.workers,
            collate_fn=collate_drawn,
        )

    def metadata(self, block, split_table) -> tuple[dict, object]:
        from hrtem_wf.datasets.curate import distributions

        from .on_the_fly import drawn_table

        table = drawn_table(self.records, split_table)
        summary = {
            "images": block["on_the_fly"]["images"],
            "image_spec": self.image_spec,
            "images_per_structure": self.dataset.images_per_structure,
            "images_per_epoch": len(self.dataset),
            "structures": len(self.dataset.cache),
            "structures_in_memory": self.kept,
            "statistics_images": len(self.statistics),
            "drawn_images": len(table),
            "distributions": distributions(table),
            "sample": self.records[:8],  # as drawn: None where an effect is off
        }
        return summary, table


def train_model(
    block: dict,
    dataset_zarr: str,
    dataset_parquet: str,
    seed: int,
    out_dir: str,
    log: Callable[[str], None] = print,
    image_spec: dict | None = None,
    simulations_dir: str | None = None,
    provenance: dict | None = None,
) -> dict:
    """Train one network of a ``models.<N>`` block with one seed; write weights, history, metadata.

    Writes ``out_dir/weights.pt`` (state_dict of the epoch with the lowest validation loss),
    ``out_dir/history.csv`` (one row per epoch) and, last, ``out_dir/metadata.json``; a block
    with `on_the_fly` draws its training images from the simulation stores in
    `simulations_dir` with the images block `image_spec`, and writes ``out_dir/drawn.parquet``
    (one row per drawn image). `provenance`: what the metadata records of the code that made
    it (the models stage's, hrtem_wf.codeversion.provenance). Returns the metadata as a dict.
    """
    out_dir = Path(out_dir)
    device = resolve_device(str(block["device"]))
    epochs, batch_size = int(block["epochs"]), int(block["batch_size"])
    checkpoint = block["checkpoint"]
    loss_weights = {**block["loss"], "column_loss": block.get("column_loss", "mse")}
    task = block.get("task", "segmentation")

    train_split = read_split(dataset_zarr, dataset_parquet, "train", task)
    validation_split = read_split(dataset_zarr, dataset_parquet, "validation", task)
    if len(train_split) == 0 or len(validation_split) == 0:
        raise ValueError(
            f"{dataset_parquet} needs images in both the 'train' ({len(train_split)}) and "
            f"'validation' ({len(validation_split)}) splits"
        )
    check_image_shape(train_split.image_shape, block["encoder_depth"], block["architecture"])
    drawn = None
    if block.get("on_the_fly") is not None:
        drawn = DrawnTraining(block, image_spec, simulations_dir, train_split, seed, log)

    deterministic_before = torch.are_deterministic_algorithms_enabled()
    warn_only_before = torch.is_deterministic_algorithms_warn_only_enabled()
    cudnn_benchmark_before = torch.backends.cudnn.benchmark
    try:
        # CPU kernels are deterministic; some CUDA backward kernels are not, so only warn there.
        torch.use_deterministic_algorithms(True, warn_only=device.type == "cuda")
        torch.backends.cudnn.benchmark = False
        if device.type == "cuda":
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.manual_seed(seed)  # model initialization
        augmentation_rng = np.random.default_rng(seed)
        shuffle_generator = torch.Generator().manual_seed(seed)

        train_loader = torch.utils.data.DataLoader(
            SegmentationDataset(
                train_split,
                augment_d4=bool(block["augment_d4"]),
                rng=augmentation_rng,
                augment_photometric=block["augment_photometric"],
            ),
            batch_size=batch_size,
            shuffle=True,
            generator=shuffle_generator,
            num_workers=0,
        )
        # The training images without augmentation, for the BatchNorm statistics.
        statistics_loader = torch.utils.data.DataLoader(
            SegmentationDataset(train_split) if drawn is None else drawn.statistics,
            batch_size=batch_size,
            shuffle=False,
            num_workers=0,
        )
        validation_loader = torch.utils.data.DataLoader(
            SegmentationDataset(validation_split),
            batch_size=batch_size,
            shuffle=False,
            num_workers=0,
        )

        channels = train_split.in_channels, train_split.out_channels
        model = build_model(block, *channels).to(device)
        optimizer = torch.optim.Adam(
            model.parameters(),
            lr=float(block["learning_rate"]),
            weight_decay=float(block.get("weight_decay", 0.0)),
        )
        scheduler = torch.optim.lr_scheduler.ExponentialLR(
            optimizer, gamma=float(block["lr_decay_per_epoch"])
        )
        n_parameters = count_parameters(model)

        model_name = _model_name(block, out_dir)
        n_train = len(train_split) if drawn is None else len(drawn.dataset)
        log(
            f"training {model_name} seed {seed} on {device}: {n_train} train / "
            f"{len(validation_split)} validation images of {train_split.image_shape[0]} x "
            f"{train_split.image_shape[1]} px, {n_parameters} parameters, {epochs} epochs"
        )
        history: list[dict] = []
        best_state, best_epoch, best_score = None, 0, float("inf")
        start = time.perf_counter()
        for epoch in range(1, epochs + 1):
            epoch_start = time.perf_counter()
            lr = optimizer.param_groups[0]["lr"]
            if drawn is not None:  # a fresh draw of every training image
                train_loader = drawn.loader(epoch, batch_size, shuffle_generator)
            train_loss, train_f1 = _train_one_epoch(
                model,
                train_loader,
                optimizer,
                device,
                loss_weights,
                None if drawn is None else drawn.records,
                task,
            )
            recalibrate_batchnorm(model, statistics_loader, device)
            val_loss, val_f1 = evaluate_loss(
                model, validation_loader, device, loss_weights, task, validation_split
            )
            scheduler.step()
            seconds = time.perf_counter() - epoch_start
            history.append(
                dict(
                    epoch=epoch,
                    images_seen=epoch * n_train,
                    train_loss=train_loss,
                    train_f1=train_f1,
                    val_loss=val_loss,
                    val_f1=val_f1,
                    lr=lr,
                    seconds=seconds,
                )
            )
            score = {"best_val_loss": val_loss, "best_val_f1": -val_f1, "last": -epoch}[checkpoint]
            improved = score < best_score  # NaN never improves
            if improved:
                best_epoch, best_score = epoch, score
                best_state = {
                    k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()
                }
            log(
                f"epoch {epoch}/{epochs} train_loss {train_loss:.4f} train_f1 {train_f1:.4f} "
                f"val_loss {val_loss:.4f} val_f1 {val_f1:.4f} lr {lr:.3g} {seconds:.1f} s"
                + (" (best)" if improved else "")
            )
        n_parameters_used = sum(p.numel() for p in model.parameters() if p.grad is not None)
    finally:
        torch.use_deterministic_algorithms(deterministic_before, warn_only=warn_only_before)
        torch.backends.cudnn.benchmark = cudnn_benchmark_before

    if best_state is None:  # every validation loss was NaN
        raise RuntimeError(f"training {model_name} seed {seed} diverged: validation loss is NaN")

    out_dir.mkdir(parents=True, exist_ok=True)
    # metadata.json is written last: a killed job leaves no complete-looking set of files.
    with atomic_path(out_dir / "weights.pt") as path:
        torch.save(best_state, path)
    with atomic_path(out_dir / "history.csv") as path, open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=HISTORY_COLUMNS)
        writer.writeheader()
        writer.writerows(history)

    training_table, on_the_fly = train_split.table, None
    if drawn is not None:
        on_the_fly, training_table = drawn.metadata(block, train_split.table)
        with atomic_path(out_dir / "drawn.parquet") as path:
            training_table.to_parquet(path, index=False)

    best = history[best_epoch - 1]
    metadata = {
        "model": model_name,
        "dataset": block.get("dataset"),
        "block": block,
        "seed": int(seed),
        "dataset_zarr": str(dataset_zarr),
        "dataset_parquet": str(dataset_parquet),
        "image_shape": list(train_split.image_shape),
        "task": task,
        "in_channels": channels[0],  # images per input (a focal series' length)
        "out_channels": channels[1],
        # what the targets were made with (column classes and sigma, the exit wave's low pass)
        "targets": (train_split.attrs or {}).get("targets", {}),
        "focal_series": (train_split.attrs or {}).get("focal_series"),
        # what `hrtem-wf predict` and the real-set scores compare micrographs against (the
        # range of the training images' pixel sizes), and resample them to (the nominal one)
        "pixel_size_A": _pixel_size_A(training_table),
        "nominal_pixel_size_A": _nominal_pixel_size_A(training_table),
        "n_train": n_train,
        # what the training images were drawn from, and a sample of what was drawn
        "on_the_fly": on_the_fly,
        "n_val": len(validation_split),
        "device": str(device),
        "epochs": epochs,
        "checkpoint": checkpoint,
        "best_epoch": best_epoch,
        "best_val_loss": best["val_loss"],
        "best_val_f1": best["val_f1"] if task in ("segmentation", "columns") else None,
        "final_train_loss": history[-1]["train_loss"],
        "seconds_training": time.perf_counter() - start,
        "parameter_count": n_parameters,
        "parameter_count_trained": n_parameters_used,  # smp keeps unused deeper encoder stages
        "provenance": provenance,
    }
    write_json(out_dir / "metadata.json", metadata)
    log(
        f"best epoch {best_epoch}: val_loss {best['val_loss']:.4f} val_f1 {best['val_f1']:.4f}; "
        f"wrote {out_dir}"
    )
    return metadata
