"""theory: analytical predictions (NNGP, kernel rescaling, multi-scale adaptive saddle point)."""
import bayesnet  # noqa: F401  (enables float64)

from .kernels import kernel, kernel_diag, input_kernel  # noqa: E402
from .predict import METHODS, predict  # noqa: E402

__all__ = ["kernel", "kernel_diag", "input_kernel", "predict", "METHODS"]
