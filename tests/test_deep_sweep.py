"""depth as a grid axis: planning, an end-to-end `bayesnet run` with depth = [1, 2, 3], and the
depth-ladder figure."""

from __future__ import annotations

import pytest
import xarray as xr

from analysis import figures, grid

DEEP = """
[data]
n_train = 6
n_test = 4
dim = 4
[sampler]
method = "collapsed"
chains = 2
warmup = 40
draws = 40
[chi]
values = [1, "N"]
[theory]
methods = ["nngp", "rescaling_tree", "tree", "one_loop", "exact"]
dense = 2
[[network]]
name = "deep"
width = 3
activation = "linear"
depth = [1, 2, 3]
kappa = 0.5
"""


def _plan(text, tmp_path):
    path = tmp_path / "g.toml"
    path.write_text(text)
    return grid.plan(grid.load_config(path))


def test_depth_is_a_grid_axis(tmp_path):
    g = _plan(DEEP, tmp_path)
    assert sorted({p.spec.depth for p in g.points}) == [1, 2, 3]
    assert len(g.points) == 6
    for p in g.points:
        assert p.coords()["depth"] == p.spec.depth
        if p.spec.depth > 1:  # the deep methods only (no one_loop at depth > 1)
            assert p.methods == ("nngp", "rescaling_tree", "tree", "exact")
        else:
            assert "one_loop" in p.methods
    assert len(grid.series_of(g.points)) == 3
    # depth 1 points keep the keys they had before depth existed (depth not in their spec dict)
    assert all("depth" not in p.spec.to_dict() for p in g.points if p.spec.depth == 1)


def test_exact_sampler_rejected_for_deep_networks(tmp_path):
    text = DEEP.replace('method = "collapsed"', 'method = "exact"')
    with pytest.raises(grid.ConfigError, match="depth"):
        _plan(text, tmp_path)


def test_bad_depth_names_the_key(tmp_path):
    with pytest.raises(grid.ConfigError, match="depth"):
        _plan(DEEP.replace("depth = [1, 2, 3]", "depth = 0"), tmp_path)


@pytest.mark.slow
def test_depth_grid_runs_end_to_end(tmp_path, capsys):
    from analysis import cli

    cfg = tmp_path / "deep.toml"
    cfg.write_text(DEEP)
    out = tmp_path / "out"
    code = cli.main(["run", "--config", str(cfg), "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 0, err[-2000:]
    assert "6 of 6 points done" in err
    with xr.open_dataset(out / "sweep.nc") as sweep:
        assert list(sweep["depth"].values) == [1, 2, 3]
        ladder = figures.depth_ladder_from_sweep(sweep.load(), chi=3.0)
    assert set(ladder["relerr"].dims) == {"depth", "theory"}
    fig = figures.depth_ladder_figure(ladder)
    fig.savefig(tmp_path / "ladder.png")
    report = (out / "report.md").read_text()
    assert "depth" in report
