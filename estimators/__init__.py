"""Monte Carlo estimators of VAE aggregate-posterior quantities, and their exact references.

The package is laid out by stages of one flow (each imports only from earlier ones):
posteriors -> kernels -> log_qz (estimators of log q(z)) -> decompose (the quantities) ->
references -> log_px -> scenarios -> bench -> auditing -> commands. See ``docs/maths.md`` for the formulas.

``estimators.audit(fn)`` (which estimator a user's function computes) and ``estimators.testing``
(``assert_matches`` for users' own tests) are imported on first use: they pull in the benchmark.
"""
from .validation import set_validate_args, validate_args
from .posteriors import Posteriors, load_posteriors, save_posteriors
from .kernels import log_mixture, log_mixture_marginals, log_normal_matrix, log_weighted_marginals, log_weighted_sum
from .log_qz import ESTIMATORS, log_aggregate_posterior
from .decompose import QUANTITIES, decompose
from .direct import (DIRECT_ESTIMATORS, density_ratio_tc, gaussian_tc_of_means, moment_dimwise_kl, moment_kl,
                     moment_matched, moment_tc)
from .references import exact_references
from .references.brackets import BracketError, pairwise_entropy_bounds, pairwise_information
from .log_px import iwae_bound, iwae_jackknife
from .scenarios import SCENARIOS, make_scenario

__version__ = "0.1.0"


def __getattr__(name):
    # lazy: the audit imports the benchmark machinery (pandas, the reference cache)
    if name == "audit":
        from .auditing import audit
        globals()["audit"] = audit
        return audit
    if name == "testing":
        import importlib
        return importlib.import_module(".testing", __name__)
    raise AttributeError(f"module 'estimators' has no attribute {name!r}")
