"""The `bayesnet` command line: `run` (a grid sweep, then collect and report), `collect`, `report`.

Files under the output folder DIR (see analysis/store.py and analysis/collect.py):
  DIR/points/<key>.nc   one finished point each (sample, every theory, comparison)
  DIR/manifest.json     every point's state: pending, running, done, failed (with its error)
  DIR/grid.json         the resolved config
  DIR/sweep.nc          one dataset over the grid axes, chi and theory (opens lazily)
  DIR/results.nc        the results tree the report reads
  DIR/report.md, DIR/figures/*.png
Exit status: 0 done; 1 some points failed or are missing (collect and report list them); 2 bad
input (one line on stderr); 130 interrupted.
This module only parses arguments; the work is in grid, executor, collect and report.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

EXIT_POINTS_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130
DEFAULT_OUT = "runs/latest"


class UsageError(ValueError):
    """Bad command-line usage (reported in one line, exit 2)."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors."""

    def error(self, message):
        raise UsageError(message)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="bayesnet",
        description="Bayesian network posteriors across scaling "
        "regimes: grid sweeps of samples and theory, collected and reported.",
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = sub.add_parser(
        "run",
        help="the main job: every point of the grid (resumed), then collect and report",
        description="Sample every point of the grid, "
        "run every theory, compare; then collect and report.  Finished points "
        "are kept: a rerun resumes.",
    )
    run.add_argument("--config", default=None, help="grid TOML (default: the embedded one)")
    run.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    run.add_argument(
        "--quick",
        action="store_true",
        help="a smoke test: the config's [quick] table, or else shorter chains, fewer chi "
        "points and smaller data (at most the default's quick values)",
    )
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
    how = run.add_mutually_exclusive_group()
    how.add_argument(
        "--workers",
        type=_positive_int,
        default=None,
        metavar="K",
        help="a local Dask cluster of K single-threaded worker processes",
    )
    how.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="join a running Dask scheduler, e.g. tcp://host:8786",
    )
    how.add_argument(
        "--scheduler-file",
        default=None,
        metavar="F",
        help="join the Dask scheduler described in file F",
    )
    run.add_argument("--fresh", action="store_true", help="delete the saved points first")
    run.add_argument("--retry-failed", action="store_true", help="rerun points that failed")
    for name, text in (
        ("collect", "DIR/sweep.nc and DIR/results.nc from the finished points"),
        ("report", "DIR/report.md and DIR/figures from DIR/results.nc"),
    ):
        s = sub.add_parser(name, help=text, description=text)
        s.add_argument(
            "dir",
            nargs="?",
            default=None,
            metavar="DIR",
            help=f"output folder (default {DEFAULT_OUT})",
        )
        s.add_argument("--out", default=None, help=argparse.SUPPRESS)
    return p


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _folder(args) -> pathlib.Path:
    return pathlib.Path(args.dir or args.out or DEFAULT_OUT)


def _write_grid(store, config: dict) -> None:
    from .store import write_atomic

    write_atomic(store.root / "grid.json", lambda tmp: tmp.write_text(json.dumps(config, indent=2)))


def _read_grid(store):
    """The grid of DIR/grid.json, written by `bayesnet run`."""
    from . import grid
    from .store import FolderError

    path = store.root / "grid.json"
    if not path.is_file():
        raise FolderError(f"no {path}: run `bayesnet run --out {store.root}` first")
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise FolderError(f"{path} is unreadable: {err}") from None
    with grid.naming(path):
        grid.validate(config)
        return grid.plan(config)


def _report(results, out: pathlib.Path) -> pathlib.Path:
    from . import report

    path = report.write_report(results, out)
    print(report.summary_table(results))
    _log(f"report written to {path}")
    return path


