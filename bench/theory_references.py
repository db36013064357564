"""Theory against the long many-chain reference posteriors (issue 16, item 6): errors and noise.

For every reference case of bench/references.py's JSON files (relu/erf/tanh x teacher/ising x N x
chi), build the case's data set from the stored arrays, run `theory.predict(spec, data,
chis=[chi], method=m, **options)` and compare, per observable (f_train, f_test, var_train,
var_test, kernel_target, kernel_trace):

    error        |theory - ref|_2 / |ref|_2                       (relative, vectors over points)
    ref noise    |ref_mcse|_2 / |ref|_2
    theory noise |theory_mcse|_2 / |ref|_2  when the prediction carries `<var>_mcse`, else 0
    ratio        error / sqrt(ref noise^2 + theory noise^2)      (~1 for a theory within noise)
    max |z|      max over points of |theory - ref| / sqrt(ref_mcse^2 + theory_mcse^2)

A case present in several files (independent seeds) is pooled by inverse-variance weights per
point; `--agreement` prints the files' mutual rms z for those cases (~1 when they agree).  A
theory with converged=False (at any requested chi) or NaN outputs is shown as "not converged"
with its reason when the prediction carries one (`status`/`reason` variable or attribute).

Every theory result is cached as a small JSON under bench/results/theory_references/ keyed by
case + method + options, so a rerun only computes what is missing; --budget (seconds) stops
cleanly before starting a theory run that no longer fits.  Output: one markdown table per
activation x data set (rows N, chi; per method the train/test ratio of error to noise), the
per-observable detail, and fitted slopes d log(error) / d log N over the widths present, printed
and written to bench/results/theory_references/table.md.

    PYTHONPATH=$PWD nice -n 10 .venv/bin/python bench/theory_references.py \
        --activations relu,erf --widths 64,128 --methods nngp,tree,one_loop:first --budget 900
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time
from collections.abc import Iterable
from typing import NamedTuple

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REF_DIR = os.path.join(HERE, "results", "references")
DEFAULT_FILES = ("h200_run1.json", "h200_run2.json")
CACHE_DIR = os.path.join(HERE, "results", "theory_references")
OBSERVABLES = ("f_train", "f_test", "var_train", "var_test", "kernel_target", "kernel_trace")
METHODS = ("nngp", "rescaling_one_loop", "tree", "one_loop:first", "one_loop:dressed")
SAMPLED = ("tree", "one_loop")  # methods that take the non-linear solver's options
CHI_CLASSES = ("1", "sqrtN", "N")


# ----------------------------------------------------------------------------- pure helpers


class Case(NamedTuple):
    """One reference posterior: its spec (dict), data set name and record, the reference
    estimates (observable -> (mean, mcse) numpy arrays) and the files it was pooled from."""

    spec: dict
    dataset: str
    data: dict
    ref: dict
    files: tuple


def chi_class(chi: float, width: int) -> str:
    """Which rung of the ladder {1, sqrt(N), N} chi is, or its value."""
    for name, value in zip(CHI_CLASSES, (1.0, math.sqrt(width), float(width)), strict=True):
        if math.isclose(chi, value, rel_tol=1e-9):
            return name
    return f"{chi:.4g}"


def case_key(spec: dict, dataset: str) -> str:
    """Readable identity of a case: activation, data set, N, chi, kappa, g_v, g_w."""
    return (
        f"{spec['activation']}_{dataset}_N{spec['width']}_chi{spec['chi']:.6g}"
        f"_k{spec['kappa']:.4g}_gv{spec['g_v']:.4g}_gw{spec['g_w']:.4g}"
    )


def data_digest(rec: dict) -> str:
    """Short hash of a stored data set's arrays (a cache entry is only valid for its data)."""
    h = hashlib.sha256()
    for k in ("X", "y", "X_test", "y_test"):
        h.update(np.ascontiguousarray(rec[k], dtype=np.float64).tobytes())
    return h.hexdigest()[:10]


def to_dataset(rec: dict):
    """A stored data set record (X, y, X_test, y_test, data_name) as a bayesnet Dataset."""
    from bayesnet import datasets

    return datasets.from_arrays(
        rec["X"], rec["y"], rec["X_test"], rec["y_test"], name=rec.get("data_name", "arrays")
    )


