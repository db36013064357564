"""Experiments: TOML configs, the chi sweep of samples, theory predictions, and the results tree.

One experiment = one data set, several networks (each a NetworkSpec without chi), a chi grid per
network, one sampler setting and a list of theories.  Every finished chi is saved at once
(atomically), so an interrupted sweep keeps what it has done.
"""
from __future__ import annotations

import copy
import dataclasses
import importlib.resources
import inspect
import json
import math
import pathlib
import sys
import time
import tomllib

import numpy as np
import xarray as xr

import bayesnet
from bayesnet import datasets

from . import comparison as cmp
from . import diagnostics

SAMPLER_KEYS = {"method": str, "chains": int, "warmup": int, "draws": int, "seed": int,
                "chain_method": str, "target_accept": float, "max_tree_depth": int}
CHI_KEYS = {"min": float, "max": (float, str), "num": int}
THEORY_KEYS = {"methods": list}
NETWORK_KEYS = {"name": str, "width": int, "activation": str, "g_v": float, "g_w": float,
                "kappa": float}
DATA_FILE_KEYS = {"name": str, "file": str}
SECTIONS = ("data", "sampler", "chi", "theory", "network", "quick")


class ConfigError(ValueError):
    """A bad configuration value; the message names the key."""


class Interrupted(Exception):
    """Ctrl-C during a sweep; carries the folder holding every finished chi result."""

    def __init__(self, folder, n_done):
        super().__init__(f"interrupted: {n_done} finished chi results are saved in {folder}")
        self.folder, self.n_done = folder, n_done


@dataclasses.dataclass
class Experiment:
    """A validated experiment: data, named networks (spec at chi=1), chi grids, settings."""

    config: dict
    data: bayesnet.Dataset
    networks: dict  # name -> NetworkSpec
    chis: dict  # name -> np.ndarray
    sampler: dict
    methods: list

    def methods_for(self, name: str) -> list:
        """Theories that apply to a network (exact only for linear networks)."""
        lin = self.networks[name].activation == "linear"
        return [m for m in self.methods if m != "exact" or lin]


# ------------------------------------------------------------------ configuration

def default_config() -> dict:
    """The embedded default experiment (analysis/default.toml)."""
    text = importlib.resources.files("analysis").joinpath("default.toml").read_text()
    return tomllib.loads(text)


def _type_ok(value, kind) -> bool:
    """Whether a TOML value has the expected type (ints are accepted as floats, bools never)."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool):
        return False
    for k in kinds:
        if k is float and isinstance(value, (int, float)):
            return True
        if isinstance(value, k):
            return True
    return False


def _check_table(table, schema: dict, where: str) -> None:
    """Unknown keys and wrong types end in a ConfigError naming `where.key`."""
    if not isinstance(table, dict):
        raise ConfigError(f"config: [{where}] must be a table")
    for key, value in table.items():
        if key not in schema:
            raise ConfigError(f"config: unknown key '{where}.{key}' (allowed: "
                              f"{', '.join(sorted(schema))})")
        kind = schema[key]
        if not _type_ok(value, kind):
            names = "/".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
            raise ConfigError(f"config: '{where}.{key}' must be of type {names}, got {value!r}")


def _data_schema(table: dict) -> dict:
    """Allowed data keys: `name` plus the generator's parameters (or `file`)."""
    name = table.get("name", "ising")
    if name == "file":
        return DATA_FILE_KEYS
    if name not in datasets.DATASETS:
        raise ConfigError(f"config: 'data.name' must be one of "
                          f"{sorted(datasets.DATASETS) + ['file']}, got {name!r}")
    params = inspect.signature(datasets.DATASETS[name]).parameters.values()
    return {"name": str, **{p.name: type(p.default) for p in params}}


