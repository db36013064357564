"""Experiment grids: the TOML config, its validation, and the list of points it describes.

A config names a data set ([data]), sampler settings ([sampler]), a default chi grid ([chi]),
the theories ([theory]) and one or more networks ([[network]], the listed points).  Any scalar
field of [data], [sampler] or a [[network]] may instead be a list: the grid is the Cartesian
product of those lists and the chi values, per network.  chi may be a number, a rule in the
width N ("N", "sqrt(N)", "N^0.5"), a list of those, or a log grid {min, max, num} whose max may
be "N".  One point = one (spec with chi, data, sampler settings) combination.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import importlib.resources
import inspect
import itertools
import json
import math
import pathlib
import re
import tomllib
from collections.abc import Iterator

import numpy as np

import bayesnet
from bayesnet import datasets

CHI_KEYS = {"min": float, "max": (float, str), "num": int, "values": list}
THEORY_KEYS = {"methods": list, "dense": int}
SPEC_KEYS = {
    "width": int,
    "activation": str,
    "g_v": float,
    "g_w": float,
    "kappa": float,
    "depth": int,  # hidden layers (theory/deep.py for depth > 1)
}
NETWORK_KEYS = {"name": str, **SPEC_KEYS, "chi": (float, str, list, dict), "sampler": dict}
DATA_FILE_KEYS = {"name": str, "file": str}
SECTIONS = ("data", "sampler", "chi", "theory", "network", "quick")
DEFAULT_DENSE = 12


class ConfigError(ValueError):
    """A bad configuration value; the message names the key."""


def sampler_keys() -> dict:
    """The [sampler] schema: the fields of bayesnet's SamplerOptions and their TOML types."""
    from bayesnet.sampling import SamplerOptions

    return SamplerOptions.fields()


# ------------------------------------------------------------------ reading and checking


def default_config() -> dict:
    """The embedded default experiment (analysis/default.toml)."""
    text = importlib.resources.files("analysis").joinpath("default.toml").read_text()
    return tomllib.loads(text)


def _type_ok(value, kind) -> bool:
    """Whether a TOML value has the expected type (ints are accepted as floats, bools never)."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool):
        return False
    return any(
        isinstance(value, (int, float)) if k is float else isinstance(value, k) for k in kinds
    )


def _type_name(kind) -> str:
    return "/".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))


def _check_table(table, schema: dict, where: str, lists: bool = False) -> None:
    """Unknown keys and wrong types end in a ConfigError naming `where.key`.

    lists: a list of values of the right type is accepted too (a grid axis).
    """
    if not isinstance(table, dict):
        raise ConfigError(f"config: [{where}] must be a table")
    for key, value in table.items():
        if key not in schema:
            raise ConfigError(
                f"config: unknown key '{where}.{key}' (allowed: {', '.join(sorted(schema))})"
            )
        kind = schema[key]
        if lists and isinstance(value, list) and not _type_ok(value, kind):
            if not value:
                raise ConfigError(f"config: '{where}.{key}' must not be an empty list")
            bad = [v for v in value if not _type_ok(v, kind)]
            if bad:
                raise ConfigError(
                    f"config: '{where}.{key}' entries must be of type "
                    f"{_type_name(kind)}, got {bad[0]!r}"
                )
            if len({json.dumps(v) for v in value}) != len(value):
                raise ConfigError(f"config: '{where}.{key}' has repeated values {value!r}")
        elif not _type_ok(value, kind):
            raise ConfigError(
                f"config: '{where}.{key}' must be of type {_type_name(kind)}, got {value!r}"
            )


def _data_schema(table: dict) -> dict:
    """Allowed data keys: `name` plus the generator's parameters (or `file`)."""
    name = table.get("name", "ising")
    if name == "file":
        return DATA_FILE_KEYS
    if name not in datasets.DATASETS:
        raise ConfigError(
            f"config: 'data.name' must be one of "
            f"{sorted(datasets.DATASETS) + ['file']}, got {name!r}"
        )
    params = inspect.signature(datasets.DATASETS[name]).parameters.values()
    return {"name": str, **{p.name: type(p.default) for p in params}}