def to_spec(spec: dict):
    """A stored spec dict as a NetworkSpec."""
    from bayesnet.spec import NetworkSpec

    return NetworkSpec(**spec)


def _ref_arrays(c: dict) -> dict:
    """observable -> (mean, mcse) float arrays of one stored case."""
    return {
        k: (
            np.atleast_1d(np.asarray(c[k], float)),
            np.atleast_1d(np.asarray(c[f"{k}_mcse"], float)),
        )
        for k in OBSERVABLES
    }


def pool(estimates: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Inverse-variance weighted mean and its standard error of independent (mean, mcse)."""
    w = np.array([1.0 / np.square(m) for _, m in estimates])  # (R, P)
    mean = (w * np.array([x for x, _ in estimates])).sum(0) / w.sum(0)
    return mean, 1.0 / np.sqrt(w.sum(0))


def agreement(a: tuple, b: tuple) -> tuple[float, float]:
    """rms and max |z| of two independent estimates (mean, mcse) of the same quantity."""
    z = (a[0] - b[0]) / np.sqrt(a[1] ** 2 + b[1] ** 2)
    return float(np.sqrt(np.mean(z**2))), float(np.max(np.abs(z)))


def load_cases(paths: Iterable[str]) -> tuple[list[Case], list[dict]]:
    """Every case of the reference files, pooled across files; and per-file agreement rows for
    cases present in more than one file."""
    groups: dict[str, list] = {}
    for path in paths:
        with open(path) as f:
            d = json.load(f)
        name = os.path.basename(path)
        for c in d["cases"]:
            rec = d["datasets"][c["dataset"]]
            key = case_key(c["spec"], c["dataset"]) + "_" + data_digest(rec)
            groups.setdefault(key, []).append((name, c, rec))
    cases, agree = [], []
    for items in groups.values():
        name0, c0, rec0 = items[0]
        refs = [_ref_arrays(c) for _, c, _ in items]
        pooled = {k: pool([r[k] for r in refs]) for k in OBSERVABLES}
        cases.append(Case(c0["spec"], c0["dataset"], rec0, pooled, tuple(n for n, _, _ in items)))
        for i in range(1, len(items)):
            row = {"case": case_key(c0["spec"], c0["dataset"]), "files": (name0, items[i][0])}
            row.update({k: agreement(refs[0][k], refs[i][k]) for k in OBSERVABLES})
            agree.append(row)
    return cases, agree


def select(cases: list[Case], activations=None, datasets=None, widths=None, chis=None) -> list:
    """Cases matching the filters (None = all); chis are ladder classes '1', 'sqrtN', 'N'."""
    out = []
    for c in cases:
        s = c.spec
        if activations and s["activation"] not in activations:
            continue
        if datasets and c.dataset not in datasets:
            continue
        if widths and s["width"] not in widths:
            continue
        if chis and chi_class(s["chi"], s["width"]) not in chis:
            continue
        out.append(c)
    return sorted(
        out,
        key=lambda c: (c.spec["activation"], c.dataset, c.spec["width"], c.spec["chi"]),
    )


def compare(theory: np.ndarray, theory_mcse, ref: np.ndarray, ref_mcse: np.ndarray) -> dict:
    """Relative error, the two relative noises, their ratio and max |z| (see module docstring).

    theory_mcse None means the theory carries no error bar (taken as 0)."""
    t, r, mr = (np.atleast_1d(np.asarray(x, float)) for x in (theory, ref, ref_mcse))
    mt = np.zeros_like(t) if theory_mcse is None else np.atleast_1d(np.asarray(theory_mcse, float))
    norm = np.linalg.norm(r)
    err = np.linalg.norm(t - r) / norm
    ref_noise = np.linalg.norm(mr) / norm
    th_noise = np.linalg.norm(mt) / norm
    combined = math.hypot(ref_noise, th_noise)
    z = np.abs(t - r) / np.sqrt(mr**2 + mt**2)
    return {
        "error": float(err),
        "ref_noise": float(ref_noise),
        "theory_noise": float(th_noise) if theory_mcse is not None else None,
        "ratio": float(err / combined) if combined > 0 else math.inf,
        "max_z": float(np.max(z)),
    }


def slope(widths, errors) -> float:
    """Least-squares slope of log(error) against log(N); NaN with fewer than two widths."""
    w, e = np.asarray(widths, float), np.asarray(errors, float)
    ok = np.isfinite(e) & (e > 0)
    if len(np.unique(w[ok])) < 2:
        return math.nan
    return float(np.polyfit(np.log(w[ok]), np.log(e[ok]), 1)[0])


def parse_method(m: str) -> tuple[str, dict]:
    """'one_loop:first' -> ('one_loop', {'order': 'first'}); 'one_loop' means dressed."""
    name, _, order = m.partition(":")
    if name == "one_loop":
        return name, {"order": order or "dressed"}
    if order:
        raise ValueError(f"methods: only one_loop takes an order, got {m!r}")
    return name, {}


def parse_options(items: Iterable[str]) -> dict:
    """key=value pairs (values as JSON when they parse, else strings)."""
    out = {}
    for it in items:
        k, sep, v = it.partition("=")
        if not sep or not k:
            raise ValueError(f"option must be key=value, got {it!r}")
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


def cache_name(case: Case, method: str, options: dict, version: str = "") -> str:
    """Cache file name: the case, the method (with order), a hash of the options and one of the
    theory code's version (so results of other code are never reused)."""
    opt = json.dumps(options, sort_keys=True)
    h = hashlib.sha256(opt.encode()).hexdigest()[:8]
    v = hashlib.sha256(version.encode()).hexdigest()[:8]
    tag = method.replace(":", "-")
    return f"{case_key(case.spec, case.dataset)}_{data_digest(case.data)}_{tag}_{h}_v{v}.json"


def code_version(root: str = os.path.dirname(HERE)) -> str:
    """The committed git trees of theory/ and bayesnet/, plus a hash of uncommitted changes to
    them; 'unknown' outside a git checkout."""
    import subprocess

    def git(*a):
        return subprocess.run(["git", "-C", root, *a], capture_output=True, text=True, check=True)

    try:
        trees = [git("rev-parse", f"HEAD:{d}").stdout.strip()[:12] for d in ("theory", "bayesnet")]
        diff = git("diff", "HEAD", "--", "theory", "bayesnet").stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    v = f"theory {trees[0]} bayesnet {trees[1]}"
    return v + (f" +diff {hashlib.sha256(diff.encode()).hexdigest()[:8]}" if diff else "")


def summarise_prediction(ds) -> dict:
    """The parts of a theory.predict Dataset (one chi) kept in the cache."""
    out = {}
    for k in OBSERVABLES:
        out[k] = np.asarray(ds[k].values[0], float).tolist()
        if f"{k}_mcse" in ds:
            out[f"{k}_mcse"] = np.asarray(ds[f"{k}_mcse"].values[0], float).tolist()
    for k in ("converged", "iterations", "residual", "normalisability", "ubar"):
        if k in ds:
            v = ds[k].values[0]
            out[k] = bool(v) if k == "converged" else float(v)
    for k in ("correction_mcse_train", "correction_mcse_test", "correction_size_train"):
        if k in ds:
            out[k] = float(np.asarray(ds[k].values[0]).ravel()[0])
    for k in ("status", "reason"):
        if k in ds:
            out[k] = str(np.asarray(ds[k].values).ravel()[0])
        elif k in ds.attrs:
            out[k] = str(np.asarray(ds.attrs[k]).ravel()[0])
    for k in ("ess", "population_refreshes"):
        if k in ds.attrs:
            out[k] = float(np.asarray(ds.attrs[k]).ravel()[0])
    return out


def evaluate(case: Case, pred: dict) -> dict:
    """Per observable comparison of a cached prediction with the case's pooled reference, plus
    the convergence verdict ('ok' or 'not converged: reason')."""
    finite = all(np.all(np.isfinite(pred[k])) for k in OBSERVABLES if k in pred)
    status = "ok"
    if "error" in pred:
        status = f"failed: {pred['error']}"
    elif not pred.get("converged", True) or not finite:
        reason = pred.get("reason") or pred.get("status") or ("NaN" if not finite else "")
        status = "not converged" + (f": {reason}" if reason else "")
    rows = {}
    if "error" not in pred:
        for k in OBSERVABLES:
            rows[k] = compare(pred[k], pred.get(f"{k}_mcse"), *case.ref[k])
    corr = {
        k: pred[f"correction_mcse_{k}"] for k in ("train", "test") if f"correction_mcse_{k}" in pred
    }
    return {"status": status, "obs": rows, "correction_mcse": corr}


# ----------------------------------------------------------------------------- running


def run_theory(case: Case, method: str, options: dict) -> dict:
    """theory.predict at the case's chi; the cached summary (or an 'error' entry)."""
    import warnings

    import theory

    name, extra = parse_method(method)
    opts = dict(options) if name in SAMPLED else {}
    spec, data = to_spec(case.spec), to_dataset(case.data)
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            ds = theory.predict(spec, data, chis=[spec.chi], method=name, **extra, **opts)
            out = summarise_prediction(ds)
        except ValueError as e:  # e.g. an option the method does not take
            out = {"error": str(e).splitlines()[0][:300]}
    out["warnings"] = sorted({str(w.message).splitlines()[0][:300] for w in caught})
    if "reason" not in out and "status" not in out and not out.get("converged", True):
        if out["warnings"]:
            out["reason"] = out["warnings"][0]
    out["wall_s"] = time.perf_counter() - t0
    out["method"], out["options"] = method, opts
    out["case"] = case_key(case.spec, case.dataset)
    return out


def write_json(path: str, obj) -> None:
    """Write obj as JSON atomically (a reader never sees half a file)."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, separators=(",", ":"))
    os.replace(tmp, path)


def cached_or_run(case, method, options, cache_dir, guard, version="") -> dict | None:
    """The cached prediction, or a new one if the budget allows (None when it does not)."""
    name, _ = parse_method(method)
    opts = dict(options) if name in SAMPLED else {}
    path = os.path.join(cache_dir, cache_name(case, method, opts, version))
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    if not guard(method):
        return None
    label = f"{case_key(case.spec, case.dataset)} {method}"
    print(f"run {label} {opts or ''}", flush=True)
    out = run_theory(case, method, options)
    out["code_version"] = version
    write_json(path, out)
    print(f"  done {out['wall_s']:.1f} s, converged {out.get('converged')}", flush=True)
    return out


class Budget:
    """Stop starting theory runs once one more (the method's longest so far) no longer fits."""

    def __init__(self, seconds: float):
        self.end = time.perf_counter() + seconds
        self.longest: dict[str, float] = {}
        self.stopped = False

    def __call__(self, method: str) -> bool:
        left = self.end - time.perf_counter()
        if left < self.longest.get(method, 0.0) or left <= 0:
            self.stopped = True
            return False
        return True

    def record(self, method: str, seconds: float) -> None:
        """Note how long a run of `method` took."""
        self.longest[method] = max(self.longest.get(method, 0.0), seconds)


# ----------------------------------------------------------------------------- tables


def _fmt(x) -> str:
    if x is None:
        return "-"
    if not np.isfinite(x):
        return "nan"
    return f"{x:.2g}" if x < 100 else f"{x:.0f}"


def _cell(ev, keys=("f_train", "f_test")) -> str:
    """train/test ratio of error to noise, or the failure."""
    if ev is None:
        return "(not run)"
    if ev["status"] != "ok":
        return ev["status"].split(":")[0]
    return "/".join(_fmt(ev["obs"][k]["ratio"]) for k in keys)


def tables(cases: list[Case], results: dict, methods: list[str]) -> str:
    """Markdown: per activation x data set the ratio table, then details and slopes."""
    lines = []
    groups: dict = {}
    for c in cases:
        groups.setdefault((c.spec["activation"], c.dataset), []).append(c)
    for (act, dname), cs in groups.items():
        lines += [
            f"### {act}, {dname}: error / combined noise, mean outputs train/test",
            "",
            "| N | chi | ref noise train/test | " + " | ".join(methods) + " |",
            "|---|---|---|" + "---|" * len(methods),
        ]
        for c in cs:
            key = case_key(c.spec, c.dataset)
            n = c.ref["f_train"][1], c.ref["f_test"][1]
            noise = "/".join(
                f"{np.linalg.norm(m) / np.linalg.norm(c.ref[k][0]):.1e}"
                for k, m in zip(("f_train", "f_test"), n, strict=True)
            )
            cells = [_cell(results.get((key, m))) for m in methods]
            lines.append(
                f"| {c.spec['width']} | {c.spec['chi']:.4g} | {noise} | " + " | ".join(cells) + " |"
            )
        lines.append("")
        lines += [
            f"{act}, {dname}: second moments, error / combined noise "
            "var_train/var_test/kernel_target/kernel_trace",
            "",
            "| N | chi | " + " | ".join(methods) + " |",
            "|---|---|" + "---|" * len(methods),
        ]
        keys2 = ("var_train", "var_test", "kernel_target", "kernel_trace")
        for c in cs:
            key = case_key(c.spec, c.dataset)
            cells = [_cell(results.get((key, m)), keys2) for m in methods]
            lines.append(f"| {c.spec['width']} | {c.spec['chi']:.4g} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += detail(cases, results, methods)
    lines += slopes(cases, results, methods)
    return "\n".join(lines)


def detail(cases, results, methods) -> list[str]:
    """One row per case x method x observable: error, ref noise, theory noise, ratio, max |z|."""
    out = [
        "### detail: relative error, reference noise, theory noise, ratio, max |z|",
        "",
        "correction_mcse: the prediction's own correction_mcse_train/test (batch-means error of "
        "the one-loop shift / |saddle|), shown for information; not in the ratio.",
        "",
        "| case | method | status | observable | error | ref noise | theory noise | ratio | "
        "max abs z | correction_mcse | wall s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in cases:
        key = case_key(c.spec, c.dataset)
        for m in methods:
            ev = results.get((key, m))
            if ev is None:
                continue
            wall = _fmt(ev.get("wall_s"))
            if not ev["obs"]:
                out.append(f"| {key} | {m} | {ev['status']} | | | | | | | | {wall} |")
            for k, r in ev["obs"].items():
                cm = ev.get("correction_mcse", {}).get(k.split("_")[-1]) if k[0] == "f" else None
                out.append(
                    f"| {key} | {m} | {ev['status'][:60]} | {k} | {r['error']:.2e} | "
                    f"{r['ref_noise']:.1e} | {_fmt(r['theory_noise'])} | {_fmt(r['ratio'])} | "
                    f"{_fmt(r['max_z'])} | {'-' if cm is None else f'{cm:.1e}'} | {wall} |"
                )
    return out + [""]


def slopes(cases, results, methods) -> list[str]:
    """Fitted d log(error) / d log N per activation, data set, chi rung, method, observable."""
    by: dict = {}
    for c in cases:
        cl = chi_class(c.spec["chi"], c.spec["width"])
        for m in methods:
            ev = results.get((case_key(c.spec, c.dataset), m))
            if ev is None or ev["status"] != "ok":
                continue
            for k, r in ev["obs"].items():
                by.setdefault((c.spec["activation"], c.dataset, cl, m, k), []).append(
                    (c.spec["width"], r["error"])
                )
    out = [
        "### slopes d log(error) / d log N (widths present)",
        "",
        "| activation | data | chi | method | " + " | ".join(OBSERVABLES) + " |",
        "|---|---|---|---|" + "---|" * len(OBSERVABLES),
    ]
    seen = sorted({k[:4] for k in by})
    for act, dname, cl, m in seen:
        vals = []
        for k in OBSERVABLES:
            pts = by.get((act, dname, cl, m, k), [])
            vals.append(_fmt(slope([w for w, _ in pts], [e for _, e in pts])) if pts else "-")
        if all(v in ("nan", "-") for v in vals):
            continue
        out.append(f"| {act} | {dname} | {cl} | {m} | " + " | ".join(vals) + " |")
    return out + [""]


def agreement_table(agree: list[dict]) -> str:
    """rms z / max |z| between independent reference files, per shared case."""
    out = [
        "### reference files' agreement (independent seeds): rms z / max |z|",
        "",
        "| case | files | " + " | ".join(OBSERVABLES) + " |",
        "|---|---|" + "---|" * len(OBSERVABLES),
    ]
    for a in agree:
        cells = [f"{a[k][0]:.2f}/{a[k][1]:.2f}" for k in OBSERVABLES]
        out.append(f"| {a['case']} | {' vs '.join(a['files'])} | " + " | ".join(cells) + " |")
    if agree:
        allz = []
        for k in OBSERVABLES:
            rms = math.sqrt(np.mean([a[k][0] ** 2 for a in agree]))
            allz.append(f"{rms:.2f}/{max(a[k][1] for a in agree):.2f}")
        out.append("| all shared cases | | " + " | ".join(allz) + " |")
    return "\n".join(out + [""])


# ----------------------------------------------------------------------------- main


def _csv(s, cast=str):
    return [cast(x) for x in s.split(",")] if s else None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--files", default=",".join(DEFAULT_FILES), help="in bench/results/references")
    p.add_argument("--activations", default=None)
    p.add_argument("--datasets", default=None)
    p.add_argument("--widths", default=None)
    p.add_argument("--chis", default=None, help="ladder rungs: 1,sqrtN,N")
    p.add_argument("--methods", default=",".join(METHODS), help="one_loop:first, one_loop:dressed")
    p.add_argument("--option", action="append", default=[], help="key=value for tree/one_loop")
    p.add_argument("--budget", type=float, default=900.0, help="seconds of theory runs")
    p.add_argument("--cache", default=CACHE_DIR)
    p.add_argument("--out", default=None, help="markdown file (default: <cache>/table.md)")
    p.add_argument("--no-run", action="store_true", help="tables from the cache only")
    p.add_argument(
        "--code-version",
        default=None,
        help="cache tag of the theory code (default: git trees of theory/, bayesnet/ + diff)",
    )
    args = p.parse_args(argv)
    methods = _csv(args.methods)
    for m in methods:
        parse_method(m)
    options = parse_options(args.option)
    paths = [f if os.path.sep in f else os.path.join(REF_DIR, f) for f in _csv(args.files)]
    cases, agree = load_cases(paths)
    cases = select(
        cases, _csv(args.activations), _csv(args.datasets), _csv(args.widths, int), _csv(args.chis)
    )
    os.makedirs(args.cache, exist_ok=True)
    version = args.code_version or code_version()
    budget = Budget(0.0 if args.no_run else args.budget)
    t_start = time.perf_counter()
    results = {}
    try:
        for c in cases:
            for m in methods:
                t0 = time.perf_counter()
                pred = cached_or_run(c, m, options, args.cache, budget, version)
                if pred is None:
                    continue
                if time.perf_counter() - t0 > 1.0:
                    budget.record(m, pred.get("wall_s", 0.0))
                results[(case_key(c.spec, c.dataset), m)] = {
                    **evaluate(c, pred),
                    "wall_s": pred.get("wall_s"),
                }
    except KeyboardInterrupt:
        print("interrupted: tables of what is cached", flush=True)
    opt = json.dumps(options, sort_keys=True)
    head = [
        "## theory against the H200 references",
        "",
        f"files: {', '.join(os.path.basename(x) for x in paths)}; options (tree/one_loop): {opt}; "
        f"code: {version}",
        "",
        "Cells: relative error / combined relative noise (reference MCSE and, where the theory "
        "carries one, its own), train/test; 'not converged' where converged=False or NaN.",
        "",
    ]
    text = "\n".join(head) + "\n" + tables(cases, results, methods) + "\n" + agreement_table(agree)
    print(text)
    with open(args.out or os.path.join(args.cache, "table.md"), "w") as f:
        f.write(text)
    print(f"{len(results)} comparisons, {time.perf_counter() - t_start:.0f} s", flush=True)
    if budget.stopped:
        missing = len(cases) * len(methods) - len(results)
        what = "not cached" if args.no_run else "not done (budget; rerun to continue)"
        print(f"{missing} theory runs {what}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
