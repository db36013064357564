"""Validation of NetworkSpec and data sets: every bad input is a one-line ValueError."""

import math

import numpy as np
import pytest

import bayesnet as bn
from bayesnet import datasets


def test_spec_defaults_and_scaling():
    s = bn.NetworkSpec(width=64, g_w=2.0, chi=4.0, kappa=0.5)
    assert s.readout_var == pytest.approx(2.0 / (4.0 * 64))
    assert s.noise_var == pytest.approx(0.5 / 4.0)
    mf = bn.NetworkSpec.from_gamma(64, 2.0)
    assert mf.chi == pytest.approx(64.0) and mf.gamma == pytest.approx(2.0)
    assert bn.NetworkSpec.from_gamma(64, 1.0).chi == 1.0
    assert bn.NetworkSpec.from_gamma(64, 1.5).chi == pytest.approx(8.0)
    assert bn.NetworkSpec.from_attrs(s.to_attrs()) == s
    sweep = s.to_attrs(prefix="net_", chi=False)  # one spec for a result over a chi dimension
    assert "net_chi" not in sweep and sweep["net_width"] == 64
    assert bn.NetworkSpec.from_attrs(sweep, prefix="net_") == s.replace(chi=1.0)


@pytest.mark.parametrize(
    "field,value",
    [
        ("width", 0),
        ("width", -3),
        ("width", 2.5),
        ("g_v", 0.0),
        ("g_v", -1.0),
        ("g_w", math.nan),
        ("chi", 0.0),
        ("chi", -2.0),
        ("chi", math.inf),
        ("kappa", 0.0),
        ("kappa", "a"),
        ("activation", "sigmoid"),
    ],
)
def test_spec_rejects(field, value):
    kwargs = {"width": 8, field: value}
    with pytest.raises(ValueError, match=field) as e:
        bn.NetworkSpec(**kwargs)
    assert "\n" not in str(e.value)


def test_ising_structure():
    d = bn.ising(n_train=400, n_test=10, dim=20, flip=0.2, seed=3)
    assert d.X.shape == (400, 20) and d.y.shape == (400,) and d.X_test.shape == (10, 20)
    assert set(np.unique(d.X)) == {-1.0, 1.0} and abs(d.y.sum()) == 0  # balanced classes
    proto = np.where(np.arange(20) < 10, 1.0, -1.0)
    agree = (d.X * d.y[:, None] * proto[None, :] > 0).mean()
    # fraction of unflipped spins: 0.8 with SE sqrt(0.16/8000) = 0.0045
    assert abs(agree - 0.8) < 5 * 0.0045
    again = bn.ising(n_train=400, n_test=10, dim=20, flip=0.2, seed=3)
    assert np.array_equal(d.X, again.X)


def test_teacher_and_xor():
    t = bn.teacher(n_train=50, n_test=5, dim=7, activation="erf", noise=0.0, seed=1)
    assert t.X.shape == (50, 7) and np.all(np.abs(t.y) < 1)
    x = bn.xor(n_train=200, n_test=20, dim=5, separation=2.0, noise=0.1, seed=0)
    assert np.allclose(x.y, np.sign(x.X[:, 0]) * np.sign(x.X[:, 1]))


GOOD = dict(X=np.ones((4, 3)), y=np.ones(4), X_test=np.ones((2, 3)), y_test=np.ones(2))


@pytest.mark.parametrize(
    "name,value,match",
    [
        ("X", np.ones(4), "X must have shape"),
        ("X", np.full((4, 3), np.nan), "X contains 12 NaN"),
        ("y", np.ones(5), "y must have length P=4"),
        ("y", np.array([1, 1, np.inf, 1.0]), "y contains 1 NaN/inf"),
        ("X_test", np.ones((2, 4)), "X_test must have D=3"),
        ("y_test", np.ones(3), "y_test must have length 2"),
        ("X", np.ones((0, 3)), "X must not be empty"),
        ("y", "abc", "y must be a numeric array"),
    ],
)
def test_from_arrays_rejects(name, value, match):
    args = dict(GOOD, **{name: value})
    with pytest.raises(ValueError, match=match) as e:
        bn.from_arrays(**args)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: bn.ising(n_train=0), "n_train"),
        (lambda: bn.ising(flip=0.7), "flip"),
        (lambda: bn.teacher(activation="sin"), "activation"),
        (lambda: bn.teacher(noise=-1), "noise"),
        (lambda: bn.xor(separation=0), "separation"),
        (lambda: datasets.make("svhn"), "dataset"),
        (lambda: bn.mnist(pos_class=3, neg_class=3), "must differ"),  # before any download
        (lambda: bn.cifar10(n_train=0), "n_train"),
    ],
)
def test_generators_reject(call, match):
    with pytest.raises(ValueError, match=match):
        call()
