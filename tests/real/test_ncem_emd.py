"""read_micrograph on Berkeley (NCEM) EMD files laid out as ncempy writes them.

ncempy (openNCEM) is not installed here, so the files are written with h5py following its
writer, github.com/ercius/openNCEM commit 749ec1a8456f6c84f21021908ad5019b041fb42b:

- ncempy/io/emd.py, fileEMD.__init__ (lines 133-175): file attributes version_major = 0,
  version_minor = 2, and groups data, microscope, sample, user, comments.
- emd.py fileEMD.put_emdgroup (lines 474-482) and write_dim (lines 402-404): a group under
  /data with attribute emd_group_type = 1, the array as given in dataset 'data', and for axis
  i a dataset 'dim{i+1}' of coordinates with str attributes 'name' and 'units'.
- ncempy/io/ser.py serReader.writeEMD: a single image (lines 726-750) is stored (y, x) as
  the .ser holds it, dim1 (..., 'y', '[m]'), dim2 (..., 'x', '[m]'); a series (lines
  752-805) is (n, y, x) with dim1 ('Number', '[<units>]'), dim2 'y', dim3 'x', plus a
  'dim1_time' dataset ('timestamp', '[s]'); a 2-D scan of images (lines 637-721) is
  (scan y, scan x, y, x) with dims 'Position', 'Position', 'y', 'x' and a 'timestamp'
  emd group inside.
- emd.py defaultDims (lines 563-603), used by emdWriter: dims named 'dim1', 'dim2', ...
  with units 'unit1', ... unless given: nothing says which axis is x.
"""

from __future__ import annotations

import logging

import h5py
import numpy as np
import pytest

from hrtem_wf.real.micrographs import read_micrograph

ROWS, COLUMNS = 30, 40


def ramp(frames: int = 0) -> np.ndarray:
    """(ROWS, COLUMNS) float32 with image[r, c] == c; a stack adds 100 per frame."""
    image = np.tile(np.arange(COLUMNS, dtype=np.float32), (ROWS, 1))
    if not frames:
        return image
    return np.stack([image + 100 * k for k in range(frames)])


def write_ncempy_emd(path, label: str, data: np.ndarray, dims: list[tuple]) -> None:
    """An EMD file as ncempy's fileEMD(readonly=False) + put_emdgroup write it."""
    with h5py.File(path, "w") as f:
        f.attrs["version_major"] = 0
        f.attrs["version_minor"] = 2
        for name in ("data", "microscope", "sample", "user", "comments"):
            f.create_group(name)
        group = f["data"].create_group(label)
        group.attrs["emd_group_type"] = 1
        group.create_dataset("data", data=data)
        for number, (values, name, units) in enumerate(dims, start=1):
            dim = group.create_dataset(f"dim{number}", data=values)
            dim.attrs["name"] = name
            dim.attrs["units"] = units


def coordinates(size: int, step: float) -> np.ndarray:
    """ser.py _createDim with offset 0 at element 0: step * (0, 1, ..., size - 1)."""
    return np.arange(size, dtype="f8") * step


def read(path, caplog) -> tuple[np.ndarray, float | None, list[str]]:
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="hrtem_wf"):
        image, pixel_size = read_micrograph(path)
    return image, pixel_size, [r.getMessage() for r in caplog.records if r.name == "hrtem_wf"]


def test_ser_converted_image_reads_y_x(tmp_path, caplog):
    """serReader.writeEMD of one TIA image: (y, x), metres, names 'y' and 'x'."""
    step = 1.23e-11  # metres: 0.123 A
    path = tmp_path / "image.emd"
    dims = [(coordinates(ROWS, step), "y", "[m]"), (coordinates(COLUMNS, step), "x", "[m]")]
    write_ncempy_emd(path, "image_1.ser", ramp(), dims)
    image, pixel_size, messages = read(path, caplog)
    assert image.shape == (ROWS, COLUMNS) and image.dtype == np.float32
    np.testing.assert_array_equal(image, ramp())  # image[r, c] == c
    assert pixel_size == pytest.approx(0.123, rel=1e-9)
    assert messages == []


def test_ser_converted_series_reads_first_frame_with_warning(tmp_path, caplog):
    """serReader.writeEMD of a 5-image TIA series: (n, y, x), dims 'Number', 'y', 'x'."""
    step = 2.0e-10  # metres: 2 A
    path = tmp_path / "series.emd"
    dims = [
        (coordinates(5, 1.0), "Number", "[]"),
        (coordinates(ROWS, step), "y", "[m]"),
        (coordinates(COLUMNS, step), "x", "[m]"),
    ]
    write_ncempy_emd(path, "series_1.ser", ramp(5), dims)
    with h5py.File(path, "a") as f:  # ser.py line 805: the time stamps as an extra dim
        dim = f["data/series_1.ser"].create_dataset("dim1_time", data=np.arange(5, dtype="i4"))
        dim.attrs["name"], dim.attrs["units"] = "timestamp", "[s]"
    image, pixel_size, messages = read(path, caplog)
    np.testing.assert_array_equal(image, ramp())
    assert pixel_size == pytest.approx(2.0, rel=1e-9)
    assert len(messages) == 1 and "first 2-D image" in messages[0]
    assert "(5, 30, 40)" in messages[0]