def _merge(base: dict, over: dict) -> dict:
    """Recursive merge of TOML tables; arrays of tables (networks) are replaced whole."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def validate(config: dict) -> None:
    """Check every section, key and type of a merged config."""
    for key in config:
        if key not in SECTIONS:
            raise ConfigError(f"config: unknown section '{key}' (allowed: {', '.join(SECTIONS)})")
    _check_table(config["data"], _data_schema(config["data"]), "data")
    _check_table(config["sampler"], SAMPLER_KEYS, "sampler")
    _check_table(config["chi"], CHI_KEYS, "chi")
    _check_table(config["theory"], THEORY_KEYS, "theory")
    nets = config["network"]
    if not isinstance(nets, list) or not nets:
        raise ConfigError("config: at least one [[network]] table is needed")
    for i, net in enumerate(nets):
        _check_table(net, NETWORK_KEYS, f"network[{i}]")
        for req in ("name", "width"):
            if req not in net:
                raise ConfigError(f"config: 'network[{i}].{req}' is missing")
    quick = config.get("quick", {})
    _check_table(quick, {"sampler": dict, "chi": dict, "data": dict, "network": dict}, "quick")
    _check_table(quick.get("sampler", {}), SAMPLER_KEYS, "quick.sampler")
    _check_table(quick.get("chi", {}), CHI_KEYS, "quick.chi")
    _check_table(quick.get("data", {}), _data_schema(config["data"]), "quick.data")
    net_keys = {k: v for k, v in NETWORK_KEYS.items() if k != "name"}
    _check_table(quick.get("network", {}), net_keys, "quick.network")


def load_config(path=None, quick: bool = False) -> dict:
    """Default config, overridden by a TOML file, then by its [quick] tables when `quick`."""
    config = default_config()
    if path is not None:
        path = pathlib.Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            user = tomllib.loads(path.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
            raise ConfigError(f"config file {path} is not valid TOML: {err}") from None
        if "network" in user:
            config.pop("network")
        if "data" in user and user["data"].get("name", "ising") != config["data"]["name"]:
            config.pop("data")  # another data set: the default's parameters do not apply
            config.get("quick", {}).pop("data", None)
        config = _merge(config, user)
        config.setdefault("data", {"name": "ising"})
        if "file" in config["data"]:
            config["data"]["file"] = str((path.parent / config["data"]["file"]).resolve())
    validate(config)
    return apply_quick(config) if quick else config


def apply_quick(config: dict) -> dict:
    """The [quick] overrides: sampler, chi, data tables; [quick.network] applies to every net."""
    quick = config.get("quick", {})
    out = _merge(config, {k: v for k, v in quick.items() if k != "network"})
    out["network"] = [{**net, **quick.get("network", {})} for net in out["network"]]
    out.pop("quick", None)
    return out


# ------------------------------------------------------------------ building

def load_data_file(path) -> bayesnet.Dataset:
    """A user .npz with arrays X, y, X_test, y_test, validated by bayesnet.from_arrays."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise ConfigError(f"data file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in ("X", "y", "X_test", "y_test") if k not in npz.files]
            if missing:
                raise ConfigError(f"data file {path} lacks arrays {missing}")
            arrays = {k: npz[k] for k in ("X", "y", "X_test", "y_test")}
    except (OSError, ValueError) as err:
        if isinstance(err, ConfigError):
            raise
        raise ConfigError(f"data file {path} is not a readable .npz: {err}") from None
    try:
        return bayesnet.from_arrays(**arrays, name=path.stem)
    except ValueError as err:
        raise ConfigError(f"data file {path}: {err}") from None


def make_data(table: dict) -> bayesnet.Dataset:
    """The data set named in the [data] table."""
    params = {k: v for k, v in table.items() if k != "name"}
    if table.get("name") == "file":
        if "file" not in params:
            raise ConfigError("config: 'data.file' is missing (data.name = \"file\")")
        return load_data_file(params["file"])
    try:
        return datasets.make(table.get("name", "ising"), **params)
    except (ValueError, TypeError) as err:
        raise ConfigError(f"config: [data]: {err}") from None


def chi_grid(table: dict, width: int) -> np.ndarray:
    """Log-spaced chi from `min` to `max` ("N" = the width), `num` points."""
    lo = float(table.get("min", 1.0))
    hi = table.get("max", "N")
    if isinstance(hi, str):
        if hi != "N":
            raise ConfigError(f"config: 'chi.max' must be a number or \"N\", got {hi!r}")
        hi = float(width)
    num = int(table.get("num", 6))
    if not (math.isfinite(lo) and lo > 0 and math.isfinite(hi) and hi >= lo):
        raise ConfigError(f"config: chi range must satisfy 0 < chi.min <= chi.max, got "
                          f"[{lo}, {hi}]")
    if num < 1:
        raise ConfigError(f"config: 'chi.num' must be >= 1, got {num}")
    return np.unique(np.geomspace(lo, hi, num)) if num > 1 else np.array([lo])


def _check_sampler(s: dict) -> dict:
    """Value ranges of the sampler settings (types are checked already)."""
    for k, lo in (("chains", 1), ("warmup", 0), ("draws", 1), ("seed", 0), ("max_tree_depth", 1)):
        if k in s and s[k] < lo:
            raise ConfigError(f"config: 'sampler.{k}' must be >= {lo}, got {s[k]}")
    choices = {"method": bayesnet.sampling.METHODS,
               "chain_method": bayesnet.sampling.CHAIN_METHODS}
    for k, allowed in choices.items():
        if k in s and s[k] not in allowed:
            raise ConfigError(f"config: 'sampler.{k}' must be one of {list(allowed)}, "
                              f"got {s[k]!r}")
    if "target_accept" in s and not 0 < s["target_accept"] < 1:
        raise ConfigError(f"config: 'sampler.target_accept' must be in (0, 1), "
                          f"got {s['target_accept']}")
    return dict(s)


