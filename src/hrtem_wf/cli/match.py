"""`hrtem-wf match`: estimates from real micrographs, suggested config blocks and the realism
gaps of simulated micrographs (hrtem_wf.real.match.files does the work)."""

from __future__ import annotations

from .commands import Command, arg
from .predict import MEDIAN_PX

MATCH = Command(
    "match",
    "hrtem_wf.real.match.files:match_files",
    "estimate pixel size, defocus, MTF, dose, particles from real micrographs; "
    "suggest config blocks; compare simulated micrographs with them",
    (
        arg(
            "micrographs", nargs="+", metavar="MICROGRAPH", help="files or folders (.dm3 ... .png)"
        ),
        arg("--masks", help="folder with a <stem>.png particle mask per micrograph"),
        arg("--voltage-kV", type=float, default=200.0, help="beam energy (default: 200)"),
        arg("--pixel-size-A", type=float, help="default: the files', else lattice fringes"),
        arg("--material", default="Au", help="FCC element of the particles (default: Au)"),
        arg("--lattice-constant-A", type=float, help="default: ASE's for --material"),
        arg("--cs-mm", type=float, default=1.0, help="spherical aberration (default: 1)"),
        arg("--fit-cs", action="store_true", help="fit Cs too (0-3 mm)"),
        arg(
            "--counts",
            action="store_true",
            help="gray values are electron counts (gain 1, no offset): the dose is the mean count",
        ),
        arg(
            "--mtf",
            type=float,
            nargs=3,
            metavar=("C1", "C2", "C3"),
            help="the camera's MTF if known",
        ),
        arg(
            "--cell-A",
            type=float,
            nargs=2,
            help="cell of the suggested structures (default: 102.4 A)",
        ),
        arg("--name", default="matched", help="name of the suggested blocks"),
        arg(
            "--fit-contrast",
            action="store_true",
            help="with --masks: the workflow's calibration also fits the dose to the real "
            "particles' depth (off by default: on the 20 real micrographs it lowered the F1, "
            "docs/results.md)",
        ),
        arg("--simulated", help="images store or dataset (Zarr) to compare with"),
        arg("--simulated-pixel-size-A", type=float, help="default: from the store"),
        arg("--max-simulated", type=int, default=32, help="simulated images read (32)"),
        arg(
            "--median-px",
            type=int,
            default=MEDIAN_PX,
            help=f"median filter of the real micrographs before the histogram "
            f"(default: {MEDIAN_PX})",
        ),
        arg(
            "--out",
            required=True,
            help="writes match.json, match.png, suggested.yaml, config.yaml (+ realism.json/png)",
        ),
    ),
)