def test_ser_converted_scan_of_images_reads_first_image(tmp_path, caplog):
    """serReader.writeEMD of a 2-D scan of images: (scan y, scan x, y, x), and a 'timestamp'
    emd group inside the image group, which is no image."""
    step = 5e-11
    path = tmp_path / "scan.emd"
    data = np.stack([ramp(3) + 1000 * k for k in range(2)])  # (2, 3, ROWS, COLUMNS)
    dims = [
        (coordinates(2, 1e-9), "Position", "[m]"),
        (coordinates(3, 1e-9), "Position", "[m]"),
        (coordinates(ROWS, step), "y", "[m]"),
        (coordinates(COLUMNS, step), "x", "[m]"),
    ]
    write_ncempy_emd(path, "scan_1.ser", data, dims)
    with h5py.File(path, "a") as f:
        time = f["data/scan_1.ser"].create_group("timestamp")
        time.attrs["emd_group_type"] = 1
        time.create_dataset("data", data=np.zeros((3, 2), dtype="i4"))
        for number, (values, name, units) in enumerate(dims[:2], start=1):
            dim = time.create_dataset(f"dim{number}", data=values)
            dim.attrs["name"], dim.attrs["units"] = name, units
    image, pixel_size, messages = read(path, caplog)
    np.testing.assert_array_equal(image, ramp())
    assert pixel_size == pytest.approx(0.5, rel=1e-9)
    assert len(messages) == 1 and "first 2-D image" in messages[0]


@pytest.mark.parametrize(
    "units, angstrom",
    [("[n_m]", 10.0), ("nm", 10.0), ("n_m", 10.0), ("A", 1.0), ("\u00c5", 1.0), ("[pm]", 0.01)],
)
@pytest.mark.parametrize("names", [("y", "x"), ("Y", "X")])
def test_put_emdgroup_image_units_and_names(tmp_path, caplog, units, angstrom, names):
    """put_emdgroup with the caller's dims: y first, units as people write them."""
    path = tmp_path / "image.emd"
    dims = [(coordinates(ROWS, 0.5), names[0], units), (coordinates(COLUMNS, 0.5), names[1], units)]
    write_ncempy_emd(path, "pytest", ramp(), dims)
    image, pixel_size, messages = read(path, caplog)
    np.testing.assert_array_equal(image, ramp())
    assert pixel_size == pytest.approx(0.5 * angstrom, rel=1e-9)
    assert messages == []


def test_x_first_image_is_transposed(tmp_path, caplog):
    """Stored x first (as rosettasciio and Prismatic write): dim1 'X', dim2 'Y' -> (y, x)."""
    path = tmp_path / "x_first.emd"
    dims = [(coordinates(COLUMNS, 0.2), "X", "nm"), (coordinates(ROWS, 0.2), "Y", "nm")]
    write_ncempy_emd(path, "transposed", np.ascontiguousarray(ramp().T), dims)
    image, pixel_size, messages = read(path, caplog)
    np.testing.assert_array_equal(image, ramp())
    assert pixel_size == pytest.approx(2.0, rel=1e-9)
    assert messages == []


def test_unit_without_length_gives_no_pixel_size(tmp_path, caplog):
    path = tmp_path / "pixels.emd"
    dims = [(coordinates(ROWS, 1.0), "y", "pixels"), (coordinates(COLUMNS, 1.0), "x", "pixels")]
    write_ncempy_emd(path, "pixels", ramp(), dims)
    image, pixel_size, _ = read(path, caplog)
    np.testing.assert_array_equal(image, ramp())
    assert pixel_size is None


def test_emdwriter_default_dims_keep_rosettasciio_reading(tmp_path, caplog):
    """emdWriter/defaultDims names the dims 'dim1', 'dim2' (units 'unit1', 'unit2'): nothing
    says which is x, so read_micrograph reads such files as before, through rosettasciio,
    which transposes every NCEM array (a (30, 40) array reads as (40, 30))."""
    from rsciio.emd import file_reader

    path = tmp_path / "converted.emd"
    dims = [(coordinates(ROWS, 1.0), "dim1", "unit1"), (coordinates(COLUMNS, 1.0), "dim2", "unit2")]
    write_ncempy_emd(path, "converted", ramp(), dims)
    image, pixel_size, _ = read(path, caplog)
    (signal,) = file_reader(str(path))
    np.testing.assert_array_equal(image, signal["data"])
    assert image.shape == (COLUMNS, ROWS)
    assert pixel_size is None