def _merge(base: dict, over: dict) -> dict:
    """Recursive merge of TOML tables; arrays of tables (networks) are replaced whole."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def validate(config: dict) -> None:
    """Check every section, key and type of a merged config (values are checked by `plan`)."""
    for key in config:
        if key not in SECTIONS:
            raise ConfigError(f"config: unknown section '{key}' (allowed: {', '.join(SECTIONS)})")
    for key in ("data", "sampler", "chi", "theory"):
        config.setdefault(key, {})
    data_schema = _data_schema(config["data"])
    _check_table(config["data"], data_schema, "data", lists=True)
    sampler_schema = sampler_keys()
    _check_table(config["sampler"], sampler_schema, "sampler", lists=True)
    _check_table(config["chi"], CHI_KEYS, "chi")
    _check_table(config["theory"], THEORY_KEYS, "theory")
    nets = config.get("network")
    if not isinstance(nets, list) or not nets:
        raise ConfigError("config: at least one [[network]] table is needed")
    for i, net in enumerate(nets):
        _check_table(net, NETWORK_KEYS, f"network[{i}]", lists=True)
        _check_table(net.get("sampler", {}), sampler_schema, f"network[{i}].sampler", lists=True)
        for req in ("name", "width"):
            if req not in net:
                raise ConfigError(f"config: 'network[{i}].{req}' is missing")
    quick = config.get("quick", {})
    _check_table(
        quick,
        {"sampler": dict, "chi": dict, "data": dict, "network": dict, "theory": dict},
        "quick",
    )
    _check_table(quick.get("sampler", {}), sampler_schema, "quick.sampler", lists=True)
    _check_table(quick.get("chi", {}), CHI_KEYS, "quick.chi")
    _check_table(quick.get("theory", {}), THEORY_KEYS, "quick.theory")
    _check_table(quick.get("data", {}), data_schema, "quick.data", lists=True)
    net_keys = {k: v for k, v in NETWORK_KEYS.items() if k not in ("name", "sampler")}
    _check_table(quick.get("network", {}), net_keys, "quick.network", lists=True)


@contextlib.contextmanager
def naming(path) -> Iterator[None]:
    """ConfigErrors raised inside name the config file: `config FILE: ...` (no-op for None)."""
    try:
        yield
    except ConfigError as err:
        text = str(err)
        if path is None or str(path) in text:
            raise
        raise ConfigError(f"config {path}: {text.removeprefix('config: ')}") from None


def load(path=None, quick: bool = False) -> Grid:
    """The grid of a config file (None: the embedded default); every error names the file."""
    with naming(path):
        return plan(load_config(path, quick=quick))


def load_config(path=None, quick: bool = False) -> dict:
    """The default config, or the default overridden by a TOML file; --quick applied on request.

    quick: the file's own [quick] table when it has one; otherwise `shrink` caps the run's
    size at the default's quick values (any grid gets smaller, none gets larger).
    """
    config = default_config()
    if path is not None:
        path = pathlib.Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            user = tomllib.loads(path.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
            raise ConfigError(f"config file {path} is not valid TOML: {err}") from None
        if not user:
            raise ConfigError(
                f"config file {path} is empty: it needs at least one table, e.g. [[network]] "
                "(without --config the embedded default grid runs)"
            )
        default_quick = config.pop("quick")
        for key in ("network", "chi"):  # a user's networks and chi grid replace the default's
            if key in user:
                config.pop(key)
        if "data" in user and user["data"].get("name", "ising") != config["data"]["name"]:
            config.pop("data")  # another data set: the default's parameters do not apply
        config = _merge(config, user)
        config.setdefault("data", {"name": "ising"})
        if "file" in config["data"]:  # relative to the config file
            files = config["data"]["file"]
            resolved = [
                str((path.parent / f).resolve()) if isinstance(f, str) else f
                for f in (files if isinstance(files, list) else [files])
            ]
            config["data"]["file"] = resolved if isinstance(files, list) else resolved[0]
        with naming(path):
            validate(config)
        if quick and "quick" not in user:
            return shrink(config, default_quick)
        with naming(path):
            return apply_quick(config) if quick else config
    validate(config)
    return apply_quick(config) if quick else config


def _cap(value, limit):
    """min(value, limit), entry by entry for a list (repeats dropped)."""
    if isinstance(value, list):
        return list(dict.fromkeys(min(v, limit) for v in value))
    return min(value, limit)


def shrink(config: dict, limits: dict) -> dict:
    """--quick for a config without a [quick] table: the sampler's warmup and draws, the size
    of log chi grids, the dense theory curves and the data sizes capped at `limits` (the
    default's [quick] values); networks, chi values and everything else are kept."""
    out = copy.deepcopy(config)
    for table in ("sampler", "theory", "data"):
        for key, limit in limits.get(table, {}).items():
            if isinstance(out[table].get(key), (int, float, list)):
                out[table][key] = _cap(out[table][key], limit)
    num = limits.get("chi", {}).get("num")
    for table in [out["chi"], *(n.get("chi") for n in out["network"])]:
        if num is not None and isinstance(table, dict) and "values" not in table:
            table["num"] = _cap(table.get("num", 6), num)  # a log grid {min, max, num}
    for net in out["network"]:
        for key, limit in limits.get("sampler", {}).items():
            if isinstance(net.get("sampler", {}).get(key), (int, float, list)):
                net["sampler"][key] = _cap(net["sampler"][key], limit)
    return out


def apply_quick(config: dict) -> dict:
    """The [quick] overrides: sampler, chi, data, theory tables; [quick.network] for every net."""
    quick = config.get("quick", {})
    out = _merge(config, {k: v for k, v in quick.items() if k != "network"})
    if "chi" in quick:  # a quick chi list replaces the grid; a quick log grid drops the list
        merged = _merge(config["chi"], quick["chi"])
        out["chi"] = (
            dict(quick["chi"])
            if "values" in quick["chi"]
            else {k: v for k, v in merged.items() if k != "values"}
        )
    out["network"] = [{**net, **quick.get("network", {})} for net in out["network"]]
    out.pop("quick", None)
    return out


# ------------------------------------------------------------------ chi rules

_RULE = re.compile(
    r"^\s*(?:(?P<c>[0-9.eE+-]+)\s*\*\s*)?(?:N\s*(?:\^|\*\*)\s*(?P<p>[0-9.eE+-]+)"
    r"|sqrt\(\s*N\s*\)|N)\s*$"
)


def chi_rule(rule, width: int, where: str = "chi") -> tuple[str, float]:
    """A chi entry as (label, value at this width): a number, "N", "sqrt(N)", "N^p", "c*N"."""
    if isinstance(rule, (int, float)) and not isinstance(rule, bool):
        value = float(rule)
        label = format(value, "g")
    elif isinstance(rule, str):
        m = _RULE.match(rule)
        if not m:
            raise ConfigError(
                f"config: '{where}' entries must be numbers or rules like \"N\", "
                f'"sqrt(N)", "N^0.5", got {rule!r}'
            )
        c = float(m["c"]) if m["c"] else 1.0
        p = float(m["p"]) if m["p"] else (0.5 if "sqrt" in rule else 1.0)
        value = c * float(width) ** p
        label = rule.replace(" ", "")
    else:
        raise ConfigError(f"config: '{where}' entries must be numbers or strings, got {rule!r}")
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"config: '{where}' must give chi > 0, got {rule!r} -> {value}")
    return label, value


