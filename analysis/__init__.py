"""analysis: diagnostics, sample-versus-theory comparison, figures, reports and the CLI."""
from .comparison import against_reference, compare, sample_estimates, sweep_estimates  # noqa: F401
from .diagnostics import diagnose  # noqa: F401

__all__ = ["against_reference", "compare", "diagnose", "sample_estimates", "sweep_estimates"]
