"""File formats shared by the stages: Zarr v3 stores written atomically and checked on read, JSON.

Provenance (code and library versions) is derived from imports: hrtem_wf.codeversion."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import zarr
from numpy.typing import DTypeLike
from zarr.codecs import BloscCodec, BloscShuffle, Crc32cCodec

from hrtem_wf.errors import InputError

# Compression for every array we store: zstd through Blosc, byte-shuffled (complex and float
# data), then a CRC32C checksum: Blosc decodes a truncated chunk without noticing.
COMPRESSORS = (BloscCodec(cname="zstd", clevel=5, shuffle=BloscShuffle.shuffle), Crc32cCodec())

# Decoding a damaged chunk raises these (Blosc: RuntimeError, checksum and shape: ValueError).
_DECODE_ERRORS = (RuntimeError, ValueError, OSError)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling path and move it onto `path` only if the block succeeds.

    A failed job then leaves nothing that looks complete."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(final.name + ".partial")
    _remove(tmp)
    try:
        yield tmp
    except BaseException:
        _remove(tmp)
        raise
    _remove(final)
    os.replace(tmp, final)


@contextlib.contextmanager
def staged_outputs(out_dir: str | os.PathLike, name: str) -> Iterator[Path]:
    """A folder for a group of outputs (out_dir/.<name>.partial), moved into `out_dir` file by
    file when the block succeeds and removed when it fails: all of them or none appear."""
    out_dir = Path(out_dir)
    stage = out_dir / f".{name}.partial"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    for path in sorted(stage.iterdir()):
        os.replace(path, out_dir / path.name)
    stage.rmdir()


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def write_arrays(
    path: str | os.PathLike, arrays: dict[str, np.ndarray], attrs: dict, chunk_leading: int = 1
) -> None:
    """Write arrays into a new Zarr v3 group, one chunk per `chunk_leading` leading items."""
    with atomic_path(path) as tmp:
        group = zarr.open_group(tmp, mode="w", zarr_format=3)
        group.attrs.update(to_jsonable(attrs))
        for name, array in arrays.items():
            chunks = (min(chunk_leading, max(array.shape[0], 1)),) + array.shape[1:]
            # Every chunk stored, all-zero ones too, so a reader can tell a lost chunk from zeros.
            stored = group.create_array(
                name,
                shape=array.shape,
                dtype=array.dtype,
                chunks=chunks,
                compressors=COMPRESSORS,
                config={"write_empty_chunks": True},
            )
            stored[...] = array


class StoreError(InputError):
    """A store that does not hold what its writer wrote: the message names the store, the array
    and what is wrong (a missing or damaged chunk, another dtype or shape, NaN or inf). An
    InputError (a ValueError): `hrtem-wf` prints it in one line and exits 1."""


class StoredArray:
    """One array of a store, a stack (N, ...) read whole or item by item; every read is checked."""

    def __init__(self, path: str, name: str, array: zarr.Array):
        self.path, self.name, self.array = path, name, array

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)

    @property
    def dtype(self) -> np.dtype:
        return self.array.dtype

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, item: int) -> np.ndarray:
        return self.read([item])[0]

    def error(self, problem: str) -> StoreError:
        return StoreError(f"{self.path}: array {self.name!r}: {problem}")

    def read(self, items: Sequence[int] | None = None) -> np.ndarray:
        """All items, or those listed (indices along the first axis), decoded and checked finite."""
        rest = (slice(None),) * (self.array.ndim - 1)
        try:
            if items is None:
                data = np.asarray(self.array[...])
            else:
                items = np.asarray(items, dtype=np.int64)
                data = np.asarray(self.array.get_orthogonal_selection((items, *rest)))
        except _DECODE_ERRORS as error:
            raise self.error(
                f"{self._undecodable(items)} cannot be decoded ({error}); the file is damaged"
            ) from error
        if np.issubdtype(data.dtype, np.inexact):
            bad = _first_nonfinite_item(data)
            if bad is not None:
                item = bad if items is None else int(items[bad])
                raise self.error(f"item {item} holds NaN or infinite values")
        return data

    def _undecodable(self, items: np.ndarray | None) -> str:
        """The first chunk that fails to decode, found chunk by chunk (only after a failure)."""
        step = self.array.chunks[0]
        wanted = range(len(self)) if items is None else items
        for start in sorted({int(i) // step * step for i in wanted}):
            try:
                self.array[start : start + step]
            except _DECODE_ERRORS:
                origin = (start // step,) + (0,) * (self.array.ndim - 1)
                key = self.array.metadata.encode_chunk_key(origin)
                last = min(start + step, len(self)) - 1
                return f"chunk {self.name}/{key} (items {start}..{last})"
        return "a chunk"


def _first_nonfinite_item(data: np.ndarray) -> int | None:
    """Index of the first item (first axis) holding NaN or inf; in blocks, to bound the memory."""
    step = max(1, 2**24 // max(1, data[0].size)) if len(data) else 1
    for start in range(0, len(data), step):
        block = data[start : start + step]
        finite = np.isfinite(block).reshape(len(block), -1).all(axis=1)
        if not finite.all():
            return start + int(np.argmin(finite))
    return None


def open_arrays(
    path: str | os.PathLike, dtypes: Mapping[str, DTypeLike], items_attr: str | None = None
) -> tuple[dict[str, StoredArray], dict]:
    """The named arrays of the store at `path`, and its attributes, checked before any data is
    read: each there with the dtype given, all of one shape, every chunk stored, and as many
    items (first axis) as attribute `items_attr` records (a count, or a list of one per item)."""
    try:
        group = zarr.open_group(path, mode="r")
        attrs = dict(group.attrs)
    except (OSError, ValueError, KeyError) as error:
        raise StoreError(f"{path}: not a readable Zarr store ({error})") from error
    arrays = {}
    for name, dtype in dtypes.items():
        array = group.get(name)
        if not isinstance(array, zarr.Array):
            raise StoreError(f"{path}: no array {name!r}")
        stored = arrays[name] = StoredArray(str(path), name, array)
        if array.dtype != np.dtype(dtype):
            raise stored.error(f"dtype {array.dtype}, expected {np.dtype(dtype)}")
        missing = array.nchunks - array.nchunks_initialized
        if missing:
            raise stored.error(
                f"{missing} of {array.nchunks} chunks are missing (Zarr would read them as zeros)"
            )
    shapes = {name: stored.shape for name, stored in arrays.items()}
    if len(set(shapes.values())) > 1:
        raise StoreError(f"{path}: arrays differ in shape: {shapes}")
    if items_attr is not None and arrays:
        recorded = attrs.get(items_attr)
        count = len(recorded) if isinstance(recorded, list) else recorded
        held = next(iter(shapes.values()))[0]
        if count != held:
            raise StoreError(
                f"{path}: attribute {items_attr!r} records {count} items, the arrays hold {held}"
            )
    return arrays, attrs


def read_arrays(
    path: str | os.PathLike, dtypes: Mapping[str, DTypeLike], items_attr: str | None = None
) -> tuple[dict[str, np.ndarray], dict]:
    """The named arrays of the store at `path`, read whole, and its attributes; every check of
    `open_arrays` and `StoredArray.read` done, or a StoreError that names the store."""
    arrays, attrs = open_arrays(path, dtypes, items_attr)
    return {name: stored.read() for name, stored in arrays.items()}, attrs


def to_jsonable(value):
    """Convert numpy scalars/arrays (nested in dicts and lists) into plain JSON types."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def write_json(path: str | os.PathLike, data: dict) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(to_jsonable(data), indent=2, sort_keys=True) + "\n")


def read_json(path: str | os.PathLike) -> dict:
    return json.loads(Path(path).read_text())
