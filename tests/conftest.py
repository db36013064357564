import os
import pathlib

# A persistent XLA cache shared by the test process and the CLI subprocesses it starts:
# compilation, not sampling, dominates small runs.
_cache = pathlib.Path(__file__).resolve().parent.parent / ".jax_cache"
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(_cache))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
# numpy's threaded BLAS fights JAX's thread pool on 2 cores (a 200x200 solve took 0.1 s);
# small linear algebra is faster single-threaded.  Must be set before numpy is imported.
for _var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

# Tests call internal theory and sampler functions directly, outside the float64 context of the
# public entry points; run the whole test process in float64.  What this switch would hide is
# tested in a fresh float32 interpreter (tests/test_layering.py): import-time purity, that the
# entry points (sample, sample_exact, theory.predict) compute in float64 and restore float32,
# and that data sets such as teacher() do not depend on JAX's precision.
from bayesnet.precision import enable_float64  # noqa: E402

enable_float64()
