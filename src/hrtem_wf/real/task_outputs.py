"""What `hrtem-wf predict` writes for a column or exit-wave model (Madsen 2018; Larsen 2023).

columns    <stem>_columns.csv: one row per column found in the predicted confidence maps
           (Madsen's watershed, hrtem_wf.evaluations.columns.find_columns): y_px, x_px (pixel
           (i, j) centred at (i, j)), y_A, x_A (empty without a pixel size), class (the model's
           class name), confidence (1 - the background map at the column's pixel);
           <stem>_columns.png: the micrograph with the columns marked by class.
exit_wave  <stem>_exit_wave.npy: the reconstructed exit wave, complex64 (H, W) (numpy.load);
           <stem>_exit_wave.png: its amplitude and phase beside the first micrograph.
Each file is written whole or not at all (hrtem_wf.io.atomic_path).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from hrtem_wf.io import atomic_path

COLUMN_FIELDS = ("y_px", "x_px", "y_A", "x_A", "class", "confidence")


def column_rows(maps: np.ndarray, class_names: list[str], pixel_size_A: float | None) -> list:
    """The columns found in confidence maps (C + 1, H, W) as rows of COLUMN_FIELDS."""
    from hrtem_wf.evaluations.columns import find_columns

    found = find_columns(maps)
    background = maps[-1]
    rows = []
    for (y, x), cls in zip(found.yx_px, found.classes):
        in_A = ("", "") if pixel_size_A is None else (y * pixel_size_A, x * pixel_size_A)
        at = np.clip(np.round([y, x]).astype(int), 0, np.subtract(background.shape, 1))
        confidence = 1.0 - float(background[at[0], at[1]])
        rows.append((float(y), float(x), *in_A, class_names[int(cls)], confidence))
    return rows


def write_columns(
    out_dir: Path,
    stem: str,
    image01: np.ndarray,
    maps: np.ndarray,
    class_names: list[str],
    pixel_size_A: float | None,
) -> list:
    """<stem>_columns.csv and <stem>_columns.png (module docstring); returns the rows."""
    rows = column_rows(maps, class_names, pixel_size_A)
    with atomic_path(out_dir / f"{stem}_columns.csv") as path, open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMN_FIELDS)
        writer.writerows([f"{v:.4f}" if isinstance(v, float) else v for v in row] for row in rows)
    figure, axes = _figure(1, image01.shape)
    axes[0].imshow(image01, cmap="gray")
    for index, name in enumerate(class_names):
        chosen = [row for row in rows if row[4] == name]
        if chosen:
            yx = np.array([row[:2] for row in chosen])
            axes[0].scatter(yx[:, 1], yx[:, 0], s=6, color=f"C{index}", label=name)
    if rows:
        axes[0].legend(loc="upper right", fontsize=7, markerscale=2)
    axes[0].set_title(f"{stem}: {len(rows)} columns", fontsize=8)
    _save(figure, out_dir / f"{stem}_columns.png")
    return rows


def write_exit_wave(out_dir: Path, stem: str, image01: np.ndarray, parts: np.ndarray) -> None:
    """<stem>_exit_wave.npy (complex64) and <stem>_exit_wave.png from the predicted (real,
    imaginary) parts (2, H, W)."""
    wave = (parts[0] + 1j * parts[1]).astype(np.complex64)
    with atomic_path(out_dir / f"{stem}_exit_wave.npy") as path, open(path, "wb") as handle:
        np.save(handle, wave)
    figure, axes = _figure(3, wave.shape)
    for ax, data, title, cmap in (
        (axes[0], image01, "micrograph", "gray"),
        (axes[1], np.abs(wave), "amplitude", "gray"),
        (axes[2], np.angle(wave), "phase (rad)", "twilight"),
    ):
        shown = ax.imshow(data, cmap=cmap)
        ax.set_title(title, fontsize=8)
        if ax is not axes[0]:
            figure.colorbar(shown, ax=ax, fraction=0.046)
    _save(figure, out_dir / f"{stem}_exit_wave.png")


def _figure(panels: int, shape: tuple[int, ...]):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    aspect = shape[-2] / shape[-1]
    figure, axes = plt.subplots(1, panels, figsize=(4 * panels, 4 * aspect + 0.4), squeeze=False)
    for ax in axes[0]:
        ax.set_axis_off()
    return figure, list(axes[0])


def _save(figure, final: Path) -> None:
    import matplotlib.pyplot as plt

    with atomic_path(final) as path:
        figure.savefig(path, format="png", dpi=150, bbox_inches="tight")
    plt.close(figure)
