"""A PNG of a few structures of a set: top view (x, y: what the beam sees) and side view (x, z).

Outside `structures/` on purpose: a change to the plot must not change the structures code
version (which reruns every structure).
"""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger("hrtem_wf")

COLOURS = {"Au": "#d4a017", "C": "#9e9e9e", "Cd": "#2a7ab0", "Se": "#c0392b"}


def write_preview(structures, path: str, title: str = "") -> None:
    """structures: ASE Atoms with arrays['particle']; one column per structure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(structures)
    fig, axes = plt.subplots(
        2, n, figsize=(3.2 * n, 5.6), squeeze=False, gridspec_kw={"height_ratios": [1.0, 0.6]}
    )
    for column, atoms in enumerate(structures):
        cell = np.diag(atoms.cell.array)
        particle = atoms.arrays["particle"].astype(bool)
        symbols = np.array(atoms.get_chemical_symbols())
        for row, (axis_a, axis_b) in enumerate([(0, 1), (0, 2)]):
            ax = axes[row, column]
            for mask, size in ((~particle, 0.4), (particle, 3.0)):  # substrate under particles
                for element in sorted(set(symbols[mask])):
                    chosen = mask & (symbols == element)
                    ax.scatter(
                        atoms.positions[chosen, axis_a],
                        atoms.positions[chosen, axis_b],
                        s=size,
                        c=COLOURS.get(element, "#444444"),
                        linewidths=0,
                        label=element if row == 0 and size > 1 else None,
                    )
            ax.set_xlim(0, cell[axis_a])
            ax.set_ylim(0, cell[axis_b])
            ax.set_aspect("equal")
            ax.set_xlabel("x (A)")
            ax.set_ylabel("y (A)" if row == 0 else "z (A), beam")
        info = atoms.info
        axes[0, column].set_title(
            f"{info.get('structure_id', '')}\n{info.get('n_particles', 1)} particle(s), "
            f"R = {info['radius_A']:.1f} A, {info.get('defect_kinds', 'none')}"
            + (
                f", GB {info['grain_boundary']}"
                if info.get("grain_boundary", "none") != "none"
                else ""
            ),
            fontsize=7,
        )
    axes[0, 0].legend(loc="upper right", fontsize=6, markerscale=4)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def preview_files(structures: list[str], output: str, title: str = "") -> None:
    """The preview (`write_preview`) of the extxyz files `structures`, into the PNG `output`."""
    import ase.io

    atoms = [ase.io.read(path, format="extxyz") for path in structures]
    write_preview(atoms, output, title=title)
    log.info("preview of %d structures: %s", len(atoms), output)
