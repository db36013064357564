"""The analysis vocabulary: what a verdict, z, `flagged` and `best` are, and their thresholds.

The core (bayesnet/vocabulary.py) names what samplers and theories compute; this module names
what the analysis adds on top (convergence diagnostics and their verdict, the comparison of
theory with samples, the axes of a sweep), with the thresholds as constants that the
diagnostics, the comparison, the figures and the report all read.  `describe` and `redescribe`
are the core's with this vocabulary added.
"""

from __future__ import annotations

from bayesnet import vocabulary as core

from .tolerance import ALPHA

# ------------------------------------------------------------------ thresholds
RHAT_MAX = 1.01  # rank-normalised R-hat above this: the chains have not mixed
ESS_BULK_MIN = 400.0  # bulk ESS below this: the MCSE itself is unreliable
BFMI_MIN = 0.2  # E-BFMI below this: the momentum resampling explores energy poorly
# a theory is flagged where its max |z| exceeds the Sidak threshold for its number of z values at
# family-wise level ALPHA (analysis/tolerance.py: z_threshold)


def verdict_rule() -> str:
    """The diagnostics thresholds in words, from the constants (quoted by the report)."""
    return (
        f"R-hat <= {RHAT_MAX:g}, bulk ESS >= {ESS_BULK_MIN:g}, no divergences, "
        f"E-BFMI >= {BFMI_MIN:g}"
    )


# ------------------------------------------------------------------ definitions
DEFINITIONS = {
    **core.DEFINITIONS,
    "z": "z = (theory - sample) / sqrt(MCSE_sample^2 + MCSE_theory^2): the sample mean's "
    "Monte-Carlo error and the theory's own (<v>_mcse, 0 for closed forms) in quadrature",
    "max_abs_z": "largest |z| over every observable (mean outputs, discrepancies, variances, "
    "kernel scalars) and every point",
    "relerr": "||theory - sample|| / ||sample|| of the posterior mean train outputs",
    "flagged": "1 where max |z| exceeds z_crit, the two-sided Sidak threshold for the n finite "
    f"z values of that theory at that chi (family-wise false-alarm probability {ALPHA:g}; "
    "analysis/tolerance.py): the theory is off by more than Monte-Carlo error",
    "best": "among the converged theories within MC error (not flagged), exact excluded, the "
    "one with the smallest max |z|; 'none within MC error' when there is none",
    "kernel_change": "absolute posterior values, in tables and figures alike; the figures' "
    "dashed line is the prior (NNGP) kernel's value, so the change from the "
    "prior is the distance to that line",
}

# ------------------------------------------------------------------ long names and units
VOCABULARY: dict[str, tuple[str, str]] = {
    # diagnostics
    "n_divergent": ("number of divergent transitions", "1"),
    "treedepth_saturation": ("fraction of draws at the maximal tree depth", "1"),
    "bfmi": ("energy Bayesian fraction of missing information (E-BFMI) per chain", "1"),
    "max_rhat": ("largest rank-normalised R-hat over every observable", "1"),
    "min_ess_bulk": ("smallest bulk effective sample size over every observable", "1"),
    "min_ess_tail": ("smallest tail effective sample size over every observable", "1"),
    "verdict": (f"diagnostics verdict: ok ({verdict_rule()}), else warn", "1"),
    "reasons": ("why the diagnostics verdict is warn (empty when ok)", "1"),
    "draws": ("draws of the observable with the worst R-hat", "y"),
    # comparison
    "max_abs_z": ("largest |z| over every observable and point (MC errors of both sides)", "1"),
    "flagged": ("theory off by more than MC error: max |z| above the Sidak limit (1 = yes)", "1"),
    "relerr": ("relative error ||theory - sample|| / ||sample|| of the mean train outputs", "1"),
    "best_method": (
        "converged, unflagged theory with the smallest max |z| (exact excluded); "
        "'none within MC error' when there is none",
        "1",
    ),
    "relerr_mcse": ("Monte-Carlo standard error of the relative error", "1"),
    # coordinates: diagnostics and the axes of a sweep (analysis.collect)
    "diagnostic": ("convergence diagnostic: rhat, ess_bulk, ess_tail or mcse_mean", ""),
    "observable": ("observable", ""),
    "chi_rule": ("how chi is set from the width (e.g. 1 or N)", ""),
    "network": ("network name in the config", ""),
    "activation": ("activation phi", ""),
    "g_v": ("input-weight prior gain g_v", "1"),
    "g_w": ("readout prior gain g_w", "1"),
    "kappa": ("noise scale kappa (likelihood variance kappa/chi)", "1"),
    "n_train": ("number of training points P", "1"),
    "n_test": ("number of test points P*", "1"),
    "dim": ("input dimension D", "1"),
    "flip": ("spin-flip probability of the Ising task", "1"),
    "seed": ("data seed", ""),
    "data_name": ("data set", ""),
}


def _vocabulary() -> dict[str, tuple[str, str]]:
    """VOCABULARY plus the sweep axes of the sampler settings (`sampler_<field>`)."""
    from bayesnet.sampling import SamplerOptions

    axes = {
        f"sampler_{k}": (f"sampler setting {k} (SamplerOptions)", "1")
        for k in SamplerOptions.fields()
    }
    return {**axes, **VOCABULARY}


def lookup(name: str) -> tuple[str, str] | None:
    """(long_name, units) of an analysis or core variable name, or None."""
    return core.lookup(name, _vocabulary())


def describe(obj):
    """long_name/units on every known variable (core and analysis vocabulary)."""
    return core.describe(obj, _vocabulary())


def redescribe(ds):
    """`ds` described afresh (inherited attributes dropped first), with this vocabulary."""
    return core.redescribe(ds, _vocabulary())