def chi_points(table, width: int, where: str = "chi") -> list[tuple[str, float]]:
    """The (label, chi) pairs of a chi entry: a value, a list, or a log grid {min, max, num}."""
    if not isinstance(table, dict):
        entries = table if isinstance(table, list) else [table]
        if not entries:
            raise ConfigError(f"config: '{where}' must not be an empty list")
        return [chi_rule(e, width, where) for e in entries]
    if "values" in table:
        if {"min", "max", "num"} & set(table):
            raise ConfigError(f"config: '{where}' takes either 'values' or 'min'/'max'/'num'")
        return chi_points(table["values"], width, f"{where}.values")
    _check_table(table, CHI_KEYS, where)
    lo_rule, hi_rule, num = table.get("min", 1.0), table.get("max", "N"), table.get("num", 6)
    (lo_label, lo), (hi_label, hi) = (
        chi_rule(lo_rule, width, f"{where}.min"),
        chi_rule(hi_rule, width, f"{where}.max"),
    )
    if not hi >= lo:
        raise ConfigError(
            f"config: chi range must satisfy 0 < {where}.min <= {where}.max, got [{lo}, {hi}]"
        )
    if num < 1:
        raise ConfigError(f"config: '{where}.num' must be >= 1, got {num}")
    if num == 1 or hi == lo:
        return [(lo_label, lo)]
    out = []
    for k, chi in enumerate(np.geomspace(lo, hi, num)):
        t = k / (num - 1)
        if k == 0:
            label = lo_label
        elif k == num - 1:
            label = hi_label
        elif lo == 1.0 and isinstance(hi_rule, str) and hi_label == "N":
            label = f"N^{t:.4g}"  # the same rule at every width: a finite-width series
        else:
            label = format(float(chi), ".6g")
        out.append((label, float(chi)))
    return out


