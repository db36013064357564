"""Grid sweeps: content-addressed points, resume, faults, Dask execution, collect."""

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import xarray as xr

from analysis import collect, executor, grid
from analysis.point import compilation_cache
from analysis.store import FolderError, PointFileError, Store

ROOT = pathlib.Path(__file__).resolve().parent.parent

# Three tiny points: a linear net with the exact sampler at chi = 1 and chi = N, and one small
# collapsed-NUTS point.  Theories: NNGP and the exact linear posterior.
TINY = """
[data]
n_train = 6
n_test = 4
dim = 4
[sampler]
method = "collapsed"
chains = 2
warmup = 30
draws = 30
[theory]
methods = ["nngp", "exact"]
dense = 3
[[network]]
name = "lin"
width = 2
activation = "linear"
kappa = 0.5
chi = [1, "N"]
[network.sampler]
method = "exact"
[[network]]
name = "col"
width = 2
activation = "linear"
kappa = 0.5
chi = 1
"""


def plan(text, tmp_path, name="grid.toml"):
    path = tmp_path / name
    path.write_text(text)
    return grid.plan(grid.load_config(path))


def run_and_collect(g, folder, **kw):
    store = Store(folder).prepare()
    logs = []
    outcome = executor.run(
        g, store, progress=False, log=logs.append, cache_dir=compilation_cache(), **kw
    )
    sweep, tree = collect.collect(g, store, log=logs.append)
    return store, outcome, sweep, tree, logs


@pytest.fixture(scope="module")
def sequential(tmp_path_factory):
    """The tiny grid computed in this process (the reference of the other runs)."""
    tmp = tmp_path_factory.mktemp("seq")
    g = plan(TINY, tmp)
    store, outcome, sweep, tree, logs = run_and_collect(g, tmp / "out")
    return g, store, outcome, sweep, tree


@pytest.fixture(scope="module")
def cluster():
    """One 2-worker LocalCluster shared by the Dask tests (starting one is slow)."""
    from distributed import LocalCluster

    cache = compilation_cache()
    with LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=":0",
        env=executor.worker_env(cache),
    ) as c:
        yield c


def test_sequential_run_and_collect(sequential):
    g, store, outcome, sweep, tree = sequential
    assert (outcome.total, outcome.done, outcome.failed, outcome.computed) == (3, 3, 0, 3)
    manifest = json.loads(store.manifest_path.read_text())
    assert {e["state"] for e in manifest["points"].values()} == {"done"}
    for p in g.points:  # group-readable files under the usual umask, never 0600
        assert store.point_path(p.key).stat().st_mode & 0o044 == 0o044
    # the collected dataset opens lazily and chi is its coordinate
    with xr.open_dataset(store.root / "sweep.nc") as ds:
        assert not ds["f_train"].variable._in_memory
        assert set(ds.dims) >= {"network", "chi", "theory", "train"}
        assert sorted(ds["chi"].values) == [1.0, 2.0]
        lin = ds["f_train_relerr"].sel(network="lin", theory="exact")
        assert np.all(np.isfinite(lin.values))
    # the results tree keeps the layout of the report, plus the dense theory curves
    names = json.loads(tree.attrs["networks"])
    assert names == ["lin", "col"]
    assert set(tree["lin"].children) >= {
        "samples",
        "diagnostics",
        "theory",
        "comparison",
        "prior",
        "worst",
        "reference",
        "theory_dense",
    }
    assert tree["lin/theory_dense"].sizes["chi"] == 3
    np.testing.assert_array_equal(tree["lin/comparison"]["chi"].values, [1.0, 2.0])
    # every variable of results.nc says what it is and in which units; every dimension has a
    # coordinate
    with xr.open_datatree(store.root / "results.nc", engine="h5netcdf") as saved:
        for node in saved.subtree:
            ds = node.to_dataset(inherit=False)
            for name in ds.data_vars:
                assert {"long_name", "units"} <= set(ds[name].attrs), (node.path, name)
                assert "diagnostics of the convergence" not in ds[name].attrs["long_name"]
            assert set(ds.dims) <= set(ds.coords), (node.path, set(ds.dims) - set(ds.coords))


