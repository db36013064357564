"""Import layering: `import theory` loads no sampler and leaves JAX's precision alone."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

# One fresh interpreter, each step building on the previous one: what `import bayesnet` loads,
# what `from bayesnet import NetworkSpec` loads, what `import theory` loads and whether it flips
# x64, and the precision inside and after `theory.predict`.
PROBE = """
import json, sys
out = {}
import bayesnet
out["bayesnet_mods"] = sorted(m for m in sys.modules if m.startswith("bayesnet."))
from bayesnet import NetworkSpec
out["spec_numpyro"] = "numpyro" in sys.modules
import theory
import jax, jax.numpy as jnp
out["theory_mods"] = sorted(m for m in sys.modules if m.startswith((
    "numpyro", "bayesnet.sampling", "bayesnet.engine", "bayesnet.models", "bayesnet.exact_sampler",
    "bayesnet.results", "blackjax")))
out["theory_x64"] = bool(jax.config.jax_enable_x64)
data = bayesnet.ising(n_train=8, n_test=4, dim=6, flip=0.1, seed=0)
ds = theory.predict(NetworkSpec(width=8, activation="linear", chi=1.0, kappa=0.5), data,
                    method="nngp")
out["predict"] = {"dtype": str(ds.f_train.dtype), "x64": bool(jax.config.jax_enable_x64),
                  "after": str(jnp.ones(1).dtype)}
# the labels of teacher() and the draws of the exact sampler never depend on JAX's precision
import numpy as np
t32 = bayesnet.teacher(n_train=16, n_test=4, dim=6, activation="erf", seed=3)
with bayesnet.float64():
    t64 = bayesnet.teacher(n_train=16, n_test=4, dim=6, activation="erf", seed=3)
out["teacher"] = {"dtype": str(t32.y.dtype), "equal": bool(np.array_equal(t32.y, t64.y))}
from bayesnet.exact_sampler import sample_exact
tree = sample_exact(NetworkSpec(width=4, activation="linear", chi=1.0, kappa=0.5), data,
                    chains=1, draws=5)
out["exact"] = {"dtypes": sorted({str(v.dtype) for v in tree["posterior"].data_vars.values()}),
                "after": str(jnp.ones(1).dtype)}
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def probe() -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_theory_loads_no_sampler_and_keeps_precision(probe):
    assert probe["theory_mods"] == []
    assert probe["theory_x64"] is False


def test_bayesnet_exports_are_lazy(probe):
    assert probe["bayesnet_mods"] == []
    assert probe["spec_numpyro"] is False


def test_predict_runs_in_float64_without_global_switch(probe):
    assert probe["predict"] == {"dtype": "float64", "x64": False, "after": "float32"}


def test_teacher_labels_do_not_depend_on_jax_precision(probe):
    """teacher() evaluates phi with JAX: float32 by default, unless it asks for float64."""
    assert probe["teacher"] == {"dtype": "float64", "equal": True}


def test_exact_sampler_called_directly_is_float64(probe):
    """sample_exact, called without bayesnet.sample's float64 context, still draws in float64."""
    assert probe["exact"] == {"dtypes": ["float64"], "after": "float32"}


ROOT = Path(__file__).resolve().parents[1]
# docs/layout.md: the pure core of bayesnet and the third-party packages each layer may import
CORE = {
    "spec",
    "activations",
    "datasets",
    "precision",
    "gp",
    "observables",
    "scale_mixture",
    "vocabulary",
    "io",
    "__init__",
}
ALLOWED = {
    # scikit-learn: the real-image loaders of bayesnet.datasets (imported inside them)
    "core": {"numpy", "scipy", "jax", "xarray", "sklearn"},
    # BlackJAX and optax (its optimiser, for ChEES adaptation): optional sampler backends
    "samplers": {"numpy", "scipy", "jax", "xarray", "numpyro", "tqdm", "blackjax", "optax"},
    "theory": {"numpy", "scipy", "jax", "xarray"},
}


def _imports(path: Path) -> list[tuple[int, str]]:
    """(level, dotted name) of every import in a file, inside functions too."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(0, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level and not base:
                out += [(node.level, a.name) for a in node.names]
            else:
                out += [(node.level, base)] + [
                    (node.level, f"{base}.{a.name}")
                    for a in node.names
                    if node.level == 0 and base == "bayesnet"
                ]
    return out


def _violations(package: str, layer_of) -> list[str]:
    """Imports in `package` that its layer may not make."""
    bad = []
    for path in sorted((ROOT / package).glob("*.py")):
        layer = layer_of(path.stem)
        for level, name in _imports(path):
            top, _, rest = name.partition(".")
            if level:  # a sibling module: only the core is restricted
                ok = package != "bayesnet" or layer != "core" or top in CORE
            elif top in sys.stdlib_module_names or top == "__future__":
                ok = True
            elif top == "bayesnet":
                ok = not rest or rest.split(".")[0] in CORE
            elif top == "theory":
                ok = package == "theory"
            else:
                ok = top in ALLOWED[layer]
            if not ok:
                bad.append(f"{package}/{path.name}: {'.' * level}{name}")
    return bad


def test_layers_import_only_what_docs_layout_allows():
    """Static check of the import rule (docs/layout.md) over every module, function-level too."""
    bad = _violations("bayesnet", lambda m: "core" if m in CORE else "samplers")
    bad += _violations("theory", lambda m: "theory")
    assert bad == []


def _internal_imports(path) -> set[str]:
    """Sibling bayesnet modules a file imports anywhere (also inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.add(node.module.split(".")[0])
            else:
                found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("bayesnet."):
            found.add(node.module.split(".")[1])
    return found


def test_bayesnet_imports_have_no_cycle():
    """The module import graph of bayesnet (function-level imports included) is acyclic."""
    pkg = ROOT / "bayesnet"
    graph = {
        p.stem: _internal_imports(p) - {"__version__"}
        for p in pkg.glob("*.py")
        if p.stem != "__init__"
    }
    state: dict[str, int] = {}

    def visit(mod, path):
        if state.get(mod) == 1:
            raise AssertionError("import cycle: " + " -> ".join(path + [mod]))
        if state.get(mod) == 2 or mod not in graph:
            return
        state[mod] = 1
        for dep in sorted(graph[mod]):
            visit(dep, path + [mod])
        state[mod] = 2

    for mod in sorted(graph):
        visit(mod, [])