def _network(i: int, net: dict) -> tuple[str, bayesnet.NetworkSpec]:
    """One [[network]] table as (name, spec at chi = 1)."""
    name = net["name"]
    if not name or not name.replace("_", "").replace("-", "").isalnum():
        raise ConfigError(f"config: 'network[{i}].name' must be alphanumeric, got {name!r}")
    fields = {k: v for k, v in net.items() if k != "name"}
    try:
        return name, bayesnet.NetworkSpec(**fields)
    except ValueError as err:
        raise ConfigError(f"config: network[{i}] ({name}): {err}") from None


def build(config: dict) -> Experiment:
    """Validate values and build the data, specs and chi grids of an experiment."""
    import theory

    nets = dict(_network(i, n) for i, n in enumerate(config["network"]))
    if len(nets) != len(config["network"]):
        raise ConfigError("config: network names must be unique")
    methods = list(config["theory"].get("methods", list(theory.METHODS)))
    for m in methods:
        if m not in theory.METHODS:
            raise ConfigError(f"config: 'theory.methods' entries must be in "
                              f"{list(theory.METHODS)}, got {m!r}")
    sampler = _check_sampler(config["sampler"])
    if sampler.get("method") == "exact":
        for name, spec in nets.items():
            if spec.activation != "linear":
                raise ConfigError(f"config: sampler.method 'exact' needs linear networks, "
                                  f"network {name!r} is {spec.activation}")
    return Experiment(config=config, data=make_data(config["data"]), networks=nets,
                      chis={n: chi_grid(config["chi"], s.width) for n, s in nets.items()},
                      sampler=sampler, methods=methods)


# ------------------------------------------------------------------ output folder

def prepare_out(out) -> pathlib.Path:
    """Create the output folder and prove it is writable (ConfigError otherwise)."""
    out = pathlib.Path(out)
    try:
        (out / "samples").mkdir(parents=True, exist_ok=True)
        (out / "figures").mkdir(parents=True, exist_ok=True)
        probe = out / ".write_test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as err:
        raise ConfigError(f"output folder {out} is not writable: "
                          f"{err.strerror or err}") from None
    return out


def sample_path(out, name: str, k: int, chi: float) -> pathlib.Path:
    """Where the k-th chi result of a network is saved."""
    return pathlib.Path(out) / "samples" / f"{name}_chi{k:02d}_{chi:.6g}.nc"


def sample_files(out, name: str) -> list[pathlib.Path]:
    """Saved chi results of one network, in chi order."""
    return sorted((pathlib.Path(out) / "samples").glob(f"{name}_chi[0-9][0-9]_*.nc"))


# ------------------------------------------------------------------ sweeps

def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def sample_sweep(exp: Experiment, out, progress: bool = True, log=_log) -> dict:
    """Sample every network at every chi; each tree is saved as soon as it is done."""
    done, files = 0, {}
    total = sum(len(c) for c in exp.chis.values())
    try:
        for name, spec in exp.networks.items():
            files[name] = []
            for k, chi in enumerate(exp.chis[name]):
                done_tag = f"[{done + 1}/{total}] {name} N={spec.width} chi={chi:.4g}"
                log(f"sampling {done_tag}")
                t0 = time.perf_counter()
                tree = bayesnet.sample(spec.replace(chi=float(chi)), exp.data, progress=progress,
                                       desc=f"{name} chi={chi:.3g}", **exp.sampler)
                tree.attrs["max_tree_depth"] = exp.sampler.get("max_tree_depth", 10)
                path = bayesnet.save(tree, sample_path(out, name, k, chi))
                files[name].append(path)
                done += 1
                log(f"  done in {time.perf_counter() - t0:.1f}s: "
                    f"{diagnostics.summary_line(diagnostics.diagnose(tree))}")
    except KeyboardInterrupt:
        raise Interrupted(pathlib.Path(out) / "samples", done) from None
    return files


def theory_sweep(exp: Experiment, log=_log) -> dict:
    """Every applicable theory for every network over its chi grid, stacked along `theory`."""
    import theory

    out = {}
    for name, spec in exp.networks.items():
        parts, failed = {}, []
        for m in exp.methods_for(name):
            log(f"theory {name}: {m}")
            try:
                parts[m] = theory.predict(spec, exp.data, exp.chis[name], m)
            except (ValueError, RuntimeError, ArithmeticError) as err:
                failed.append(f"{m}: {err}")
                log(f"  theory {m} failed for {name}: {err}")
        if not parts:
            raise RuntimeError(f"no theory could be computed for network {name}")
        table = cmp.theory_table(parts)
        table.attrs = {**spec_attrs(spec), "theory_failed": json.dumps(failed)}
        out[name] = _netcdf_safe(table)
    return out