# ------------------------------------------------------------------ points


def _axes(table: dict) -> list[dict]:
    """The Cartesian product of a table's list-valued entries, as a list of plain tables."""
    keys = list(table)
    values = [v if isinstance(v, list) else [v] for v in table.values()]
    return [dict(zip(keys, combo)) for combo in itertools.product(*values)]


def _file_digest(path: str) -> str:
    """sha256 of a data file (part of the point keys, so a changed file gives new keys)."""
    try:
        return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()
    except OSError as err:
        raise ConfigError(f"data file {path}: {err.strerror or err}") from None


def check_sampler(settings: dict, where: str = "sampler") -> dict:
    """Sampler settings checked by bayesnet's SamplerOptions (ConfigError naming the key): the
    explicit settings and the defaults of the others, None values left out."""
    from bayesnet.sampling import SamplerOptions

    try:
        opts = SamplerOptions.from_dict(settings)  # the one home of these checks
    except ValueError as err:
        raise ConfigError(f"config: [{where}]: {err}") from None
    return {k: v for k, v in dataclasses.asdict(opts).items() if v is not None}


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
    except ConfigError:
        raise
    except (OSError, ValueError, EOFError) as err:
        raise ConfigError(
            f"data file {path} is not a readable .npz: {' '.join(str(err).split())}"
        ) from None
    try:
        return bayesnet.from_arrays(**arrays, name=path.stem)
    except ValueError as err:
        raise ConfigError(f"data file {path}: {err}") from None


def make_data(table: dict) -> bayesnet.Dataset:
    """The data set of one point's data table (no lists)."""
    params = {k: v for k, v in table.items() if k not in ("name", "sha256")}
    if table.get("name") == "file":
        if "file" not in params:
            raise ConfigError("config: 'data.file' is missing (data.name = \"file\")")
        return load_data_file(params["file"])
    try:
        return datasets.make(table.get("name", "ising"), **params)
    except (ValueError, TypeError) as err:
        raise ConfigError(f"config: [data]: {err}") from None
    except OSError as err:  # a real-image set that cannot be fetched: where to put the file
        raise ConfigError(f"config: [data]: {err}") from None


@dataclasses.dataclass(frozen=True)
class Point:
    """One task of a sweep: a network spec at one chi, a data table, sampler settings, theories."""

    network: str  # name of the [[network]] it comes from
    spec: bayesnet.NetworkSpec
    chi_rule: str  # label of the chi entry ("1", "sqrt(N)", "N", "N^0.25", or the number)
    data: tuple  # sorted (key, value) pairs of the data table (no lists)
    sampler: tuple  # sorted (key, value) pairs of every sampler setting
    methods: tuple  # theories that apply to this network
    version: str = bayesnet.__version__

    @property
    def key(self) -> str:
        """Content address: hash of spec, data, sampler settings, theories and version."""
        text = json.dumps(
            {
                "spec": self.spec.to_dict(),
                "data": dict(self.data),
                "sampler": dict(self.sampler),
                "theory": list(self.methods),
                "version": self.version,
            },
            sort_keys=True,
        )
        return hashlib.sha256(text.encode()).hexdigest()[:20]

    @property
    def chi(self) -> float:
        return self.spec.chi

    def coords(self) -> dict:
        """Grid coordinates of the point (data seed is `seed`, sampler fields `sampler_*`)."""
        out = {
            "network": self.network,
            **{k: getattr(self.spec, k) for k in SPEC_KEYS},
            "chi": self.spec.chi,
        }
        for k, v in self.data:
            if k != "sha256":
                out[{"name": "data_name", "file": "data_file"}.get(k, k)] = v
        out.update({f"sampler_{k}": v for k, v in self.sampler})
        return out

    def series_coords(self) -> dict:
        """Coordinates without chi: the points of one series differ only in chi."""
        return {k: v for k, v in self.coords().items() if k != "chi"}


@dataclasses.dataclass
class Grid:
    """A validated grid: the resolved config and its points, in config order."""

    config: dict
    points: list
    dense: int

    def __len__(self) -> int:
        return len(self.points)


