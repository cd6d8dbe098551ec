"""hrtem_wf: synthetic HRTEM training data and segmentation networks, as a Snakemake workflow."""

__version__ = "0.1.0"
