"""Real-image binary tasks: digits offline; MNIST and CIFAR-10 when the network is reachable."""

import pathlib
import socket

import numpy as np
import pytest

import bayesnet as bn
from bayesnet import datasets

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _online() -> bool:
    """Whether OpenML answers a TCP connect within 2 s (the MNIST/CIFAR tests need it)."""
    try:
        socket.create_connection(("www.openml.org", 443), timeout=2).close()
        return True
    except OSError:
        return False


def test_digits_shapes_standardisation_labels():
    d = bn.digits(n_train=60, n_test=41, dim=20, pos_class=3, neg_class=8, seed=1)
    assert d.X.shape == (60, 20) and d.X_test.shape == (41, 20)
    assert d.name == "digits" and d.to_attrs()["data_pos_class"] == 3
    # centred on the training set, mean squared norm D, so (g_v/D) x.x has mean diagonal g_v
    np.testing.assert_allclose(d.X.mean(axis=0), 0.0, atol=1e-12)
    assert np.mean(np.sum(d.X**2, axis=1)) == pytest.approx(20.0, rel=1e-12)
    # principal directions: uncorrelated training coordinates with decreasing variance
    cov = d.X.T @ d.X / 60
    np.testing.assert_allclose(cov - np.diag(np.diag(cov)), 0.0, atol=1e-10)
    assert np.all(np.diff(np.diag(cov)) <= 1e-10)
    # balanced +1 / -1 labels; test points from the same distribution (norms within 30%)
    assert sorted(set(d.y)) == [-1.0, 1.0] and d.y.sum() == 0.0 and d.y_test.sum() == 1.0
    assert np.mean(np.sum(d.X_test**2, axis=1)) == pytest.approx(20.0, rel=0.3)


def test_digits_labels_follow_the_images_and_sets_are_disjoint():
    """Labels are the classes: a nearest-centroid rule fitted on train classifies test points
    (1 against 7 is nearly separable); train and test share no image."""
    d = bn.digits(n_train=80, n_test=80, dim=16, pos_class=1, neg_class=7, seed=3)
    c_pos, c_neg = d.X[d.y > 0].mean(0), d.X[d.y < 0].mean(0)  # (D,)
    pred = np.where(
        np.sum((d.X_test - c_pos) ** 2, 1) < np.sum((d.X_test - c_neg) ** 2, 1), 1.0, -1.0
    )
    assert np.mean(pred == d.y_test) > 0.9
    rows = {tuple(np.round(r, 9)) for r in d.X}
    assert not any(tuple(np.round(r, 9)) in rows for r in d.X_test)


def test_digits_deterministic_and_seeded():
    a, b = bn.digits(seed=5), bn.digits(seed=5)
    np.testing.assert_array_equal(a.X, b.X)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    assert not np.array_equal(a.y, bn.digits(seed=6).y)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"pos_class": 10}, "pos_class"),
        ({"neg_class": 1}, "must differ"),
        ({"n_train": 300, "n_test": 100}, "needs"),
        ({"dim": 0}, "dim"),
        ({"n_train": 20, "dim": 40}, "dim must be <="),
    ],
)
def test_digits_rejects(kwargs, match):
    with pytest.raises(ValueError, match=match):
        bn.digits(**kwargs)


def test_unfetchable_set_says_where_to_put_the_file(tmp_path, monkeypatch):
    """A failed download is one line naming the file, its arrays and the folder."""
    import sklearn.datasets

    def fail(*args, **kwargs):
        raise OSError("<urlopen error [Errno -2] Name or service not known>")

    monkeypatch.setenv("BAYESNET_DATA", str(tmp_path / "cache"))
    monkeypatch.setattr(sklearn.datasets, "fetch_openml", fail)
    for loader, file, pixels in (
        (bn.mnist, "mnist_784.npz", 784),
        (bn.cifar10, "CIFAR_10.npz", 3072),
    ):
        with pytest.raises(FileNotFoundError) as err:
            loader(n_train=10, n_test=10, dim=5)
        msg = str(err.value)
        assert "\n" not in msg and file in msg and str(tmp_path / "cache") in msg
        assert f"(n, {pixels}) uint8" in msg and "BAYESNET_DATA" in msg


def test_cached_file_is_used_without_network(tmp_path, monkeypatch):
    """A file placed as the error says is read, and the pair task is built from it."""
    import sklearn.datasets

    monkeypatch.setattr(sklearn.datasets, "fetch_openml", lambda *a, **k: 1 / 0)
    monkeypatch.setenv("BAYESNET_DATA", str(tmp_path))
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, size=(200, 784), dtype=np.uint8)
    y = np.repeat(np.arange(10), 20)
    np.savez(tmp_path / "mnist_784.npz", X=X, y=y)
    d = bn.mnist(n_train=20, n_test=10, dim=8, pos_class=2, neg_class=9)
    assert d.X.shape == (20, 8) and d.X_test.shape == (10, 8)
    assert np.mean(np.sum(d.X**2, axis=1)) == pytest.approx(8.0)


@pytest.mark.slow
@pytest.mark.skipif(not _online(), reason="offline: www.openml.org:443 not reachable in 2 s")
@pytest.mark.parametrize("loader", [bn.mnist, bn.cifar10])
def test_openml_sets_download_once(loader):
    d = loader(n_train=40, n_test=20, dim=10)
    assert d.X.shape == (40, 10) and d.X_test.shape == (20, 10)
    assert sorted(set(d.y)) == [-1.0, 1.0]
    assert (datasets.data_home() / f"{datasets.OPENML[d.name][0]}.npz").is_file()


def test_digits_grid_runs_end_to_end(tmp_path):
    """`bayesnet run` on a digits grid: the example config's [quick] tables, exact sampler."""
    from analysis import cli

    text = (ROOT / "examples/digits.toml").read_text()
    text = text.replace('method = "collapsed"', 'method = "exact"')
    text = text.replace('activation = "erf"', 'activation = "linear"')
    cfg = tmp_path / "digits.toml"
    cfg.write_text(text)
    out = tmp_path / "run"
    code = cli.main(["run", "--config", str(cfg), "--quick", "--out", str(out), "--no-progress"])
    assert code == 0
    import xarray as xr

    with xr.open_datatree(out / "results.nc") as tree:
        assert tree["erf/comparison"].sizes["chi"] == 2
        attrs = tree["data"].attrs
        assert attrs["data_name"] == "digits" and attrs["dim"] == 8 and attrs["n_train"] == 16
        assert np.all(np.isfinite(tree["erf/theory"]["f_train"].values))
