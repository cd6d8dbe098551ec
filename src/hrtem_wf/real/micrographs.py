"""Reading experimental micrographs and writing predictions (no torch here).

`read_micrograph` gives a 2-D float32 image and its pixel size in Angstrom (None when the file
records none) from Gatan (.dm3, .dm4), TIA (.ser), EMD (.emd: Velox and NCEM), TIFF (.tif,
.tiff), NumPy (.npy) and PNG (.png) files. Files holding a stack or several signals give their
first 2-D image, with a logging warning.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

log = logging.getLogger("hrtem_wf")

#: File name extensions read_micrograph knows, lower case.
MICROGRAPH_EXTENSIONS = (".dm3", ".dm4", ".ser", ".emd", ".tif", ".tiff", ".npy", ".png")

#: Length units (lower case, spaces removed) and their size in Angstrom.
_ANGSTROM_PER_UNIT = {
    # "Å" and the Angstrom sign (U+212B) both lower-case to "å"
    "a": 1.0,
    "å": 1.0,
    "ang": 1.0,
    "angstrom": 1.0,
    "angstroms": 1.0,
    "nm": 10.0,
    "nanometer": 10.0,
    "nanometers": 10.0,
    "nanometre": 10.0,
    "nanometres": 10.0,
    "pm": 0.01,
    "picometer": 0.01,
    "picometers": 0.01,
    "um": 1e4,
    "\u00b5m": 1e4,
    "\u03bcm": 1e4,
    "micron": 1e4,
    "microns": 1e4,
    "micrometer": 1e4,
    "micrometers": 1e4,
    "micrometre": 1e4,
    "mm": 1e7,
    "cm": 1e8,
    "m": 1e10,
    "meter": 1e10,
    "meters": 1e10,
    "metre": 1e10,
}

#: Pixel sizes (Angstrom) outside this range are taken for wrong metadata, not a pixel size.
PLAUSIBLE_PIXEL_SIZE_A = (1e-4, 1e7)

#: Units of the written probability TIFFs (ImageJ metadata): nanometres.
_TIFF_UNIT = "nm"


def angstrom_per_unit(units: object) -> float | None:
    """Size of one ``units`` in Angstrom, or None when ``units`` is not a length unit."""
    if units is None:
        return None
    return _ANGSTROM_PER_UNIT.get(str(units).strip().replace(" ", "").lower())


def read_micrograph(path: str | Path) -> tuple[np.ndarray, float | None]:
    """A 2-D float32 image and its pixel size in Angstrom (None when the file has none).

    Raises ValueError for an unsupported extension or a file without a 2-D image.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in MICROGRAPH_EXTENSIONS:
        raise ValueError(
            f"{path}: unsupported micrograph format {path.suffix or '(no extension)'!r}; "
            f"read_micrograph knows {', '.join(MICROGRAPH_EXTENSIONS)}"
        )
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such micrograph file")
    if suffix == ".npy":
        return _image_2d(np.load(path, allow_pickle=False), path), None
    if suffix == ".png":
        return _read_png_image(path), None
    if suffix in (".tif", ".tiff"):
        return _read_tiff(path)
    if suffix in (".dm3", ".dm4"):
        from rsciio.digitalmicrograph import file_reader

        return _from_signals(file_reader(str(path)), path)
    if suffix == ".ser":
        from rsciio.tia import file_reader

        return _from_signals(file_reader(str(path)), path)
    ncem = _read_ncem_emd(path)  # NCEM EMD whose dims name x and y
    if ncem is not None:
        return ncem
    from rsciio.emd import file_reader  # .emd: Velox, or NCEM without x/y dim names

    try:
        # Velox: the images only; its EDS spectrum images are no micrographs, and reading them
        # needs the optional library 'sparse'. NCEM files ignore select_type.
        signals = file_reader(str(path), select_type="images")
    except Exception as error:  # noqa: BLE001 - try again reading everything
        log.info("%s: reading its images alone failed (%s); reading all signals", path, error)
        signals = file_reader(str(path))
    return _from_signals(signals, path)


#: NCEM EMD dim names (lower case) of the image's x (columns) and y (rows) axes.
_NCEM_X_NAMES = ("x", "r_x", "rx")
_NCEM_Y_NAMES = ("y", "r_y", "ry")


