"""Monte Carlo estimators of VAE aggregate-posterior quantities, and their exact references.

The package is laid out by stages of one flow (each imports only from earlier ones):
posteriors -> kernels -> log_qz (estimators of log q(z)) -> decompose (the quantities) ->
references -> log_px -> scenarios -> bench -> commands. See ``docs/maths.md`` for the formulas.
"""
from .validation import set_validate_args, validate_args
from .posteriors import Posteriors, load_posteriors, save_posteriors
from .kernels import log_mixture, log_mixture_marginals, log_normal_matrix, log_weighted_marginals, log_weighted_sum
from .log_qz import ESTIMATORS, log_aggregate_posterior
from .decompose import QUANTITIES, decompose
from .references import exact_references
from .log_px import iwae_bound, iwae_jackknife
from .scenarios import SCENARIOS, make_scenario

__version__ = "0.1.0"
