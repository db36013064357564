"""Import layering: `import theory` loads no sampler and leaves JAX's precision alone."""
import json
import subprocess
import sys

PROBE = """
import json, sys
import theory
import jax
mods = sorted(m for m in sys.modules if m.startswith(("numpyro", "bayesnet.sampling",
              "bayesnet.engine", "bayesnet.models", "bayesnet.exact", "blackjax")))
print(json.dumps({"mods": mods, "x64": bool(jax.config.jax_enable_x64)}))
"""


def _probe(code: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_theory_loads_no_sampler_and_keeps_precision():
    res = _probe(PROBE)
    assert res["mods"] == []
    assert res["x64"] is False


def test_bayesnet_exports_are_lazy():
    res = _probe("import json, sys\nfrom bayesnet import NetworkSpec\n"
                 "print(json.dumps({'numpyro': 'numpyro' in sys.modules}))")
    assert res == {"numpyro": False}


def test_predict_runs_in_float64_without_global_switch():
    code = """
import json
import jax, jax.numpy as jnp
import bayesnet as bn, theory
data = bn.ising(n_train=8, n_test=4, dim=6, flip=0.1, seed=0)
ds = theory.predict(bn.NetworkSpec(width=8, activation='linear', chi=1.0, kappa=0.5), data,
                    method='nngp')
print(json.dumps({'dtype': str(ds.f_train.dtype), 'x64': bool(jax.config.jax_enable_x64),
                  'after': str(jnp.ones(1).dtype)}))
"""
    assert _probe(code) == {"dtype": "float64", "x64": False, "after": "float32"}


def _internal_imports(path) -> set[str]:
    """Sibling bayesnet modules a file imports anywhere (also inside functions)."""
    import ast

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
    from pathlib import Path

    pkg = Path(__file__).resolve().parents[1] / "bayesnet"
    graph = {p.stem: _internal_imports(p) - {"__version__"} for p in pkg.glob("*.py")
             if p.stem != "__init__"}
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