def _kill_first_running_worker(store: Store, killed: list, timeout=300) -> None:
    """SIGKILL the worker process of the first point seen running (its marker holds the pid)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for marker in store.points.glob("*.running"):
            try:
                pid = int(marker.read_text().split()[-1])
            except (OSError, ValueError, IndexError):
                continue
            os.kill(pid, signal.SIGKILL)
            killed.append(marker.stem)
            return
        time.sleep(0.02)


def _assert_same_up_to_rounding(a: xr.Dataset, b: xr.Dataset) -> None:
    """Same variables, coordinates and shapes; values equal to float64 rounding."""
    assert set(a.variables) == set(b.variables)
    for name in a.variables:
        x, y = a[name].values, b[name].values
        assert x.shape == y.shape, name
        if x.dtype.kind == "f":
            np.testing.assert_allclose(x, y, rtol=1e-9, atol=1e-12, err_msg=name)
        else:
            np.testing.assert_array_equal(x, y, err_msg=name)


def test_two_workers_agree_with_sequential_despite_a_killed_worker(sequential, cluster, tmp_path):
    """What is guaranteed across processes: a point is a pure function of its key (its seeds are
    in the key), so a worker process computes the same numbers as this one.  Workers run XLA
    with one thread (executor.XLA_ONE_THREAD), which may sum in another order: the guarantee is
    agreement to float64 rounding for the exact sampler and the theories, and for HMC (where a
    rounding difference could in principle change an accept decision and with it the chain)
    agreement within Monte-Carlo error.  With the same XLA flags a process is bit-for-bit
    reproducible, which the Ctrl-C test below checks."""
    g, ref_store, _, ref_sweep, ref_tree = sequential
    store = Store(tmp_path / "dask").prepare()
    killed = []
    killer = threading.Thread(target=_kill_first_running_worker, args=(store, killed))
    killer.start()
    outcome = executor.run(
        g,
        store,
        scheduler=cluster.scheduler_address,
        progress=False,
        log=lambda m: None,
        cache_dir=compilation_cache(),
    )
    killer.join()
    assert killed, "no point was seen running"
    assert (outcome.done, outcome.failed, outcome.computed) == (3, 0, 3)
    # the manifest agrees with the outcome, and no marker or half-written file is left
    assert {e["state"] for e in store.read_manifest().values()} == {"done"}
    assert not list(store.points.glob("*.running")) and not list(store.points.glob(".*.tmp"))
    sweep, _ = collect.collect(g, store, log=lambda m: None)
    # the exact sampler's network and every theory value: the same to rounding
    _assert_same_up_to_rounding(sweep.sel(network="lin"), ref_sweep.sel(network="lin"))
    theory_vars = [v for v in sweep.data_vars if str(v).endswith("_theory")]
    _assert_same_up_to_rounding(sweep[theory_vars], ref_sweep[theory_vars])
    # the NUTS network: the same posterior means within Monte-Carlo error (equal when no
    # rounding difference changed a trajectory, as on the machines tried so far)
    col, ref = sweep.sel(network="col"), ref_sweep.sel(network="col")
    for name in ("f_train", "f_test", "kernel_target"):
        se = np.sqrt(col[f"{name}_mcse"] ** 2 + ref[f"{name}_mcse"] ** 2)
        not_run = col[name].isnull() & ref[name].isnull()  # col has one chi of the two
        assert bool(((abs(col[name] - ref[name]) <= 4.5 * se) | not_run).all()), name
        assert int((~not_run).sum()) > 0
    for p in g.points:
        if p.network != "lin":
            continue
        with (
            xr.open_dataset(store.point_path(p.key), group="posterior") as a,
            xr.open_dataset(ref_store.point_path(p.key), group="posterior") as b,
        ):
            _assert_same_up_to_rounding(a.load(), b.load())


def test_a_rerun_removes_half_written_files(sequential, tmp_path):
    g, ref_store, *_ = sequential
    folder = tmp_path / "copy"
    shutil.copytree(ref_store.root, folder, ignore=shutil.ignore_patterns(".lock"))
    store = Store(folder)
    left = store.points / f".{g.points[0].key}.nc.host.123.tmp"  # a killed writer's leftover
    left.write_bytes(b"half a file")
    outcome = executor.run(g, store, progress=False, log=lambda m: None)
    assert outcome.computed == 0 and not left.exists()


def _wait_for_done(manifest: pathlib.Path, proc, timeout=300) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        try:
            points = json.loads(manifest.read_text())["points"]
            if any(e["state"] == "done" for e in points.values()):
                return
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.05)
    raise AssertionError(f"no point finished: {proc.stderr.read() if proc.stderr else ''}")


# A fourth point far longer than the SIGINT's delay (10^6 draws per chain): the interrupt always
# comes before the sweep ends, however fast the machine is.
SLOW = (
    TINY
    + """
