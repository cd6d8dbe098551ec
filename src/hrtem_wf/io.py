"""File formats shared by the stages: Zarr v3 stores written atomically, JSON, provenance."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Iterator

import numpy as np
import zarr
from zarr.codecs import BloscCodec, BloscShuffle

# Compression for every array we store: zstd through Blosc, byte-shuffled (complex and float data).
COMPRESSORS = (BloscCodec(cname="zstd", clevel=5, shuffle=BloscShuffle.shuffle),)

_PACKAGES = ("hrtem_wf", "numpy", "abtem", "czone", "ase", "zarr", "torch",
             "segmentation-models-pytorch", "snakemake")


def versions() -> dict[str, str]:
    """Versions of the packages an output depends on (for provenance attributes)."""
    found = {}
    for name in _PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            pass
    return found


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


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def write_arrays(path: str | os.PathLike, arrays: dict[str, np.ndarray], attrs: dict,
                 chunk_leading: int = 1) -> None:
    """Write arrays into a new Zarr v3 group, one chunk per `chunk_leading` leading items."""
    with atomic_path(path) as tmp:
        group = zarr.open_group(tmp, mode="w", zarr_format=3)
        group.attrs.update(to_jsonable(attrs))
        for name, array in arrays.items():
            chunks = (min(chunk_leading, max(array.shape[0], 1)),) + array.shape[1:]
            stored = group.create_array(name, shape=array.shape, dtype=array.dtype,
                                        chunks=chunks, compressors=COMPRESSORS)
            stored[...] = array


def read_group(path: str | os.PathLike) -> zarr.Group:
    return zarr.open_group(path, mode="r")


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