def plan(config: dict) -> Grid:
    """Every point of a validated config; value errors end in a ConfigError naming the key."""
    import theory

    names = [n["name"] for n in config["network"]]
    for i, name in enumerate(names):
        if not name or not name.replace("_", "").replace("-", "").isalnum():
            raise ConfigError(f"config: 'network[{i}].name' must be alphanumeric, got {name!r}")
    if len(set(names)) != len(names):
        raise ConfigError("config: network names must be unique")
    methods = config["theory"].get("methods", list(theory.METHODS))
    for m in methods:
        if m not in theory.METHODS:
            raise ConfigError(
                f"config: 'theory.methods' entries must be in {list(theory.METHODS)}, got {m!r}"
            )
    dense = config["theory"].get("dense", DEFAULT_DENSE)
    if dense < 0:
        raise ConfigError(f"config: 'theory.dense' must be >= 0, got {dense}")
    data_tables = []
    for table in _axes(config["data"]):
        make_data(table)  # every data set is built once here, so bad values fail before any run
        if table.get("name") == "file":
            table = {**table, "sha256": _file_digest(table["file"])}
        data_tables.append(tuple(sorted(table.items())))
    points = []
    for i, net in enumerate(config["network"]):
        where = f"network[{i}]"
        sampler_table = {**config["sampler"], **net.get("sampler", {})}
        samplers = [
            tuple(
                sorted(
                    check_sampler(s, f"{where}.sampler" if "sampler" in net else "sampler").items()
                )
            )
            for s in _axes(sampler_table)
        ]
        for fields in _axes({k: v for k, v in net.items() if k in SPEC_KEYS}):
            try:
                spec = bayesnet.NetworkSpec(**fields)
            except ValueError as err:
                raise ConfigError(f"config: {where} ({net['name']}): {err}") from None
            lin = spec.activation == "linear"
            ms = tuple(m for m in methods if lin or m not in theory.LINEAR_ONLY)
            if spec.depth > 1:  # the methods theory/deep.py provides
                from theory import deep

                ms = tuple(
                    m for m in ms if m in deep.METHODS and (lin or m not in deep.LINEAR_ONLY)
                )
            if not ms:
                raise ConfigError(
                    f"config: no theory in 'theory.methods' applies to {where} ({spec.activation})"
                )
            for s in samplers:
                if dict(s)["method"] == "exact" and spec.depth > 1:
                    raise ConfigError(
                        f"config: sampler.method 'exact' needs depth 1, "
                        f"{where} ({net['name']}) has depth {spec.depth}"
                    )
                if dict(s)["method"] == "exact" and not lin:
                    raise ConfigError(
                        f"config: sampler.method 'exact' needs linear networks, "
                        f"{where} ({net['name']}) is {spec.activation}"
                    )
            chi_where = f"{where}.chi" if "chi" in net else "chi"
            chis = chi_points(net.get("chi", config["chi"]), spec.width, chi_where)
            if len({c for _, c in chis}) != len(chis):
                raise ConfigError(
                    f"config: '{chi_where}' gives repeated chi values at width "
                    f"{spec.width}: {[c for _, c in chis]}"
                )
            for data, s, (label, chi) in itertools.product(data_tables, samplers, chis):
                points.append(Point(net["name"], spec.replace(chi=chi), label, data, s, ms))
    keys = [p.key for p in points]
    if len(set(keys)) != len(keys):
        raise ConfigError("config: the grid lists some point twice")
    return Grid(config=config, points=points, dense=int(dense))


def series_of(points) -> dict:
    """Points grouped into series over chi: {name: [points sorted by chi]}, in config order.

    A series is named after its network, plus the coordinates that vary among that network's
    points (e.g. `linear_width16_seed1`).
    """
    by_net: dict = {}
    for p in points:
        by_net.setdefault(p.network, []).append(p)
    out = {}
    for net, pts in by_net.items():
        coords = [p.series_coords() for p in pts]
        varying = [k for k in coords[0] if len({json.dumps(c[k]) for c in coords}) > 1]
        groups: dict = {}
        for p, c in zip(pts, coords):
            tag = "_".join(f"{_short(k)}{_fmt(c[k])}" for k in varying)
            groups.setdefault(f"{net}_{tag}" if tag else net, []).append(p)
        for name, group in groups.items():
            out[name] = sorted(group, key=lambda p: p.chi)
    return out


def _short(key: str) -> str:
    return key.replace("sampler_", "s").replace("data_", "")


def _fmt(v) -> str:
    s = format(v, "g") if isinstance(v, float) else str(v)
    return re.sub(r"[^A-Za-z0-9.+-]", "", s)