def _read_ncem_emd(path: Path) -> tuple[np.ndarray, float | None] | None:
    """The image of a Berkeley (NCEM) EMD file whose dims name the x and y axes, else None.

    NCEM EMD: an HDF5 group with attribute emd_group_type = 1 holds a ``data`` dataset and,
    for its axis i, a dataset ``dim{i+1}`` of coordinates with attributes ``name`` and
    ``units``. Writers differ in axis order: ncempy stores images as (y, x) and stacks as
    (n, y, x) with dims named 'y' and 'x'; rosettasciio stores the transpose, (x, y, n), also
    naming its dims. The dim names decide the orientation here. Files whose dims name no x
    and y (ncempy's emdWriter names them 'dim1', 'dim2', ...), Prismatic files (their arrays
    are not called ``data``) and Velox files return None: rosettasciio reads them as before
    (it transposes every NCEM array).
    """
    import h5py

    try:
        file = h5py.File(path, "r")
    except OSError:
        return None  # not HDF5: let rosettasciio report it
    with file:
        groups = []

        def collect(name: str, item: object) -> None:
            if isinstance(item, h5py.Group) and _ncem_axes(item) is not None:
                groups.append(item)

        file.visititems(collect)
        if not groups:
            return None
        group = groups[0]
        if len(groups) > 1:
            log.warning(
                "%s: holds %d NCEM EMD data groups; using %r",
                path,
                len(groups),
                group.name,
            )
        dataset = group["data"]
        axes = _ncem_axes(group)
        x_axis = next(i for i, axis in enumerate(axes) if axis["name"].lower() in _NCEM_X_NAMES)
        y_axis = next(i for i, axis in enumerate(axes) if axis["name"].lower() in _NCEM_Y_NAMES)
        if dataset.ndim > 2:
            log.warning(
                "%s: %r has shape %s; using its first 2-D image (axes %s)",
                path,
                group.name,
                dataset.shape,
                [axes[y_axis]["name"], axes[x_axis]["name"]],
            )
        if min(dataset.shape) < 1:
            raise ValueError(f"{path}: {group.name!r} holds an empty array {dataset.shape}")
        index = tuple(slice(None) if i in (x_axis, y_axis) else 0 for i in range(dataset.ndim))
        data = _real_gray(np.asarray(dataset[index]), path)
    if x_axis < y_axis:  # stored x first: rows must be y
        data = data.T
    pixel_size = _pixel_size_from_axes([axes[y_axis], axes[x_axis]], path)
    return np.ascontiguousarray(data, dtype=np.float32), pixel_size


def _ncem_axes(group: object) -> list[dict] | None:
    """Name, units and scale of each axis of an NCEM EMD data group that names an x and a y
    dim; None for any other group."""
    import h5py

    if _attribute_text(group.attrs.get("emd_group_type")) != "1":
        return None
    dataset = group.get("data")
    if not isinstance(dataset, h5py.Dataset) or dataset.ndim < 2:
        return None
    axes = []
    for number in range(1, dataset.ndim + 1):
        dim = group.get(f"dim{number}")
        if not isinstance(dim, h5py.Dataset):
            return None
        axes.append(
            {
                "name": _attribute_text(dim.attrs.get("name")).strip(),
                "units": _ncem_units(dim.attrs.get("units")),
                "scale": _coordinate_step(dim),
            }
        )
    names = [axis["name"].lower() for axis in axes]
    if not any(n in _NCEM_X_NAMES for n in names) or not any(n in _NCEM_Y_NAMES for n in names):
        return None
    return axes


def _attribute_text(value: object) -> str:
    """An HDF5 attribute (str, bytes, a number or a one-element array of those) as text."""
    if isinstance(value, np.ndarray):
        value = value.ravel()[0] if value.size else ""
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    return "" if value is None else str(value)


def _ncem_units(units: object) -> str:
    """NCEM EMD units without their brackets and underscores: '[n_m]' -> 'nm', '[m]' -> 'm'."""
    return _attribute_text(units).replace("[", "").replace("]", "").replace("_", "").strip()


def _coordinate_step(dim: object) -> float | None:
    """Mean step of a dim's coordinates; None when they are not numbers or fewer than two."""
    if dim.ndim != 1 or dim.shape[0] < 2 or not np.issubdtype(dim.dtype, np.number):
        return None
    values = np.asarray(dim[()], dtype=np.float64)
    return float((values[-1] - values[0]) / (values.size - 1))


