"""theory: analytical predictions (NNGP, kernel rescaling, multi-scale adaptive saddle point).

Importing `theory` loads no sampler and no NumPyro, and leaves JAX's precision alone: `predict`
and the kernel functions run in float64 inside their own call (bayesnet.precision).  theory
imports only the pure core of bayesnet (docs/layout.md).
"""

from .kernels import input_kernel, kernel, kernel_diag
from .predict import LINEAR_ONLY, METHODS, predict
from .predict import method_options as predict_options

__all__ = [
    "kernel",
    "kernel_diag",
    "input_kernel",
    "predict",
    "predict_options",
    "METHODS",
    "LINEAR_ONLY",
]
