"""The `bayesnet` command line: the quick main job end to end, single steps, bad input."""

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import xarray as xr

ROOT = pathlib.Path(__file__).resolve().parent.parent
BAYESNET = [sys.executable, "-c", "import sys; from analysis.cli import main; sys.exit(main())"]


def bayesnet(*args, cwd=None, timeout=600):
    """Run the CLI in a subprocess; returns the CompletedProcess."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(
        BAYESNET + [str(a) for a in args],
        capture_output=True,
        text=True,
        cwd=cwd or ROOT,
        env=env,
        timeout=timeout,
    )


def assert_bad_input(proc, *words):
    """Exit status 2, exactly one line on stderr naming the problem, no traceback."""
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for w in words:
        assert w in lines[0], lines[0]


def main_in_process(capsys, *args):
    """Run analysis.cli.main in this process (fast); returns (exit code, stderr)."""
    from analysis import cli

    code = cli.main([str(a) for a in args])
    return subprocess.CompletedProcess(args, code, "", capsys.readouterr().err)


TINY = """
[data]
n_train = 10
n_test = 6
dim = 6
[sampler]
method = "exact"
chains = 2
draws = 60
[chi]
num = 2
[theory]
methods = ["nngp", "one_loop", "exact"]
dense = 3
[[network]]
name = "lin"
width = 4
activation = "linear"
kappa = 0.5
"""


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("quick") / "run"
    proc = bayesnet("run", "--quick", "--out", out, "--no-progress")
    return out, proc


def test_run_quick_end_to_end(quick_run):
    out, proc = quick_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    with xr.open_datatree(out / "results.nc") as tree:
        names = set(tree.children)
        assert {"data", "linear", "erf"} <= names
        comp = tree["linear/comparison"].to_dataset()
        assert {"chi", "theory"} <= set(comp.dims)
        assert "exact" in comp["theory"].values
        assert set(tree["linear"].children) >= {
            "samples",
            "diagnostics",
            "theory",
            "comparison",
            "reference",
            "theory_dense",
        }
        assert [
            f"{n.path}:{v}"
            for n in tree.subtree
            for v in n.data_vars  # self-describing
            if "long_name" not in n[v].attrs
        ] == []
        assert "feature" in tree["data"].coords and isinstance(
            tree["linear"].attrs["width"], (int, np.integer)
        )
    with xr.open_dataset(out / "sweep.nc") as ds:
        assert set(ds["network"].values) == {"linear", "erf"} and ds.sizes["chi"] == 3
    report = (out / "report.md").read_text()
    assert "| network | chi |" in report and "exact" in report
    figs = sorted((out / "figures").glob("*.png"))
    assert len(figs) >= 8 and all(f.stat().st_size > 1000 for f in figs)
    assert len(list((out / "points").glob("*.nc"))) == 6
    assert "| linear |" in proc.stdout  # the summary table is printed


def test_run_collect_report_and_resume(tmp_path, capsys):
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TINY)
    out = tmp_path / "steps"
    proc = main_in_process(capsys, "run", "--config", cfg, "--out", out, "--no-progress")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "2 of 2 points done (2 computed now" in proc.stderr
    (out / "results.nc").unlink()
    for step in (("collect", out), ("report", out)):
        proc = main_in_process(capsys, *step)
        assert proc.returncode == 0, proc.stderr[-2000:]
    with xr.open_datatree(out / "results.nc") as tree:
        assert tree["lin/comparison"].sizes["chi"] == 2
    proc = main_in_process(capsys, "run", "--config", cfg, "--out", out, "--no-progress")
    assert "2 of 2 points done, resuming" in proc.stderr and "(0 computed now" in proc.stderr
    # a missing point: collect and report still write their files, list it, and exit 1
    from analysis.store import Store

    gone = sorted((out / "points").glob("*.nc"))[0]
    gone.unlink()
    for step in ("collect", "report"):
        proc = main_in_process(capsys, step, out)
        assert proc.returncode == 1, proc.stderr[-2000:]
        assert "1 of 2 points are missing" in proc.stderr and "lin N=4" in proc.stderr
    assert "Incomplete: 1 of 2 points are missing" in (out / "report.md").read_text()
    assert Store(out).read_manifest()[gone.stem]["state"] == "done"  # collect never recomputes


def _npz(path, **over):
    rng = np.random.default_rng(0)
    arrays = {
        "X": rng.standard_normal((8, 4)),
        "y": np.sign(rng.standard_normal(8)),
        "X_test": rng.standard_normal((5, 4)),
        "y_test": np.ones(5),
    }
    arrays.update(over)
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize(
    "text, words",
    [
        ("[sampler]\nwarmupp = 3\n", ["unknown key", "sampler.warmupp"]),
        ('[sampler]\nchains = "four"\n', ["sampler.chains", "int"]),
        ('[[network]]\nname = "a"\nwidth = -3\n', ["width"]),
        ("[colour]\nx = 1\n", ["unknown section", "colour"]),
        ("[chi]\nnum = 1.5\n", ["chi.num"]),
        ("[data\nname = 1\n", ["not valid TOML"]),
        ("# only a comment\n", ["is empty", "[[network]]"]),
        ("", ["is empty"]),
        ('[[network]]\nname = "a"\nwidth = 4\nchi = "cube(N)"\n', ["network[0].chi"]),
        ('[sampler]\nalgorithm = "hmc"\n', ["algorithm", "hmc"]),
    ],
)
def test_bad_config_exits_2(tmp_path, capsys, text, words):
    """One line naming the key and the config file."""
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    assert_bad_input(
        main_in_process(capsys, "run", "--config", cfg, "--out", tmp_path / "o"),
        str(cfg),
        *words,
    )


def test_version(capsys):
    from analysis import cli
    from bayesnet import __version__

    with pytest.raises(SystemExit) as stop:
        cli.main(["--version"])
    assert stop.value.code == 0 and capsys.readouterr().out.strip() == f"bayesnet {__version__}"


@pytest.mark.parametrize(
    "arrays, words",
    [
        ({"X": np.array([[np.nan, 1, 2, 3]] * 8)}, ["NaN"]),
        ({"y": np.ones(7)}, ["y must have length"]),
        ({"X_test": np.ones((5, 3))}, ["X_test"]),
    ],
)
def test_bad_data_file_exits_2(tmp_path, capsys, arrays, words):
    data = _npz(tmp_path / "data.npz", **arrays)
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(f'[data]\nname = "file"\nfile = "{data.name}"\n')
    assert_bad_input(
        main_in_process(capsys, "run", "--config", cfg, "--out", tmp_path / "o"), "data.npz", *words
    )


def test_bad_input_in_a_real_process_exits_2(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert_bad_input(bayesnet("run", "--out", blocker / "sub"), "not writable")
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[sampler]\nwarmupp = 3\n")
    assert_bad_input(bayesnet("run", "--config", cfg, "--out", tmp_path / "o"), "warmupp")


def test_unwritable_output_and_missing_files_exit_2(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    run = lambda *a: main_in_process(capsys, *a)  # noqa: E731
    assert_bad_input(run("run", "--out", blocker / "sub"), "not writable")
    assert_bad_input(run("run", "--config", tmp_path / "none.toml"), "not found")
    assert_bad_input(run("collect", tmp_path / "empty"), "empty")
    (tmp_path / "empty").mkdir()
    assert_bad_input(run("collect", tmp_path / "empty"), "grid.json")
    assert_bad_input(run("report", tmp_path / "empty"), "results")
    (tmp_path / "empty" / "results.nc").write_bytes(b"\x89HDF\r\n garbage")
    assert_bad_input(run("report", tmp_path / "empty"), "results.nc", "unreadable")
    assert_bad_input(run("frobnicate"), "invalid choice")
    assert_bad_input(run("run", "--chains", "3"), "unrecognized arguments")
    assert_bad_input(run("run", "--workers", "0"), "--workers")
    assert_bad_input(run("run", "--workers", "2", "--scheduler", "tcp://x:1"), "not allowed")


def test_internal_errors_keep_their_traceback(tmp_path, monkeypatch):
    from analysis import cli, grid

    def broken(config):
        raise ValueError("an internal bug, not the user's input")

    monkeypatch.setattr(grid, "plan", broken)
    with pytest.raises(ValueError, match="internal bug"):
        cli.main(["run", "--out", str(tmp_path / "o")])


def test_interrupt_keeps_finished_points(tmp_path, monkeypatch, capsys):
    import bayesnet as bn
    from analysis import cli
    from analysis.store import Store

    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TINY)
    calls = []
    real_sample = bn.sample

    def interrupted_second_time(spec, data, **kw):
        if calls:
            raise KeyboardInterrupt
        calls.append(spec.chi)
        return real_sample(spec, data, **kw)

    monkeypatch.setattr(bn, "sample", interrupted_second_time)
    code = cli.main(["run", "--config", str(cfg), "--out", str(tmp_path / "o"), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 130
    assert err[-1].startswith("interrupted: 1 of 2 points are saved in")
    assert str(tmp_path / "o" / "points") in err[-1] and "resume" in err[-1]
    states = sorted(e["state"] for e in Store(tmp_path / "o").read_manifest().values())
    assert states == ["done", "pending"]
    assert len(list((tmp_path / "o" / "points").glob("*.nc"))) == 1


def test_interrupt_while_collecting_says_so(tmp_path, monkeypatch, capsys):
    import json

    from analysis import cli, collect, grid

    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TINY)
    out = tmp_path / "o"
    out.mkdir()  # what collect reads first: the grid of the run (no point is needed here)
    (out / "grid.json").write_text(json.dumps(grid.load_config(cfg)))

    def interrupted(*args, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(collect, "collect", interrupted)
    code = cli.main(["collect", str(out)])
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 130 and last.startswith("interrupted while collecting"), last
    assert "unchanged" in last and "before any point" not in last


def test_theory_failure_keeps_its_traceback(tmp_path, monkeypatch, capsys):
    """A theory that raises: the point is done without it, and the log holds the traceback."""
    import theory
    from analysis.store import Store

    real = theory.predict

    def broken(spec, data, chis, method="tree", **kw):
        if method == "one_loop":
            raise ValueError("a bug deep inside one_loop")
        return real(spec, data, chis, method, **kw)

    monkeypatch.setattr(theory, "predict", broken)
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TINY.replace("num = 2", "num = 1"))
    out = tmp_path / "o"
    proc = main_in_process(capsys, "run", "--config", cfg, "--out", out, "--no-progress")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "theory failed: one_loop: ValueError: a bug deep inside one_loop" in proc.stderr
    (key,) = Store(out).read_manifest()
    log = Store(out).log_path(key).read_text()
    assert "Traceback" in log and "a bug deep inside one_loop" in log and "def broken" not in log


def test_failed_point_whose_log_cannot_be_written(tmp_path):
    """The error line says where the traceback could not go, instead of pointing at no file."""
    from analysis import grid, point
    from analysis.store import Store

    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TINY.replace("num = 2", "num = 1"))
    (p,) = grid.load(cfg).points
    store = Store(tmp_path / "o").prepare()
    store.log_path(p.key).mkdir()  # a folder where the log file should go
    result = point.failure(p, store.root, RuntimeError("boom"))
    assert result["log"] is None and "RuntimeError: boom" in result["error"]
    assert (
        "could not be written" in result["error"] and str(store.log_path(p.key)) in result["error"]
    )