def _image_2d(data: np.ndarray, path: Path) -> np.ndarray:
    """``data`` as a 2-D float32 image: the first image of a stack, with a warning."""
    data = _real_gray(np.asarray(data), path)
    if data.ndim < 2 or min(data.shape[-2:]) < 1:
        raise ValueError(f"{path}: holds an array of shape {data.shape}, not a 2-D image")
    if data.ndim > 2:
        log.warning(
            "%s: holds a stack of shape %s; using its first 2-D image %s",
            path,
            data.shape,
            data.shape[-2:],
        )
        data = data[(0,) * (data.ndim - 2)]
    return np.ascontiguousarray(data, dtype=np.float32)


def _real_gray(data: np.ndarray, path: Path) -> np.ndarray:
    """Structured RGB(A) pixels averaged to gray; complex data refused."""
    if data.dtype.names:  # rsciio reads RGB images as a structured array
        channels = [name for name in data.dtype.names if name in ("R", "G", "B")] or list(
            data.dtype.names
        )
        data = np.mean([data[name].astype(np.float32) for name in channels], axis=0)
    if np.iscomplexobj(data):
        raise ValueError(f"{path}: holds complex data (an FFT or exit wave?), not a micrograph")
    if not (np.issubdtype(data.dtype, np.number) or data.dtype == bool):
        raise ValueError(f"{path}: holds {data.dtype} data, not a numeric image")
    return data


def _from_signals(signals: list[dict], path: Path) -> tuple[np.ndarray, float | None]:
    """The first 2-D image among rsciio signal dicts, and its pixel size in Angstrom."""
    if isinstance(signals, dict):
        signals = [signals]
    for number, signal in enumerate(signals):
        data = _real_gray(np.asarray(signal["data"]), path)
        axes = list(signal.get("axes") or [])
        if data.ndim < 2 or len(axes) != data.ndim:
            continue
        signal_dims = [i for i, axis in enumerate(axes) if not axis.get("navigate", False)]
        if len(signal_dims) < 2:  # a spectrum (image), not an image
            continue
        image_dims = signal_dims[-2:]
        title = (signal.get("metadata") or {}).get("General", {}).get("title", "")
        if len(signals) > 1:
            log.warning(
                "%s: holds %d signals; using signal %d %r, the first 2-D image",
                path,
                len(signals),
                number,
                title,
            )
        if data.ndim > 2:
            log.warning(
                "%s: signal %r has shape %s; using its first 2-D image (axes %s)",
                path,
                title,
                data.shape,
                [axes[i].get("name") for i in image_dims],
            )
            index = tuple(slice(None) if i in image_dims else 0 for i in range(data.ndim))
            data = data[index]
        pixel_size = _pixel_size_from_axes([axes[i] for i in image_dims], path)
        return np.ascontiguousarray(data, dtype=np.float32), pixel_size
    shapes = [np.shape(signal["data"]) for signal in signals]
    raise ValueError(f"{path}: holds no 2-D image (signal shapes {shapes})")


def _pixel_size_from_axes(axes: list[dict], path: Path) -> float | None:
    """Pixel size in Angstrom of the (y, x) axes, or None without a length unit."""
    sizes = []
    for axis in axes:
        factor = angstrom_per_unit(axis.get("units"))
        scale = axis.get("scale")
        if factor is None or scale is None or not np.isfinite(scale) or scale <= 0:
            units = axis.get("units")
            if units not in (None, "", "<undefined>") and "/" in str(units):
                log.warning(
                    "%s: axis %r is in %s (reciprocal space?); no pixel size",
                    path,
                    axis.get("name"),
                    units,
                )
            return None
        sizes.append(float(scale) * factor)
    y_size, x_size = sizes
    if not PLAUSIBLE_PIXEL_SIZE_A[0] <= x_size <= PLAUSIBLE_PIXEL_SIZE_A[1]:
        log.warning(
            "%s: pixel size %.4g A is implausible for a micrograph (a mislabelled "
            "diffraction pattern?); taking it as unknown",
            path,
            x_size,
        )
        return None
    if abs(y_size - x_size) > 0.01 * x_size:
        log.warning(
            "%s: non-square pixels (%.4g A high, %.4g A wide); using the width",
            path,
            y_size,
            x_size,
        )
    return x_size


