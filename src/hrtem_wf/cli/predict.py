"""`hrtem-wf predict`: particle maps, atomic columns or exit waves of experimental micrographs
with a trained model (hrtem_wf.real.predict does the work)."""

from __future__ import annotations

from hrtem_wf.config import schema_default
from hrtem_wf.errors import InputError

from .commands import Command, arg

MEDIAN_PX = schema_default("real_sets", "median_filter_px")  # the study's preprocessing


def predict(*, threshold: float, **options) -> None:
    """`predict_files` with the options (each micrograph on its own; a summary of the failed
    ones ends the call with a non-zero exit)."""
    from hrtem_wf.real.predict import predict_files

    if not 0.0 <= threshold <= 1.0:
        raise InputError(f"--threshold must be in [0, 1], not {threshold}")
    predict_files(threshold=threshold, **options)


PREDICT = Command(
    "predict",
    "hrtem_wf.cli.predict:predict",
    "particle probability and mask (or atomic columns, or the exit wave) of experimental "
    "micrographs",
    (
        arg("model_dir", metavar="MODEL_DIR", help="a trained model: metadata.json and weights.pt"),
        arg(
            "micrographs",
            nargs="+",
            metavar="MICROGRAPH",
            help=".dm3 .dm4 .ser .emd .tif .tiff .npy .png; a model of focal series of C "
            "images takes them C at a time, in the order of its defocus offsets",
        ),
        arg(
            "--out",
            required=True,
            help="writes <stem>_probability.tif, <stem>_mask.png, <stem>_particles.csv and, "
            "pooled, particles.csv, particle_sizes.json and .png here; a columns model "
            "<stem>_columns.csv and .png, an exit-wave model "
            "<stem>_exit_wave.npy (complex64) and .png",
        ),
        arg("--tile-px", type=int, default=512, help="tile size (default: 512)"),
        arg(
            "--overlap-px",
            type=int,
            default=256,
            help="overlap of neighbouring tiles (default: 256)",
        ),
        arg(
            "--median-px",
            type=int,
            default=MEDIAN_PX,
            help=f"median filter before scaling to [0, 1]; 0 for none (default: {MEDIAN_PX})",
        ),
        arg(
            "--threshold",
            type=float,
            default=0.5,
            help="mask = probability > threshold (default: 0.5)",
        ),
        arg("--device", choices=("cpu", "gpu"), default="cpu"),
        arg("--batch-size", type=int, default=4, help="tiles per forward pass (default: 4)"),
        arg(
            "--analyze",
            action="store_true",
            help="also each particle's Fourier peaks and zone-axis flag (Larsen et al.'s "
            "brightest / dimmest peak-pair ratio): <stem>_lattice.csv; needs the pixel size "
            "(the file's, else the model's nominal one)",
        ),
    ),
)