def prior_kernel(spec, data) -> xr.Dataset:
    """The prior (NNGP) hidden kernel and its target projection and trace (figure 2's origin)."""
    import theory

    K = np.asarray(theory.kernel(spec.activation, data.X, data.X, spec.g_v))
    yhat = data.y / np.linalg.norm(data.y)
    return xr.Dataset({"K_train": (("train", "train_"), K),
                       "kernel_target": yhat @ K @ yhat,
                       "kernel_trace": np.trace(K) / K.shape[0]},
                      coords={"train": np.arange(K.shape[0]), "train_": np.arange(K.shape[0])})


def spec_attrs(spec) -> dict:
    """Spec fields without chi (the sweep variable), netCDF-safe."""
    attrs = {k: v for k, v in spec.to_attrs().items() if k != "chi"}
    return attrs


def _netcdf_safe(ds: xr.Dataset) -> xr.Dataset:
    """Attributes reduced to str/int/float/1-D numeric arrays; bools become ints."""
    safe = {}
    for k, v in ds.attrs.items():
        if isinstance(v, bool):
            safe[k] = int(v)
        elif isinstance(v, (str, int, float)):
            safe[k] = v
        elif isinstance(v, np.ndarray) and v.dtype.kind in "iuf" and v.ndim <= 1:
            safe[k] = v
        else:
            safe[k] = json.dumps(v, default=str)
    out = ds.copy()
    out.attrs = safe
    for name in out.variables:
        if out[name].dtype == bool:
            out[name] = out[name].astype(np.int8)
    return out


def worst_trace(trees, diag: xr.Dataset) -> xr.Dataset:
    """Draws of the observable with the worst R-hat across a sweep, for rank and trace plots."""
    name, idx, rhat = diagnostics.worst_observable(diag)
    k = idx.pop("chi")
    by_chi = sorted(trees, key=lambda t: float(json.loads(t.attrs["spec"])["chi"]))
    da = diagnostics.draws(by_chi[k])[name].isel(idx)
    ds = xr.Dataset({"draws": da.drop_vars([c for c in da.coords if c not in da.dims])})
    ds.attrs = {"observable": name, "index": json.dumps(idx), "rhat": rhat,
                "chi": float(diag["chi"][k])}
    return ds


def network_results(name, spec, trees, prediction, data) -> dict:
    """Per-network result groups: samples, diagnostics, theory, comparison, prior, worst."""
    est = cmp.sweep_estimates(trees)
    diag = cmp.sweep_diagnostics(trees)
    comp = cmp.compare(est, prediction, diagnosis=diag)
    groups = {"samples": est, "diagnostics": diag, "theory": prediction, "comparison": comp,
              "prior": prior_kernel(spec, data), "worst": worst_trace(trees, diag)}
    if "exact" in prediction["theory"].values:
        groups["reference"] = cmp.against_reference(prediction)
    return {f"{name}/{g}": _netcdf_safe(ds) for g, ds in groups.items()}


def data_group(data: bayesnet.Dataset) -> xr.Dataset:
    """The data set as a Dataset (train, test, feature)."""
    ds = xr.Dataset({"X": (("train", "feature"), data.X), "y": (("train",), data.y),
                     "X_test": (("test", "feature"), data.X_test),
                     "y_test": (("test",), data.y_test)})
    ds.attrs = data.to_attrs()
    return ds


def results_tree(exp: Experiment, trees: dict, predictions: dict, timing: dict) -> xr.DataTree:
    """One DataTree with the data, and per network samples' summaries, theory, comparison."""
    groups = {"data": data_group(exp.data)}
    for name, spec in exp.networks.items():
        groups.update(network_results(name, spec, trees[name], predictions[name], exp.data))
    tree = xr.DataTree.from_dict(groups)
    for name, spec in exp.networks.items():
        tree[name].attrs = spec_attrs(spec)
    tree.attrs = {"config": json.dumps(exp.config), "networks": json.dumps(list(exp.networks)),
                  "versions": json.dumps(bayesnet.results.versions()),
                  **{f"timing_{k}": float(v) for k, v in timing.items()}}
    return tree


def experiment_from_results(tree: xr.DataTree) -> Experiment:
    """Rebuild the Experiment recorded in a results or theory file."""
    return build(json.loads(tree.attrs["config"]))