def _read_tiff(path: Path) -> tuple[np.ndarray, float | None]:
    """TIFF through rsciio (FEI, Zeiss, TVIPS, Gatan, ImageJ tags), else tifffile alone."""
    image, pixel_size = None, None
    try:
        from rsciio.tiff import file_reader

        image, pixel_size = _from_signals(file_reader(str(path)), path)
    except Exception as error:  # noqa: BLE001 - any rsciio failure: fall back to tifffile
        log.info("%s: rsciio could not read it (%s); reading with tifffile", path, error)
    if image is None:
        import tifffile

        with tifffile.TiffFile(path) as tiff:
            page = tiff.pages[0]
            data = page.asarray()
            if page.photometric == tifffile.PHOTOMETRIC.RGB and data.ndim == 3:
                data = _rgb_to_gray(data)
            if len(tiff.pages) > 1:
                log.warning("%s: holds %d pages; using the first", path, len(tiff.pages))
        image = _image_2d(data, path)
    if pixel_size is None:
        pixel_size = _tiff_tag_pixel_size(path)
    return image, pixel_size


def _tiff_tag_pixel_size(path: Path) -> float | None:
    """Pixel size in Angstrom from ImageJ's unit or the resolution tags (cm), else None.

    Inch resolutions are taken for printing DPI, not a pixel size, and ignored.
    """
    import tifffile

    with tifffile.TiffFile(path) as tiff:
        page = tiff.pages[0]
        tags = page.tags
        if "XResolution" not in tags:
            return None
        numerator, denominator = tags["XResolution"].value
        if not numerator or not denominator:
            return None
        size = denominator / numerator  # units per pixel
        imagej = tiff.imagej_metadata or {}
        if imagej.get("unit"):
            factor = angstrom_per_unit(imagej["unit"])
            return None if factor is None else size * factor
        unit = tags["ResolutionUnit"].value if "ResolutionUnit" in tags else None
        if unit == tifffile.RESUNIT.CENTIMETER:
            return size * 1e8
        if unit == tifffile.RESUNIT.MILLIMETER:
            return size * 1e7
        if unit == tifffile.RESUNIT.MICROMETER:
            return size * 1e4
        return None


def _read_png_image(path: Path) -> np.ndarray:
    """A PNG as a float32 gray image (RGB(A) averaged over R, G and B)."""
    from PIL import Image

    with Image.open(path) as png:
        data = np.asarray(png)
    if data.ndim == 3:  # RGB or RGBA (or gray + alpha)
        data = _rgb_to_gray(data) if data.shape[-1] >= 3 else data[..., 0]
    return _image_2d(data, path)


def _rgb_to_gray(data: np.ndarray) -> np.ndarray:
    """(H, W, 3 or 4) pixels: the mean of R, G and B (alpha ignored), float32."""
    return data[..., :3].astype(np.float32).mean(axis=-1)


def read_mask_png(path: str | Path) -> np.ndarray:
    """A mask PNG as uint8 in {0, 1}: any nonzero pixel (any channel but alpha) is particle."""
    from PIL import Image

    path = Path(path)
    with Image.open(path) as png:
        data = np.asarray(png)
    if data.ndim == 3:
        channels = data.shape[-1]
        if channels in (2, 4):  # gray + alpha, RGBA: the alpha channel is not the mask
            data = data[..., : channels - 1]
        data = data.any(axis=-1)
    if data.ndim != 2:
        raise ValueError(f"{path}: mask of shape {data.shape} is not a 2-D image")
    return (data != 0).astype(np.uint8)


def write_mask_png(path: str | Path, mask: np.ndarray) -> None:
    """``mask`` (nonzero = particle) as an 8-bit gray PNG of 0 and 255."""
    from PIL import Image

    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask of shape {mask.shape} is not a 2-D image")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    # Level 1: a large mask compresses nearly as well, several times faster than the default 6.
    Image.fromarray(np.where(mask != 0, 255, 0).astype(np.uint8), mode="L").save(
        path, compress_level=1
    )


def write_probability_tiff(
    path: str | Path, probability: np.ndarray, pixel_size_A: float | None
) -> None:
    """``probability`` as a float32 ImageJ TIFF; the pixel size (when known) in nm per pixel.

    ImageJ/Fiji and read_micrograph read the pixel size back.
    """
    import tifffile

    probability = np.asarray(probability, dtype=np.float32)
    if probability.ndim != 2:
        raise ValueError(f"probability of shape {probability.shape} is not a 2-D image")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    if pixel_size_A is None:
        tifffile.imwrite(path, probability, imagej=True)
        return
    pixels_per_nm = 10.0 / float(pixel_size_A)
    tifffile.imwrite(
        path,
        probability,
        imagej=True,
        resolution=(pixels_per_nm, pixels_per_nm),
        metadata={"unit": _TIFF_UNIT},
    )
