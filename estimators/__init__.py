"""Monte Carlo estimators of VAE aggregate-posterior quantities, and their exact references."""
from .kernels import log_mixture, log_mixture_marginals, log_normal_dim_matrix, log_normal_matrix, log_weighted_sum
from .posteriors import Posteriors, load_posteriors, save_posteriors
from .references import exact_references
from .scenarios import SCENARIOS, make_scenario
from .log_qz import log_aggregate_posterior
from .registry import ESTIMATORS
from .decompose import QUANTITIES, decompose
from .iwae import iwae_bound, iwae_jackknife

__version__ = "0.1.0"
