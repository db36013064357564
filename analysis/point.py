"""One point of a sweep as one task: sample, every theory, compare, save DIR/points/<key>.nc.

The point file is the sampler's result tree (posterior, sample_stats, kernel, observed_data,
constant_data, so `bayesnet.load` and ArviZ read it as usual) plus the groups
estimates (sample estimates with MCSE), diagnostics, theory (every theory at this chi) and
comparison, each with a `chi` dimension of length 1 whose value comes from the grid.
"""

from __future__ import annotations

import json
import os
import pathlib
import socket
import time
import traceback
import warnings

import numpy as np
import xarray as xr

from . import grid as gridlib
from .store import Store, one_line


def compilation_cache(path=None) -> str:
    """Use a persistent XLA cache (path, else $JAX_COMPILATION_CACHE_DIR, else ~/.cache)."""
    import jax

    path = path or os.environ.get("JAX_COMPILATION_CACHE_DIR")
    if not path:
        path = str(pathlib.Path.home() / ".cache" / "bayesnet" / "jax")
    try:
        pathlib.Path(path).mkdir(parents=True, exist_ok=True)
    except OSError:
        return ""  # no cache: every process compiles again, nothing else changes
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return str(path)


def netcdf_safe(ds: xr.Dataset) -> xr.Dataset:
    """Attributes reduced to str/int/float/1-D numeric arrays; bools become ints."""
    safe = {}
    for k, v in ds.attrs.items():
        if isinstance(v, (bool, np.bool_)):
            safe[k] = int(v)
        elif isinstance(v, np.generic):  # a reloaded attribute: keep 16 an integer, not '"16"'
            safe[k] = v.item()
        elif isinstance(v, (str, int, float)):
            safe[k] = v
        elif isinstance(v, np.ndarray) and v.dtype.kind in "iuf" and v.ndim <= 1:
            safe[k] = v
        else:
            safe[k] = json.dumps(v, default=str)
    out = ds.copy()
    out.attrs = safe
    for name in list(out.variables):
        if out[name].dtype == bool:
            out[name] = out[name].astype(np.int8)
    return out


def theories(
    point, data, chis, methods=None, tracebacks: list | None = None
) -> tuple[xr.Dataset | None, list[str]]:
    """Every theory of `point` at `chis` as one table over (theory, chi); failures listed.

    A theory that raises is listed in one line (`method: message`) and the others go on; the
    full traceback of each is appended to `tracebacks` when given (run_point writes them to
    DIR/points/<key>.log), so a bug in a theory still shows where it happened.
    """
    import theory

    from . import comparison as cmp

    parts, failed = {}, []
    spec = point.spec
    for m in methods or point.methods:
        try:
            parts[m] = theory.predict(spec, data, chis, m)
        except Exception as err:  # noqa: BLE001 - one theory never stops the others
            failed.append(f"{m}: {type(err).__name__}: {one_line(err)}")
            if tracebacks is not None:
                tracebacks.append(f"theory {m}:\n" + "".join(traceback.format_exception(err)))
    if not parts:
        return None, failed
    table = cmp.theory_table(parts).assign_coords(chi=np.asarray(chis, dtype=float))
    table.attrs["theory_failed"] = json.dumps(failed)
    return table, failed


def compute(
    point, progress: bool = False, desc: str | None = None, tracebacks: list | None = None
) -> xr.DataTree:
    """Sample the point, run every theory at its chi, compare: the point tree (not saved).

    Tracebacks of theories that failed are appended to `tracebacks` (see `theories`).
    """
    import bayesnet

    from . import comparison as cmp
    from . import diagnostics

    t0 = time.perf_counter()
    data = gridlib.make_data(dict(point.data))
    tree = bayesnet.sample(point.spec, data, progress=progress, desc=desc, **dict(point.sampler))
    if tree.attrs.get("interrupted"):
        raise KeyboardInterrupt  # the sampler kept a partial run: never save it as a point
    chi = [point.chi]
    th, failed = theories(point, data, chi, tracebacks=tracebacks)
    if th is None:
        raise RuntimeError(f"no theory could be computed: {'; '.join(failed)}")
    est = cmp.sample_estimates(tree).drop_vars("chi", errors="ignore").expand_dims(chi=chi)
    diag = diagnostics.diagnose(tree).drop_vars("chi", errors="ignore").expand_dims(chi=chi)
    comp = cmp.compare(est, th, diagnosis=diag)
    groups = {"/" + name: tree[name].to_dataset(inherit=False) for name in tree.children}
    groups.update({"/estimates": est, "/diagnostics": diag, "/theory": th, "/comparison": comp})
    out = xr.DataTree.from_dict({k: netcdf_safe(v) for k, v in groups.items()})
    out.attrs = {
        **netcdf_safe(xr.Dataset(attrs=tree.attrs)).attrs,
        "point_key": point.key,
        "chi_rule": point.chi_rule,
        "point_coords": json.dumps(point.coords(), default=str),
        "theory_failed": json.dumps(failed),
        "point_seconds": time.perf_counter() - t0,
    }
    return out


def run_point(point, root, progress: bool = False, desc: str | None = None) -> dict:
    """Compute one point and save it under root/points/<key>.nc; returns a short summary."""
    store = Store(root)
    marker = store.marker_path(point.key)
    marker.write_text(f"host {socket.gethostname()} pid {os.getpid()}")
    tracebacks: list = []
    try:
        t0 = time.perf_counter()
        try:
            tree = compute(point, progress=progress, desc=desc, tracebacks=tracebacks)
        finally:  # a failure's own traceback is appended by `failure`
            _write_log(store.log_path(point.key), tracebacks)
        store.write_point(tree, point.key)
        from . import diagnostics

        diag = tree["diagnostics"].to_dataset().isel(chi=0)
        failed = json.loads(tree.attrs["theory_failed"])
        summary = diagnostics.summary_line(diag)
        if failed:
            summary += f"; theory failed: {'; '.join(failed)} (log {store.log_path(point.key)})"
        return {
            "key": point.key,
            "state": "done",
            "seconds": time.perf_counter() - t0,
            "summary": summary,
        }
    finally:
        marker.unlink(missing_ok=True)


def _write_log(path: pathlib.Path, tracebacks: list) -> None:
    """Theory tracebacks into the point's log file (removed when there are none)."""
    if tracebacks:
        try:
            path.write_text("\n".join(tracebacks))
        except OSError as err:
            warnings.warn(f"could not write {path}: {err.strerror or err}", stacklevel=2)
    else:
        path.unlink(missing_ok=True)


def task(point, root, cache_dir: str = "") -> dict:
    """run_point on a Dask worker: a failure is returned (with its one line), not raised.

    The traceback goes to root/points/<key>.log, so a bug still shows where it happened.
    """
    compilation_cache(cache_dir or None)
    try:
        return run_point(point, root)
    except Exception as err:  # noqa: BLE001 - one failed point never stops the others
        return failure(point, root, err)


def failure(point, root, err: BaseException) -> dict:
    """Record a failed point's traceback in its log file; the manifest entry gets one line.

    The result's `log` is the log file, or None when it could not be written (the error line
    then says why).
    """
    log = Store(root).log_path(point.key)
    line = (
        one_line(err) if isinstance(err, ValueError) else f"{type(err).__name__}: {one_line(err)}"
    )
    try:
        with open(log, "a") as f:  # after any theory tracebacks of this point
            f.write("".join(traceback.format_exception(err)))
    except OSError as io_err:
        line += f" (its traceback could not be written to {log}: {io_err.strerror or io_err})"
        log = None
    return {"key": point.key, "state": "failed", "error": line, "log": str(log) if log else None}