[[network]]
name = "slow"
width = 2
activation = "linear"
kappa = 0.5
chi = 1
[network.sampler]
draws = 1000000
"""
)


def test_ctrl_c_exits_130_and_resume_skips_finished_points(sequential, tmp_path):
    g, _, _, ref_sweep, _ = sequential
    cfg = tmp_path / "grid.toml"
    cfg.write_text(SLOW)
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "analysis.cli",
            "run",
            "--config",
            str(cfg),
            "--out",
            str(out),
            "--no-progress",
        ],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    _wait_for_done(out / "manifest.json", proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("interrupted: ") and str(out / "points") in last and "resume" in last
    store = Store(out)
    states = {k: e["state"] for k, e in store.read_manifest().items()}
    done = [k for k, s in states.items() if s == "done"]
    slow = next(p.key for p in grid.load(cfg).points if p.network == "slow")
    assert states[slow] == "pending" and not store.point_path(slow).exists()
    assert 1 <= len(done) <= 3 and set(states.values()) <= {"done", "pending"}
    mtimes = {k: store.point_path(k).stat().st_mtime_ns for k in done}
    assert all(store.check_point(k) is None for k in done)
    # resume: the finished points are skipped, not recomputed
    _, outcome, sweep, _, logs = run_and_collect(g, out)
    assert f"{len(done)} of 3 points done, resuming" in logs
    assert outcome.computed == 3 - len(done)
    assert {k: store.point_path(k).stat().st_mtime_ns for k in done} == mtimes
    xr.testing.assert_equal(sweep, ref_sweep)  # the same XLA flags: bit for bit


def test_point_invalid_at_run_time_fails_alone(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("a.npz", "b.npz"):
        np.savez(
            tmp_path / name,
            X=rng.standard_normal((6, 3)),
            y=np.sign(rng.normal(size=6)),
            X_test=rng.standard_normal((4, 3)),
            y_test=np.ones(4),
        )
    text = """
