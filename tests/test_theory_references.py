"""bench/theory_references.py, pure parts: loading reference cases, pooling, error arithmetic."""

from __future__ import annotations

import json
import math
import pathlib
import sys

import numpy as np
import pytest

BENCH = pathlib.Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))
import theory_references as tr  # noqa: E402

RUN1 = BENCH / "results" / "references" / "h200_run1.json"


def _toy_file(path, seed, f_train, mcse):
    """A reference file with one tiny case (the schema of bench/references.py)."""
    rng = np.random.default_rng(0)  # the same data in every file
    data = {
        "data_name": "toy",
        "X": rng.standard_normal((3, 2)).tolist(),
        "y": rng.standard_normal(3).tolist(),
        "X_test": rng.standard_normal((2, 2)).tolist(),
        "y_test": rng.standard_normal(2).tolist(),
        "kappa": 0.2,
    }
    spec = {"width": 8, "activation": "erf", "g_v": 1.0, "g_w": 1.0, "chi": 8.0, "kappa": 0.2}
    case = {"spec": spec, "dataset": "toy", "seed": seed}
    for k in tr.OBSERVABLES:
        n = 3 if k.endswith("train") else 2 if k.endswith("test") else None
        val = f_train if k == "f_train" else (np.ones(n) if n else 1.0)
        err = mcse if k == "f_train" else (0.1 * np.ones(n) if n else 0.1)
        case[k], case[f"{k}_mcse"] = np.asarray(val).tolist(), np.asarray(err).tolist()
    path.write_text(json.dumps({"datasets": {"toy": data}, "cases": [case]}))
    return data


def test_stored_case_round_trips_into_a_dataset():
    """The Dataset built from a stored case holds exactly the stored arrays, and they are the
    arrays the reference script's data generator makes here (the references stay valid)."""
    from references import make_data

    cases, _ = tr.load_cases([str(RUN1)])
    raw = json.loads(RUN1.read_text())
    for name in ("teacher", "ising"):
        case = next(c for c in cases if c.dataset == name)
        data = tr.to_dataset(case.data)
        rec = raw["datasets"][name]
        for k in ("X", "y", "X_test", "y_test"):
            np.testing.assert_array_equal(getattr(data, k), np.asarray(rec[k]))
        gen, kappa = make_data(name)
        assert kappa == case.spec["kappa"] == rec["kappa"]
        for k in ("X", "X_test"):
            np.testing.assert_array_equal(getattr(data, k), getattr(gen, k))
        for k in ("y", "y_test"):  # teacher labels: phi in float32 unless jax x64 is on (1e-7)
            np.testing.assert_allclose(getattr(data, k), getattr(gen, k), rtol=0, atol=1e-6)
        spec = tr.to_spec(case.spec)
        assert (spec.width, spec.activation, spec.chi) == (
            case.spec["width"],
            case.spec["activation"],
            case.spec["chi"],
        )


def test_shared_cases_are_pooled_and_their_agreement_reported(tmp_path):
    """Two files with the same case: inverse-variance pooling and the z of their difference."""
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    _toy_file(a, 0, [1.0, 2.0, 3.0], [0.1, 0.1, 0.2])
    _toy_file(b, 1, [1.3, 2.0, 2.6], [0.1, 0.2, 0.2])
    cases, agree = tr.load_cases([str(a), str(b)])
    assert len(cases) == 1 and cases[0].files == ("a.json", "b.json")
    mean, mcse = cases[0].ref["f_train"]
    w1, w2 = 1 / np.array([0.01, 0.01, 0.04]), 1 / np.array([0.01, 0.04, 0.04])
    np.testing.assert_allclose(mean, (w1 * [1.0, 2.0, 3.0] + w2 * [1.3, 2.0, 2.6]) / (w1 + w2))
    np.testing.assert_allclose(mcse, 1 / np.sqrt(w1 + w2))
    z = np.array([0.3 / math.sqrt(0.02), 0.0, 0.4 / math.sqrt(0.08)])
    rms, zmax = agree[0]["f_train"]
    assert rms == pytest.approx(math.sqrt(np.mean(z**2))) and zmax == pytest.approx(z.max())
    assert agree[0]["f_test"] == (0.0, 0.0)


def test_error_and_noise_arithmetic_on_a_toy():
    ref, ref_mcse = np.array([3.0, 4.0]), np.array([0.03, 0.04])  # |ref| = 5, |mcse| = 0.05
    th = ref + np.array([0.06, 0.08])  # |diff| = 0.1
    r = tr.compare(th, None, ref, ref_mcse)
    assert r["error"] == pytest.approx(0.02) and r["ref_noise"] == pytest.approx(0.01)
    assert r["theory_noise"] is None and r["ratio"] == pytest.approx(2.0)
    assert r["max_z"] == pytest.approx(2.0)
    r = tr.compare(th, np.array([0.04, 0.03]), ref, ref_mcse)  # |theory mcse| = 0.05 too
    assert r["theory_noise"] == pytest.approx(0.01)
    assert r["ratio"] == pytest.approx(2.0 / math.sqrt(2.0))
    assert r["max_z"] == pytest.approx(0.08 / 0.05)
    s = tr.compare(2.2, 0.0, 2.0, 0.1)  # a scalar
    assert s["error"] == pytest.approx(0.1) and s["ratio"] == pytest.approx(2.0)


def test_convergence_verdict_and_slopes(tmp_path):
    _toy_file(tmp_path / "a.json", 0, [1.0, 2.0, 3.0], [0.1, 0.1, 0.2])
    (case,), _ = tr.load_cases([str(tmp_path / "a.json")])
    pred = {k: np.asarray(case.ref[k][0]).tolist() for k in tr.OBSERVABLES}
    assert tr.evaluate(case, {**pred, "converged": True})["status"] == "ok"
    ev = tr.evaluate(case, {**pred, "converged": False, "reason": "u* = 1.2 >= 1"})
    assert ev["status"] == "not converged: u* = 1.2 >= 1"
    nan = {**pred, "f_test": [math.nan, 1.0], "converged": True}
    assert tr.evaluate(case, nan)["status"] == "not converged: NaN"
    assert tr.slope([64, 128], [0.02, 0.01]) == pytest.approx(-1.0)
    assert math.isnan(tr.slope([64, 64], [0.02, 0.01]))
    assert tr.parse_method("one_loop") == ("one_loop", {"order": "dressed"})
    assert tr.parse_method("one_loop:first") == ("one_loop", {"order": "first"})
    assert tr.chi_class(math.sqrt(128), 128) == "sqrtN" and tr.chi_class(3.0, 64) == "3"
    names = {
        tr.cache_name(case, m, o)
        for m, o in (("tree", {}), ("tree", {"n_draws": 4096}), ("one_loop:first", {}))
    }
    names.add(tr.cache_name(case, "tree", {}, "theory abc"))  # other code: another entry
    assert len(names) == 4
    assert tr.parse_options(["n_draws=65536", "x=a"]) == {"n_draws": 65536, "x": "a"}