def cmd_run(args) -> int:
    """The main job: every point not done yet, then collect and report."""
    from . import collect, executor, grid
    from .point import compilation_cache
    from .store import Store

    t0 = time.perf_counter()
    g = grid.load(args.config, quick=args.quick)
    store = Store(args.out).prepare()
    with store.locked():
        if args.fresh:
            store.clear()
        _write_grid(store, g.config)
        cache = compilation_cache()
        where = (
            f"{args.workers} local Dask workers"
            if args.workers
            else f"Dask scheduler {args.scheduler or args.scheduler_file}"
            if args.scheduler or args.scheduler_file
            else "this process"
        )
        _log(
            f"bayesnet run: {len(g)} points in {len(grid.series_of(g.points))} series, "
            f"output in {store.root}, computed in {where} (XLA cache {cache or 'off'})"
        )
        outcome = executor.run(
            g,
            store,
            workers=args.workers,
            scheduler=args.scheduler,
            scheduler_file=args.scheduler_file,
            progress=not args.no_progress,
            retry_failed=args.retry_failed,
            cache_dir=cache,
        )
        _log(
            f"{outcome.done} of {outcome.total} points done ({outcome.computed} computed now "
            f"in {outcome.seconds:.1f}s), {outcome.failed} failed"
        )
        if outcome.done:
            try:
                elapsed = time.perf_counter() - t0  # one measurement, quoted by the report
                _, results = collect.collect(g, store, timing={"total_s": elapsed})
                _log(
                    f"collected into {store.root / 'sweep.nc'} and "
                    f"{store.root / 'results.nc'} (wall time before collecting {elapsed:.1f}s)"
                )
                _report(results, store.root)
            except KeyboardInterrupt:
                raise executor.Interrupted(
                    f"interrupted while collecting: {outcome.done} of {outcome.total} points "
                    f"are saved in {store.points}; `bayesnet collect {store.root}` and "
                    f"`bayesnet report {store.root}` finish the job"
                ) from None
    _log(f"finished in {time.perf_counter() - t0:.1f}s")
    if outcome.failed:
        _log(
            f"{outcome.failed} of {outcome.total} points failed (errors in "
            f"{store.manifest_path}); `bayesnet run --retry-failed` reruns them"
        )
        return EXIT_POINTS_FAILED
    return 0


def _missing(results, where: str) -> int:
    """Exit status 1, with the list, when some points of the grid are not in `results`."""
    missing = json.loads(results.attrs.get("points_missing", "[]"))
    if not missing:
        return 0
    _log(f"{len(missing)} of {results.attrs.get('points_total')} points are missing from {where}:")
    for line in missing:
        _log(f"  {line}")
    return EXIT_POINTS_FAILED


def cmd_collect(args) -> int:
    """Collect the finished points of DIR into DIR/sweep.nc and DIR/results.nc."""
    from . import collect
    from .executor import Interrupted
    from .store import FolderError, Store

    store = Store(_folder(args))
    if not store.root.is_dir():
        raise FolderError(f"no output folder {store.root}")
    try:
        with store.locked():
            g = _read_grid(store)
            _, results = collect.collect(g, store)
    except KeyboardInterrupt:
        raise Interrupted(
            f"interrupted while collecting: the point files in {store.points} are unchanged; "
            f"`bayesnet collect {store.root}` starts again"
        ) from None
    _log(f"collected into {store.root / 'sweep.nc'} and {store.root / 'results.nc'}")
    return _missing(results, str(store.root / "results.nc"))


def cmd_report(args) -> int:
    """DIR/report.md and figures from DIR/results.nc; prints the summary table."""
    import xarray as xr

    from .store import FolderError

    out = _folder(args)
    path = out / "results.nc"
    if not path.is_file():
        raise FolderError(f"no results file at {path}: run `bayesnet collect {out}` first")
    try:
        with xr.open_datatree(path, engine="h5netcdf") as tree:
            results = tree.load().copy()
    except Exception as err:  # noqa: BLE001 - any failure to read: the file is the problem
        raise FolderError(
            f"results file {path} is unreadable ({' '.join(str(err).split())}); "
            f"`bayesnet collect {out}` rebuilds it"
        ) from None
    _report(results, out)
    return _missing(results, str(path))


COMMANDS = {"run": cmd_run, "collect": cmd_collect, "report": cmd_report}


def _user_error(err: Exception) -> str | None:
    """The one line for an error the user can fix, None for an internal error (traceback)."""
    from .executor import SchedulerError
    from .grid import ConfigError
    from .store import FolderError, PointFileError

    if isinstance(err, (UsageError, ConfigError, FolderError, PointFileError, SchedulerError)):
        return " ".join(str(err).split())
    if isinstance(err, OSError) and err.filename:  # a file the user named or must fix
        return f"{err.strerror or err}: {err.filename}"
    return None


def _version() -> str:
    from bayesnet import __version__

    return __version__


INTERRUPTED = {
    "run": "interrupted before any point started; nothing to resume",
    "collect": "interrupted before collecting started; nothing was changed",
    "report": "interrupted: the report may be incomplete; `bayesnet report` writes it again",
}


def main(argv=None) -> int:
    """Entry point of the console script `bayesnet`."""
    command = None
    try:
        args = _parser().parse_args(argv)
        command = args.command
        return COMMANDS[command](args)
    except KeyboardInterrupt:
        _log(INTERRUPTED.get(command, "interrupted"))
        return EXIT_INTERRUPTED
    except Exception as err:
        if type(err).__name__ == "Interrupted" and type(err).__module__ == "analysis.executor":
            _log(str(err))
            return EXIT_INTERRUPTED
        line = _user_error(err)
        if line is None:
            raise
        _log(f"bayesnet: error: {line}")
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
