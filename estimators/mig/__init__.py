r"""The mutual information gap (MIG, Chen et al. 2018) of a field of posteriors with known factors: exact
references and the sampled estimates of evaluation code, benchmarked against them.

Stage "gradients" of the layering (it reads the references' quadrature and the kernels).

* :mod:`.factors` -- the inputs checked once: posteriors, integer factors, their populations and entropies;
* :mod:`.exact` -- :func:`mig_references`: every I(z_j; v_k) and the MIG by 1-D quadrature, with error bounds;
* :mod:`.sampled` -- :func:`mig_beta_tcvae` (a replica of the beta-TCVAE authors' code) and :func:`mig_sampled`
  (paired, unbiased I's), streamed over the components;
* :mod:`.study` -- :func:`run_mig_study`: bias, sd and rmse of the sampled estimates over R seeds, a tidy table;
* :mod:`.report` -- :func:`write_mig_report`: its CSV, plot and Markdown.

See ``docs/maths.md``, "Mutual information gap".
"""
from .exact import mig_from_information, mig_references, mixture_entropy
from .factors import FactorField, check_factors, select_factors
from .report import mig_markdown, plot_mig, write_mig_report
from .sampled import log_marginal_density, mig_beta_tcvae, mig_sampled
from .study import MIG_ESTIMATORS, STUDY_COLUMNS, run_mig_study

__all__ = ["mig_references", "mig_from_information", "mixture_entropy", "FactorField", "check_factors",
           "select_factors", "mig_beta_tcvae", "mig_sampled", "log_marginal_density", "run_mig_study",
           "MIG_ESTIMATORS", "STUDY_COLUMNS", "write_mig_report", "plot_mig", "mig_markdown"]
