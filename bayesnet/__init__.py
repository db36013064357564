"""bayesnet: finite-width Bayesian network posteriors under parameterised scaling."""
import jax

# Theory and CPU sampling run in float64 (shared/design.md); float32 stays available per call.
jax.config.update("jax_enable_x64", True)

from .activations import ACTIVATIONS, activation_fn  # noqa: E402
from .datasets import Dataset, from_arrays, ising, teacher, xor  # noqa: E402
from .spec import NetworkSpec  # noqa: E402

__all__ = ["ACTIVATIONS", "activation_fn", "Dataset", "from_arrays", "ising", "teacher", "xor",
           "NetworkSpec"]
__version__ = "0.1.0"

from .io import load, save  # noqa: E402
from .sampling import sample  # noqa: E402
from .scale_mixture import draw_outputs  # noqa: E402

__all__ += ["load", "save", "sample", "draw_outputs"]
