"""Save and reopen result trees as netCDF (h5netcdf), atomically."""

from __future__ import annotations

import os
import pathlib
import tempfile

import xarray as xr


def save(tree: xr.DataTree, path: str | os.PathLike) -> pathlib.Path:
    """Write `tree` to `path` atomically: a temporary file in the same folder, then a rename."""
    path = pathlib.Path(path)
    folder = path.parent if str(path.parent) else pathlib.Path(".")
    if not folder.is_dir():
        raise ValueError(f"output folder {str(folder)!r} does not exist")
    if not os.access(folder, os.W_OK):
        raise ValueError(f"output folder {str(folder)!r} is not writable")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; results are shared like any file
    try:
        tree.to_netcdf(tmp, engine="h5netcdf")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def load(path: str | os.PathLike) -> xr.DataTree:
    """Reopen a saved result tree fully into memory (the file is closed afterwards)."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise ValueError(f"no result file at {str(path)!r}")
    with xr.open_datatree(path, engine="h5netcdf") as tree:
        return tree.load().copy()