[data]
name = "file"
file = ["a.npz", "b.npz"]
[sampler]
method = "exact"
chains = 2
draws = 20
[theory]
methods = ["exact"]
dense = 0
[[network]]
name = "lin"
width = 2
chi = 1
"""
    g = plan(text, tmp_path)
    (tmp_path / "b.npz").write_bytes(b"not an npz any more")  # broken after validation
    store = Store(tmp_path / "out").prepare()
    outcome = executor.run(g, store, progress=False, log=lambda m: None)
    assert (outcome.done, outcome.failed) == (1, 1)
    entries = store.read_manifest()
    failed = [e for e in entries.values() if e["state"] == "failed"]
    assert "b.npz" in failed[0]["error"] and "\n" not in failed[0]["error"]
    # a rerun skips it unless asked to retry
    again = executor.run(g, store, progress=False, log=lambda m: None)
    assert (again.computed, again.failed) == (0, 1)


def _flip_a_bit_in_the_draws(path: pathlib.Path) -> None:
    """Flip one bit inside the stored draws of f_train (not in the file's metadata)."""
    import h5py

    with h5py.File(path, "r") as f:
        offset = f["posterior/f_train"].id.get_chunk_info(0).byte_offset
    data = bytearray(path.read_bytes())
    data[offset + 11] ^= 0x10
    path.write_bytes(bytes(data))


def test_truncated_or_bit_flipped_point_files_are_named_and_recomputed(sequential, tmp_path):
    g, ref_store, _, ref_sweep, _ = sequential
    folder = tmp_path / "copy"
    shutil.copytree(ref_store.root, folder, ignore=shutil.ignore_patterns(".lock"))
    store = Store(folder)
    truncated, flipped = (store.point_path(g.points[k].key) for k in (1, 2))
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    _flip_a_bit_in_the_draws(flipped)
    logs = []
    sweep, _ = collect.collect(g, store, log=logs.append)  # never crashes
    for path, k in ((truncated, 1), (flipped, 2)):
        assert any(str(path) in line for line in logs), logs
        entry = store.read_manifest()[g.points[k].key]
        assert entry["state"] == "failed" and str(path) in entry["error"]
    with pytest.raises(PointFileError, match=str(truncated)):
        store.open_point(g.points[1].key)
    assert list(sweep["network"].values) == ["lin"] and list(sweep["chi"].values) == [1.0]
    outcome = executor.run(g, store, progress=False, log=logs.append)
    assert outcome.computed == 2 and any(
        "recomputing" in line and str(truncated) in line for line in logs
    )
    sweep, _ = collect.collect(g, store, log=logs.append)
    xr.testing.assert_equal(sweep, ref_sweep)


def test_changed_kappa_gives_new_keys(sequential, tmp_path):
    g, ref_store, *_ = sequential
    g2 = plan(TINY.replace("kappa = 0.5", "kappa = 0.6"), tmp_path)
    assert not {p.key for p in g.points} & {p.key for p in g2.points}
    entries, todo = executor.plan_states(g2, ref_store, retry_failed=False, log=lambda m: None)
    assert len(todo) == 3 and {e["state"] for e in entries.values()} == {"pending"}


def test_fresh_clears_the_store(sequential, tmp_path):
    g, ref_store, *_ = sequential
    folder = tmp_path / "copy"
    shutil.copytree(ref_store.root, folder, ignore=shutil.ignore_patterns(".lock"))
    store = Store(folder)
    store.clear()
    assert not list(store.points.iterdir()) and not store.manifest_path.exists()
    assert not (folder / "sweep.nc").exists() and not (folder / "results.nc").exists()


def test_lock_against_a_second_run(tmp_path):
    store = Store(tmp_path / "out").prepare()
    with store.locked():
        with pytest.raises(FolderError, match="in use by another bayesnet run"):
            with Store(tmp_path / "out").locked():
                pass
    with Store(tmp_path / "out").locked():  # released afterwards
        pass


def test_grid_axes_and_chi_rules(tmp_path):
    text = """
[data]
n_train = 6
n_test = 4
dim = 4
seed = [0, 1]
[theory]
methods = ["nngp"]
[[network]]
name = "erf"
width = [4, 16]
activation = "erf"
chi = [1, "sqrt(N)", "N"]
"""
    g = plan(text, tmp_path)
    assert len(g) == 2 * 2 * 3
    chis = {(p.spec.width, p.chi_rule): p.chi for p in g.points}
    assert chis[(16, "sqrt(N)")] == 4.0 and chis[(4, "N")] == 4.0 and chis[(4, "1")] == 1.0
    series = grid.series_of(g.points)
    assert sorted(series) == [
        "erf_width16_seed0",
        "erf_width16_seed1",
        "erf_width4_seed0",
        "erf_width4_seed1",
    ]
    log_grid = grid.chi_points({"min": 1, "max": "N", "num": 3}, 16)
    assert log_grid == [("1", 1.0), ("N^0.5", 4.0), ("N", 16.0)]


@pytest.mark.parametrize(
    "text, words",
    [
        ('[[network]]\nname = "a"\nwidth = [4, "x"]\n', ["network[0].width", "int"]),
        ('[[network]]\nname = "a"\nwidth = 4\nchi = "cube(N)"\n', ["network[0].chi", "cube(N)"]),
        ('[[network]]\nname = "a"\nwidth = 4\nchi = [1, 1.0]\n', ["network[0].chi"]),
        ("[sampler]\nchains = [2, 0]\n", ["sampler", "chains"]),
        ("[data]\nseed = []\n", ["data.seed", "empty"]),
        ('[theory]\nmethods = ["magic"]\n', ["theory.methods", "magic"]),
    ],
)
def test_bad_grid_one_line_error(tmp_path, text, words):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(grid.ConfigError) as err:
        grid.plan(grid.load_config(path))
    line = str(err.value)
    assert "\n" not in line and all(w in line for w in words), line


def test_quick_shrinks_any_grid_and_never_grows_one(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text(
        "[sampler]\ndraws = [77, 5000]\n[chi]\nnum = 9\n"
        '[[network]]\nname = "a"\nwidth = 64\n[network.sampler]\nwarmup = 9000\n'
        '[[network]]\nname = "b"\nwidth = 8\nchi = {min = 1, max = "N", num = 2}\n'
    )
    cfg = grid.load_config(path)
    assert cfg["sampler"]["draws"] == [77, 5000] and "quick" not in cfg
    limits = grid.default_config()["quick"]
    quick = grid.load_config(path, quick=True)  # no [quick] table: capped at the default's
    assert quick["sampler"]["draws"] == [77, limits["sampler"]["draws"]]
    assert quick["sampler"]["warmup"] == limits["sampler"]["warmup"]
    assert quick["network"][0]["sampler"]["warmup"] == limits["sampler"]["warmup"]
    assert quick["chi"]["num"] == limits["chi"]["num"] and quick["network"][1]["chi"]["num"] == 2
    assert [n["width"] for n in quick["network"]] == [64, 8]  # networks are the user's
    assert quick["data"]["n_train"] <= limits["data"]["n_train"]
    assert len(grid.plan(quick)) < len(grid.plan(cfg))
    path.write_text("[sampler]\ndraws = 77\n[quick.sampler]\ndraws = 5\n")
    assert grid.load_config(path, quick=True)["sampler"]["draws"] == 5  # the file's own [quick]
    assert grid.load_config(None, quick=True)["network"][0]["width"] == 16  # the default's own


def test_config_errors_name_the_file(tmp_path):
    path = tmp_path / "mine.toml"
    for text, words in (
        ("[sampler]\ndrawz = 3\n", ["unknown key 'sampler.drawz'"]),
        ('[[network]]\nname = "a"\nwidth = 4\nchi = "cube(N)"\n', ["network[0].chi"]),
        ("", ["is empty"]),
    ):
        path.write_text(text)
        with pytest.raises(grid.ConfigError) as err:
            grid.load(path)
        assert str(path) in str(err.value) and all(w in str(err.value) for w in words)


def test_sampler_table_is_the_sampler_options(tmp_path):
    """Every SamplerOptions field is a [sampler] key, checked by SamplerOptions itself."""
    from bayesnet.sampling import SamplerOptions

    text = TINY.replace("draws = 30\n", 'draws = 30\ndtype = "float32"\nchunk = 10\n')
    g = plan(text, tmp_path)
    col = next(p for p in g.points if p.network == "col")
    assert dict(col.sampler)["dtype"] == "float32" and dict(col.sampler)["chunk"] == 10
    assert set(dict(col.sampler)) <= set(SamplerOptions.fields())
    path = tmp_path / "bad.toml"
    path.write_text(TINY.replace("chains = 2", "chains = 0"))
    with pytest.raises(grid.ConfigError, match="chains") as err:
        grid.load(path)
    assert str(path) in str(err.value)
