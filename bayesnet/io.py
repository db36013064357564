"""Save and reopen result trees as netCDF (h5netcdf), atomically; the one atomic write."""

from __future__ import annotations

import contextlib
import os
import pathlib
import socket
from collections.abc import Callable

import xarray as xr


def write_atomic(path: str | os.PathLike, write: Callable[[pathlib.Path], object]) -> pathlib.Path:
    """Call write(tmp) on a temporary name next to `path`, then rename it into place.

    The temporary file, `.<name>.<host>.<pid>.tmp` in the same folder, is removed if write fails
    or is interrupted; the file gets the process umask's permissions (never 0600).  A reader
    sees the old file or the new one, never half of one.
    """
    path = pathlib.Path(path)
    tmp = path.with_name(f".{path.name}.{socket.gethostname()}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return path


def save(tree: xr.DataTree, path: str | os.PathLike) -> pathlib.Path:
    """Write `tree` to `path` atomically: a temporary file in the same folder, then a rename."""
    path = pathlib.Path(path)
    folder = path.parent if str(path.parent) else pathlib.Path(".")
    if not folder.is_dir():
        raise ValueError(f"output folder {str(folder)!r} does not exist")
    if not os.access(folder, os.W_OK):
        raise ValueError(f"output folder {str(folder)!r} is not writable")
    return write_atomic(path, lambda tmp: tree.to_netcdf(tmp, engine="h5netcdf"))


def load(path: str | os.PathLike) -> xr.DataTree:
    """Reopen a saved result tree fully into memory (the file is closed afterwards)."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise ValueError(f"no result file at {str(path)!r}")
    with xr.open_datatree(path, engine="h5netcdf") as tree:
        return tree.load().copy()
