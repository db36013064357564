#!/usr/bin/env bash
# The one command of a GPU run: bench/gpu.py, then bench/references.py, under one time guard.
#
#   OUT=... bash bench/run_gpu.sh            # on the GPU machine, from the repository root
#   OUT=/tmp/gpuout PYTHON=.venv/bin/python bash bench/run_gpu.sh --quick   # CPU smoke test
#
# Installs the carried wheels in .whl/ (BlackJAX, NumPyro) into /tmp/site when BlackJAX is
# missing; the repository is not installed, it runs from the source tree (PYTHONPATH).  Times:
# gpu.py ends by GPU_S seconds after the start, references.py by TOTAL_S (each script skips what
# its guard predicts will not fit; `timeout` interrupts it (SIGINT: the finished draws are kept
# and written) 10 s past its deadline, and kills it 10 s later).
# GPU_ARGS and REF_ARGS add options to either script (e.g. GPU_ARGS="--sections check,auto").
# Writes $OUT/gpu.json, $OUT/references.json, $OUT/run.log and $OUT/env.txt.
set -u
T0=$(date +%s)
QUICK=""
if [ "${1:-}" = "--quick" ]; then QUICK="--quick"; fi
: "${OUT:?set OUT to the output folder}"
PY=${PYTHON:-python3}
if [ -n "$QUICK" ]; then
    TOTAL_S=${TOTAL_S:-1500}
    GPU_S=${GPU_S:-900}
else
    TOTAL_S=${TOTAL_S:-460}
    GPU_S=${GPU_S:-300}
fi
mkdir -p "$OUT"
exec > >(tee -a "$OUT/run.log") 2>&1

if ! "$PY" -c "import blackjax" 2>/dev/null && ls .whl/*.whl >/dev/null 2>&1; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || echo "wheel install failed: ChEES falls back to NUTS"
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD:$PWD/bench${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-4}

{
    date -u
    git rev-parse HEAD 2>/dev/null
    nvidia-smi 2>/dev/null
    "$PY" -c "import sys, jax, numpyro; print(sys.version); print('jax', jax.__version__, 'numpyro', numpyro.__version__, jax.devices())"
    "$PY" -c "import blackjax, optax; print('blackjax', blackjax.__version__, 'optax', optax.__version__)"
} >"$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

GPU_END=$((T0 + GPU_S))
END=$((T0 + TOTAL_S))
echo "== gpu.py until +${GPU_S} s"
timeout -s INT -k 10 $((GPU_END - $(date +%s) + 10)) "$PY" bench/gpu.py $QUICK --deadline "$GPU_END" \
    --out "$OUT/gpu.json" ${GPU_ARGS:-} || echo "gpu.py exited with $?"
echo "== references.py until +${TOTAL_S} s ($((END - $(date +%s))) s left)"
timeout -s INT -k 10 $((END - $(date +%s) + 10)) "$PY" bench/references.py $QUICK --deadline "$END" \
    --out "$OUT/references.json" ${REF_ARGS:-} || echo "references.py exited with $?"
echo "== done in $(($(date +%s) - T0)) s"
ls -la "$OUT"
