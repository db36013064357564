"""The `bayesnet` command line: `run` (the main job) and the single steps sample/theory/compare/report.

Files under the output folder DIR:
  DIR/config.json            the resolved experiment (written by every step that reads a config)
  DIR/samples/NAME_chiKK_*.nc one sample tree per network and chi (saved as soon as it is done)
  DIR/theory.nc              theory predictions per network over (theory, chi)
  DIR/results.nc             data, samples' summaries, diagnostics, theory, comparison
  DIR/report.md, DIR/figures/*.png
Bad input ends with exit status 2 and one line on stderr.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130
DEFAULT_OUT = "runs/latest"


class UsageError(ValueError):
    """Bad command-line usage (reported in one line, exit 2)."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors."""

    def error(self, message):
        raise UsageError(message)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="bayesnet", description="Bayesian network posteriors across scaling "
                "regimes: sample, theory, compare, report.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    helps = {"run": "the main job: sample every chi, theory, compare, report",
             "sample": "sample every network at every chi into DIR/samples",
             "theory": "theory predictions into DIR/theory.nc",
             "compare": "diagnostics and comparison of DIR/samples with DIR/theory.nc into "
                        "DIR/results.nc",
             "report": "DIR/report.md and DIR/figures from DIR/results.nc"}
    for name, text in helps.items():
        s = sub.add_parser(name, help=text, description=text)
        s.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
        if name in ("run", "sample", "theory"):
            s.add_argument("--config", default=None, help="experiment TOML (default: embedded)")
            s.add_argument("--quick", action="store_true", help="apply the config's [quick] "
                           "overrides (fewer chi values and draws)")
        if name in ("run", "sample"):
            s.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def compilation_cache(out: pathlib.Path) -> str:
    """Persistent XLA cache (env JAX_COMPILATION_CACHE_DIR, else ~/.cache/bayesnet/jax)."""
    import jax

    path = os.environ.get("JAX_COMPILATION_CACHE_DIR")
    if not path:
        home = pathlib.Path.home() / ".cache" / "bayesnet" / "jax"
        try:
            home.mkdir(parents=True, exist_ok=True)
            path = str(home)
        except OSError:
            path = str(out / ".jax_cache")
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _experiment(args):
    """Config -> validated Experiment, and the prepared output folder."""
    from . import experiment as ex

    exp = ex.build(ex.load_config(args.config, quick=args.quick))
    out = ex.prepare_out(args.out)
    (out / "config.json").write_text(json.dumps(exp.config, indent=2))
    return exp, out


def _read_config(out: pathlib.Path):
    """The Experiment recorded in DIR/config.json by an earlier step."""
    from . import experiment as ex

    path = out / "config.json"
    if not path.is_file():
        raise ex.ConfigError(f"no {path}: run `bayesnet sample` or `bayesnet theory` first")
    return ex.build(json.loads(path.read_text()))


def _load(path: pathlib.Path, what: str):
    """Reopen a result file (ConfigError naming the step that writes it)."""
    import bayesnet

    from . import experiment as ex

    if not path.is_file():
        raise ex.ConfigError(f"no {what} file at {path}")
    return bayesnet.load(path)


def cmd_sample(args) -> dict:
    """Sample every network at every chi."""
    from . import experiment as ex

    exp, out = _experiment(args)
    compilation_cache(out)
    files = ex.sample_sweep(exp, out, progress=not args.no_progress)
    _log(f"samples saved in {out / 'samples'}")
    return files


def cmd_theory(args, exp=None, out=None) -> pathlib.Path:
    """Every theory for every network into DIR/theory.nc."""
    import bayesnet
    import xarray as xr

    from . import experiment as ex

    if exp is None:
        exp, out = _experiment(args)
        compilation_cache(out)
    preds = ex.theory_sweep(exp)
    tree = xr.DataTree.from_dict({name: ds for name, ds in preds.items()})
    tree.attrs = {"config": json.dumps(exp.config)}
    path = bayesnet.save(tree, out / "theory.nc")
    _log(f"theory saved in {path}")
    return path


def cmd_compare(args, exp=None, out=None, t_start=None) -> pathlib.Path:
    """Diagnostics and comparison of saved samples with saved theory into DIR/results.nc."""
    import bayesnet

    from . import experiment as ex

    out = pathlib.Path(args.out) if out is None else out
    exp = _read_config(out) if exp is None else exp
    theory_tree = _load(out / "theory.nc", "theory")
    trees, preds = {}, {}
    for name in exp.networks:
        files = ex.sample_files(out, name)
        if not files:
            raise ex.ConfigError(f"no samples of network {name!r} in {out / 'samples'}")
        trees[name] = [bayesnet.load(f) for f in files]
        if name not in theory_tree.children:
            raise ex.ConfigError(f"{out / 'theory.nc'} has no theory for network {name!r}")
        preds[name] = theory_tree[name].to_dataset()
    timing = {"total_s": time.perf_counter() - t_start} if t_start else {}
    results = ex.results_tree(exp, trees, preds, timing)
    path = bayesnet.save(results, out / "results.nc")
    _log(f"results saved in {path}")
    return path


def cmd_report(args, out=None) -> pathlib.Path:
    """DIR/report.md and figures from DIR/results.nc; prints the summary table."""
    from . import report

    out = pathlib.Path(args.out) if out is None else out
    results = _load(out / "results.nc", "results")
    path = report.write_report(results, out)
    print(report.summary_table(results))
    _log(f"report written to {path}")
    return path


def cmd_run(args) -> None:
    """The main job: sample, theory, compare, report in one folder."""
    from . import experiment as ex

    t0 = time.perf_counter()
    exp, out = _experiment(args)
    cache = compilation_cache(out)
    _log(f"bayesnet run: {len(exp.networks)} networks x {len(next(iter(exp.chis.values())))} "
         f"chi values, output in {out} (XLA cache {cache})")
    ex.sample_sweep(exp, out, progress=not args.no_progress)
    try:
        cmd_theory(args, exp, out)
        cmd_compare(args, exp, out, t_start=t0)
        cmd_report(args, out)
    except KeyboardInterrupt:
        n = sum(len(ex.sample_files(out, name)) for name in exp.networks)
        raise ex.Interrupted(out / "samples", n) from None
    _log(f"finished in {time.perf_counter() - t0:.1f}s")


COMMANDS = {"run": cmd_run, "sample": cmd_sample, "theory": cmd_theory, "compare": cmd_compare,
            "report": cmd_report}


def main(argv=None) -> int:
    """Entry point of the console script `bayesnet`."""
    from .experiment import ConfigError, Interrupted

    try:
        args = _parser().parse_args(argv)
        COMMANDS[args.command](args)
    except Interrupted as err:
        _log(str(err))
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        _log("interrupted")
        return EXIT_INTERRUPTED
    except (UsageError, ConfigError) as err:
        _log(f"bayesnet: error: {err}")
        return EXIT_BAD_INPUT
    except ValueError as err:
        _log(f"bayesnet: error: {' '.join(str(err).split())}")
        return EXIT_BAD_INPUT
    except OSError as err:
        _log(f"bayesnet: error: {err.strerror or err}: {err.filename or ''}".rstrip(": "))
        return EXIT_BAD_INPUT
    return 0


if __name__ == "__main__":
    sys.exit(main())
