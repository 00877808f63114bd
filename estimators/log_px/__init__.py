r"""Stage 6 (beside the aggregate quantities): IWAE-k on log p(x), with exact references.

* :mod:`.iwae` -- the IWAE-k bound, its jackknife corrections and the bias expansion;
* :mod:`.gaussian` -- full-covariance Gaussians and their closed-form KL and Renyi divergences;
* :mod:`.models` -- linear-Gaussian (factor analysis) models: random, and PPCA on the digits;
* :mod:`.tasks` -- the registered benchmark tasks and log p(x) estimators.
"""
from .gaussian import Gaussian, diagonal_approximation, gaussian_kl, gaussian_renyi, mismatched_encoder
from .iwae import iwae_bias_expansion, iwae_bound, iwae_jackknife, jackknife_coefficients
from .models import LinearGaussian, digits_ppca, fit_ppca, random_linear_gaussian
from .tasks import (LOG_PX_ESTIMATORS, LOG_PX_TASKS, LogPxProblem, LogPxTask, log_px_reference, predicted_bias,
                    sample_log_px_estimates)

__all__ = ["Gaussian", "diagonal_approximation", "gaussian_kl", "gaussian_renyi", "mismatched_encoder",
           "iwae_bias_expansion", "iwae_bound", "iwae_jackknife", "jackknife_coefficients",
           "LinearGaussian", "digits_ppca", "fit_ppca", "random_linear_gaussian",
           "LOG_PX_ESTIMATORS", "LOG_PX_TASKS", "LogPxProblem", "LogPxTask", "log_px_reference", "predicted_bias",
           "sample_log_px_estimates"]
