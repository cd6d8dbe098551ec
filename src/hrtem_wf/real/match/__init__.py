"""`hrtem-wf match`: estimate from real micrographs what a simulation must reproduce (pixel
size, defocus, MTF, dose, particle sizes, density, contrast), suggest config blocks drawn around
those estimates, and measure how far simulated micrographs are from the real ones.

    spectra.py    windowed power spectra and their radial averages
    estimate.py   the estimators, one function each (units in the names, assumptions in the
                  docstrings)
    measure.py    the estimators over a set of micrographs, pooled (match.json) and its figure
    suggest.py    structures / simulations / images blocks around the estimates (YAML)
    realism.py    the same statistics of simulated and real micrographs, one gap each
    files.py      from files to files: micrographs in; match.json, suggested.yaml, config.yaml,
                  realism.json out (`match_files`)
"""

from .measure import Micrograph, match_micrographs, plot_match, read_micrographs
from .realism import (
    image_statistics,
    plot_realism,
    read_simulated,
    realism_report,
    write_realism,
)
from .suggest import blocks_yaml, suggest_blocks, suggested_config

__all__ = [
    "Micrograph",
    "blocks_yaml",
    "image_statistics",
    "match_micrographs",
    "plot_match",
    "plot_realism",
    "read_micrographs",
    "read_simulated",
    "realism_report",
    "suggest_blocks",
    "suggested_config",
    "write_realism",
]
