"""Training and inference benchmark: is the data pipeline the bottleneck, and what does an epoch
and an inference cost here, next to the study's Table 2?

    python benchmarks/training.py [--images 16] [--size 512] [--device cpu|gpu]

On a dataset in the workflow's format (`hrtem_wf.models.synthetic`: Poisson micrographs of
fringed disks, the study's 512 x 512 crops) and the study's network (UNet, ResNet18, 3 stages,
batch 16, D4 augmentation), it measures in the same run:
  - training throughput: the training pass as `train_model` runs it (Zarr/numpy reads, per-image
    [0, 1] scaling, D4, batching, forward, backward, Adam step), in images per second;
  - the pure model step on the very same batches, already in memory as tensors (`--only-step`:
    that alone, with the CPU time spent in the kernel and the page faults; `--no-huge-pages`:
    without `hrtem_wf.memory.huge_pages_for_tensors`, to see what it saves);
  - the whole epoch as `train_model` runs it (training pass + exact BatchNorm statistics +
    validation), as seconds per 512 images per epoch (the study: 15 s on a Quadro P5000);
  - inference per 512 x 512 patch (the study: 0.014 s) and per 4096 x 4096 micrograph, tiled
    as `hrtem-wf predict` does it;
  - training images drawn on the fly (a models block's `on_the_fly`): the images per second its
    loader draws alone (`--fly-workers` processes; 512 x 512 exit waves of 2 phonons at 0.2 A,
    the conventional recipe's images block with every effect on, `FLY_EFFECTS`, 256 x 256
    crops), the pure model step on 256 x 256 batches, their ratio (>= 1: drawing keeps up with
    the model), and the training pass with both.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from hrtem_wf.config import validate_block
from hrtem_wf.memory import HUGE_PAGES, huge_pages_for_tensors
from hrtem_wf.models.data import SegmentationDataset, read_split
from hrtem_wf.models.loss import segmentation_loss
from hrtem_wf.models.model import build_model, resolve_device
from hrtem_wf.models.synthetic import write_synthetic_dataset
from hrtem_wf.models.train import _train_one_epoch, evaluate_loss, recalibrate_batchnorm
from hrtem_wf.real.inference import predict_micrograph

ROOT = Path(__file__).resolve().parents[1]

STUDY_BLOCK = validate_block(
    "models",
    {
        "dataset": "synthetic",
        "seeds": [0],
        "encoder": "resnet18",
        "encoder_depth": 3,
        "decoder_channels": [256, 128, 64],
        "epochs": 1,
        "batch_size": 16,
        "learning_rate": 1e-3,
        "lr_decay_per_epoch": 0.8,
        "augment_d4": True,
        "device": "cpu",
    },
)
#: Every image effect on, for the on-the-fly figures: the conventional recipe's images block
#: (Cs, quasi-coherent focal spread, plasmons, blur, dose, MTF, median filter, footprint labels)
#: plus partial spatial coherence, a drawn pixel size and detector blur.
FLY_EFFECTS = {
    "illumination_semiangle_mrad": {"distribution": "uniform", "low": 0.1, "high": 0.5},
    "detector": {
        "pixel_size_A": {"distribution": "uniform", "low": 0.36, "high": 0.4},
        "mtf": {"c1": 0.1, "c2": 0.5, "c3": 2.5},
        "blur_sigma_px": {"distribution": "uniform", "low": 0.0, "high": 0.5},
        "median_filter_px": 3,
    },
    "crop_px": [256, 256],
}
STUDY_SECONDS_PER_512_IMAGES_EPOCH = 15.0
STUDY_SECONDS_PER_PATCH = 0.014


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def pure_steps(model, optimizer, batches, device) -> float:
    """Seconds for forward + backward + step over batches already on the device."""
    model.train()
    _synchronize(device)
    start = time.perf_counter()
    for images, masks in batches:
        optimizer.zero_grad(set_to_none=True)
        loss = segmentation_loss(model(images), masks, STUDY_BLOCK["loss"])
        loss.backward()
        optimizer.step()
    _synchronize(device)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=16, help="training images (default 16)")
    parser.add_argument("--size", type=int, default=512, help="image size in px (the study's 512)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "gpu"])
    parser.add_argument("--repeats", type=int, default=2, help="timed passes, best kept")
    parser.add_argument(
        "--fly-images", type=int, default=64, help="on-the-fly images per epoch (default 64)"
    )
    parser.add_argument(
        "--fly-structures", type=int, default=8, help="exit-wave stores drawn from (default 8)"
    )
    parser.add_argument(
        "--fly-workers", type=int, default=1, help="on-the-fly loader processes (default 1)"
    )
    parser.add_argument(
        "--only-on-the-fly", action="store_true", help="only the on-the-fly figures"
    )
    parser.add_argument(
        "--only-step",
        action="store_true",
        help="only the pure model step, with its CPU time in the kernel and its page faults",
    )
    parser.add_argument(
        "--no-huge-pages",
        action="store_true",
        help="without hrtem_wf.memory.huge_pages_for_tensors (to measure what it saves)",
    )
    args = parser.parse_args()
    if args.no_huge_pages:
        os.environ[HUGE_PAGES] = "0"
    huge_pages_for_tensors()  # as `hrtem-wf models` does; before torch's first tensor
    device = resolve_device(args.device)
    torch.manual_seed(0)
    batch_size = STUDY_BLOCK["batch_size"]
    print(
        f"device {device}, torch threads {torch.get_num_threads()}, {os.cpu_count()} cores; "
        f"{args.images} images of {args.size}^2 px, batch {batch_size}"
    )

    with tempfile.TemporaryDirectory() as tmp:
        if args.only_on_the_fly:
            on_the_fly_figures(Path(tmp), args, device)
            return
        # 2/3 train, 1/6 validation, 1/6 test: `--images` training images
        dataset = write_synthetic_dataset(Path(tmp), n_images=args.images * 3 // 2, size=args.size)
        train, validation = read_split(*dataset, "train"), read_split(*dataset, "validation")
        loader = torch.utils.data.DataLoader(
            SegmentationDataset(train, augment_d4=True, rng=np.random.default_rng(0)),
            batch_size=batch_size,
            shuffle=True,
            generator=torch.Generator().manual_seed(0),
        )
        statistics = torch.utils.data.DataLoader(SegmentationDataset(train), batch_size=batch_size)
        validation_loader = torch.utils.data.DataLoader(
            SegmentationDataset(validation), batch_size=batch_size
        )
        model = build_model(STUDY_BLOCK).to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=STUDY_BLOCK["learning_rate"])
        batches = [(images.to(device), masks.to(device)) for images, masks in loader]
        pure_steps(model, optimizer, batches[:1], device)  # warm-up (allocator, kernels)
        if args.only_step:
            before = resource.getrusage(resource.RUSAGE_SELF)
            seconds = min(
                pure_steps(model, optimizer, batches, device) for _ in range(args.repeats)
            )
            after = resource.getrusage(resource.RUSAGE_SELF)
            user, system = after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime
            pages = "4 KiB pages" if args.no_huge_pages else "huge pages"
            print(
                f"pure model step ({pages}): {len(train) / seconds:.3f} images/s; over "
                f"{args.repeats} passes: CPU {user:.1f} s user, {system:.1f} s system "
                f"({100 * system / (user + system):.0f} %), "
                f"{after.ru_minflt - before.ru_minflt} page faults"
            )
            return

        pipeline, pure = [], []
        for _ in range(args.repeats):
            _synchronize(device)
            start = time.perf_counter()
            _train_one_epoch(model, loader, optimizer, device, STUDY_BLOCK["loss"])
            _synchronize(device)
            pipeline.append(time.perf_counter() - start)
            pure.append(pure_steps(model, optimizer, batches, device))
        start = time.perf_counter()
        _train_one_epoch(model, loader, optimizer, device, STUDY_BLOCK["loss"])
        recalibrate_batchnorm(model, statistics, device)
        evaluate_loss(model, validation_loader, device, STUDY_BLOCK["loss"])
        _synchronize(device)
        epoch = time.perf_counter() - start

        n = len(train)
        pipeline_rate, pure_rate = n / min(pipeline), n / min(pure)
        print(
            f"training pass (data pipeline + step): {pipeline_rate:.2f} images/s "
            f"({min(pipeline):.2f} s for {n} images)"
        )
        print(f"pure model step, same batches:        {pure_rate:.2f} images/s ({min(pure):.2f} s)")
        print(
            f"ratio: {pipeline_rate / pure_rate:.3f} "
            "(>= 0.9: the data pipeline is not the bottleneck)"
        )
        print(
            f"whole epoch (train + BatchNorm statistics + validation of {len(validation)}): "
            f"{epoch:.2f} s = {epoch * 512 / n:.1f} s per 512 training images per epoch "
            f"(study: {STUDY_SECONDS_PER_512_IMAGES_EPOCH} s on a Quadro P5000)"
        )

        model.eval()
        patch = torch.rand(1, 1, 512, 512, device=device)
        with torch.no_grad():
            model(patch)
            _synchronize(device)
            start = time.perf_counter()
            for _ in range(3):
                model(patch)
            _synchronize(device)
        per_patch = (time.perf_counter() - start) / 3
        print(
            f"inference: {per_patch:.3f} s per 512 x 512 patch (study: {STUDY_SECONDS_PER_PATCH} s)"
        )
        micrograph = np.random.default_rng(0).poisson(100.0, (4096, 4096)).astype(np.float32)
        start = time.perf_counter()
        predict_micrograph(model, micrograph, device=device)
        print(
            f"inference: {time.perf_counter() - start:.1f} s per 4096 x 4096 micrograph "
            f"(tiled as hrtem-wf predict: 512 px tiles, default overlap, Hann blend)"
        )
        on_the_fly_figures(Path(tmp), args, device)


def on_the_fly_figures(directory: Path, args, device: torch.device) -> None:
    """Images per second drawn on the fly, next to the model step on the same image size."""
    import yaml

    from hrtem_wf.io import write_arrays
    from hrtem_wf.models.on_the_fly import ExitWaveCache, OnTheFlyImages, collate_drawn

    recipe = yaml.safe_load((ROOT / "config/recipes/conventional_au.yaml").read_text())
    spec = validate_block("images", {**recipe["images"]["au_conventional_hrtem"], **FLY_EFFECTS})
    rng = np.random.default_rng(0)
    stores = []
    for index in range(args.fly_structures):  # exit waves of the recipe's size: 102.4 A at 0.2 A
        phase = rng.normal(0.0, 0.3, (2, 512, 512))
        full = np.exp(1j * phase).astype(np.complex64)
        path = directory / "simulations" / f"{index:05d}.zarr"
        write_arrays(
            path,
            {"full": full, "particle": np.exp(0.5j * (phase > 0.4)).astype(np.complex64)},
            {
                "sampling_A": [0.2, 0.2],
                "energy_eV": 200e3,
                "frozen_phonons": 2,
                "structure_id": f"b/{index:05d}",
                "structure": {"info": {"material": "Au"}},
            },
        )
        stores.append((f"b/{index:05d}", path))
    cache = ExitWaveCache(stores, spec, 4 * 1024**3)
    cache.preload()
    per_structure = max(1, args.fly_images // args.fly_structures)
    dataset = OnTheFlyImages(cache, spec, per_structure, 0, augment_d4=True)
    batch_size = STUDY_BLOCK["batch_size"]

    def loader(epoch):
        dataset.set_epoch(epoch)
        return torch.utils.data.DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=True,
            generator=torch.Generator().manual_seed(epoch),
            num_workers=args.fly_workers,
            collate_fn=collate_drawn,
        )

    start = time.perf_counter()
    batches = [(images.to(device), masks.to(device)) for images, masks, _ in loader(1)]
    drawing = time.perf_counter() - start
    model = build_model(STUDY_BLOCK).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=STUDY_BLOCK["learning_rate"])
    pure_steps(model, optimizer, batches[:1], device)  # warm-up
    pure = min(pure_steps(model, optimizer, batches, device) for _ in range(args.repeats))
    _synchronize(device)
    start = time.perf_counter()
    _train_one_epoch(model, loader(2), optimizer, device, STUDY_BLOCK["loss"])
    _synchronize(device)
    both = time.perf_counter() - start

    n = len(dataset)
    draw_rate, pure_rate, both_rate = n / drawing, n / pure, n / both
    print(
        f"on the fly ({n} images of 256 x 256 px from 512 x 512 x 2-phonon exit waves, every "
        f"effect on, {args.fly_workers} loader workers):"
    )
    print(f"  drawing alone (loader, no model):   {draw_rate:.2f} images/s ({drawing:.2f} s)")
    print(f"  pure model step, 256 x 256 batches: {pure_rate:.2f} images/s ({pure:.2f} s)")
    print(
        f"  ratio drawing / model step: {draw_rate / pure_rate:.2f} "
        "(>= 1: drawing keeps up with the model)"
    )
    print(
        f"  training pass drawing on the fly:   {both_rate:.2f} images/s "
        f"({both_rate / pure_rate:.2f} x the pure step; drawing and the model share "
        f"{os.cpu_count()} cores here)"
    )


if __name__ == "__main__":
    main()
