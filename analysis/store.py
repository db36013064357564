"""The sweep folder: content-addressed point files, the manifest of point states, and a lock.

DIR/points/<key>.nc       one finished point (written atomically: temporary file, then rename)
DIR/points/<key>.running  marker while a worker computes the point (holds host and pid)
DIR/points/<key>.log      traceback of a point that failed
DIR/manifest.json         state of every point of the grid: pending, running, done or failed
DIR/grid.json             the resolved config of the last run (what `collect` rebuilds)
DIR/.lock                 held (flock) by the run or collect that owns DIR

Files are created with the process umask (readable by the group as usual), never 0600.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import pathlib
import socket

import xarray as xr

from bayesnet.io import write_atomic  # the one atomic write (re-exported for analysis)

STATES = ("pending", "running", "done", "failed")
POINT_GROUPS = ("posterior", "estimates", "diagnostics", "theory", "comparison")


class FolderError(ValueError):
    """The output folder cannot be used: not writable, held by another run, or lacking a file
    a command needs; the message names the folder or file."""


class PointFileError(ValueError):
    """A point file that is missing, truncated or not a point; the message names the file."""


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def one_line(err: BaseException) -> str:
    """An exception as one line: its message, or its type when the message is empty."""
    text = " ".join(str(err).split())
    return text or type(err).__name__


class Store:
    """A sweep folder DIR: points, manifest, lock (see the module docstring)."""

    def __init__(self, root):
        self.root = pathlib.Path(root)
        self.points = self.root / "points"
        self.manifest_path = self.root / "manifest.json"
        self._lock_fd = None

    # -------------------------------------------------------------- folder and lock
    def prepare(self) -> Store:
        """Create DIR and DIR/points and prove they are writable (FolderError otherwise)."""
        try:
            self.points.mkdir(parents=True, exist_ok=True)
            probe = self.points / f".write_test.{os.getpid()}"
            probe.write_text("ok")
            probe.unlink()
        except OSError as err:
            raise FolderError(
                f"output folder {self.root} is not writable: {err.strerror or err}"
            ) from None
        return self

    @contextlib.contextmanager
    def locked(self):
        """Hold DIR/.lock for the duration; a second run on the same DIR stops at once."""
        path = self.root / ".lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
                raise FolderError(
                    f"output folder {self.root} is in use by another bayesnet "
                    f"run ({holder}); lock file {path}"
                ) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"host {socket.gethostname()} pid {os.getpid()}".encode(), 0)
            yield self
        finally:
            os.close(fd)  # closing releases the flock

    def remove_temporaries(self) -> list[pathlib.Path]:
        """Delete half-written files in DIR/points (a killed writer's `.<name>.tmp`)."""
        gone = []
        for f in self.points.glob(".*.tmp"):
            with contextlib.suppress(OSError):
                f.unlink()
                gone.append(f)
        return gone

    def clear(self) -> None:
        """--fresh: remove every point file, marker, log, the manifest and collected results."""
        for pattern in ("*.nc", "*.running", "*.log", ".*.tmp"):
            for f in self.points.glob(pattern):
                f.unlink(missing_ok=True)
        for name in ("manifest.json", "sweep.nc", "results.nc"):
            (self.root / name).unlink(missing_ok=True)

    # -------------------------------------------------------------- points
    def point_path(self, key: str) -> pathlib.Path:
        return self.points / f"{key}.nc"

    def marker_path(self, key: str) -> pathlib.Path:
        return self.points / f"{key}.running"

    def log_path(self, key: str) -> pathlib.Path:
        return self.points / f"{key}.log"

    def write_point(self, tree: xr.DataTree, key: str) -> pathlib.Path:
        """Save a finished point atomically, every numeric array with a Fletcher-32 checksum
        (so a flipped bit is an error on reading, not a silently wrong number)."""
        encoding = {
            node.path: {
                name: {"fletcher32": True}
                for name, var in node.dataset.variables.items()
                if var.ndim >= 1 and var.dtype.kind in "biuf"
            }
            for node in tree.subtree
        }
        return write_atomic(
            self.point_path(key),
            lambda tmp: tree.to_netcdf(tmp, engine="h5netcdf", encoding=encoding),
        )

    def check_point(self, key: str) -> str | None:
        """None when DIR/points/<key>.nc opens as the point `key`, else what is wrong with it.

        Reads only the file's structure (h5py), not its arrays: cheap for large grids.
        """
        import h5py

        path = self.point_path(key)
        if not path.exists():
            return f"point file {path} is missing"
        try:
            with h5py.File(path, "r") as f:
                found = f.attrs.get("point_key")
                found = found.decode() if isinstance(found, bytes) else found
                if found != key:
                    return f"point file {path} is not point {key} (it says {found!r})"
                missing = [g for g in POINT_GROUPS if g not in f]
                if missing:
                    return f"point file {path} lacks groups {missing}"
        except Exception as err:  # noqa: BLE001 - any failure to read means: recompute it
            return f"point file {path} is unreadable ({one_line(err)})"
        return None

    def verify_point(self, key: str) -> str | None:
        """Like check_point, and every array is read, so a checksum error shows (h5py, fast)."""
        import h5py

        problem = self.check_point(key)
        if problem:
            return problem
        path = self.point_path(key)

        def read(name, obj):
            if isinstance(obj, h5py.Dataset) and obj.shape != ():
                obj[()]

        try:
            with h5py.File(path, "r") as f:
                f.visititems(read)
        except Exception as err:  # noqa: BLE001 - any failure to read means: recompute it
            return f"point file {path} is corrupt ({one_line(err)})"
        return None

    def open_point(self, key: str, groups=POINT_GROUPS) -> xr.DataTree:
        """Some groups of a point loaded into memory; PointFileError naming the file otherwise."""
        problem = self.check_point(key)
        if problem:
            raise PointFileError(problem)
        path = self.point_path(key)
        try:
            parts = {}
            for g in groups:
                with xr.open_dataset(path, group=g, engine="h5netcdf") as ds:
                    parts[g] = ds.load()
            with xr.open_dataset(path, engine="h5netcdf") as root:
                attrs = dict(root.attrs)
        except Exception as err:  # noqa: BLE001 - e.g. a truncated or bit-flipped chunk
            raise PointFileError(f"point file {path} is unreadable ({one_line(err)})") from None
        tree = xr.DataTree.from_dict(parts)
        tree.attrs = attrs
        return tree

    # -------------------------------------------------------------- manifest
    def read_manifest(self) -> dict:
        """{key: entry} of the last run; empty when there is none or it cannot be read."""
        try:
            data = json.loads(self.manifest_path.read_text())
            return dict(data["points"])
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, KeyError, TypeError):
            return {}  # rebuilt from the point files, which are the truth

    def write_manifest(self, entries: dict, summary: dict | None = None) -> None:
        """Save every point's state atomically (only the process that owns the lock writes)."""
        counts = {s: sum(e["state"] == s for e in entries.values()) for s in STATES}
        doc = {"updated": _now(), "counts": counts, **(summary or {}), "points": entries}
        write_atomic(
            self.manifest_path, lambda tmp: tmp.write_text(json.dumps(doc, indent=1, default=str))
        )


def entry(point, state: str, error: str = "", **extra) -> dict:
    """A manifest entry of one point."""
    return {
        "state": state,
        "error": error,
        "series_coords": point.series_coords(),
        "chi": point.chi,
        "chi_rule": point.chi_rule,
        "updated": _now(),
        **extra,
    }
