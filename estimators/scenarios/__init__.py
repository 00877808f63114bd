r"""Stage 7, the scenarios: named, seeded fields of encoder posteriors for the benchmark.

* :mod:`.registry` -- :data:`SCENARIOS` and :func:`make_scenario`;
* :mod:`.synthetic` -- collapsed, grid, gaussian, clustered, heteroscedastic;
* :mod:`.vae_digits` -- a beta-VAE trained on scikit-learn's digits, cached on disk.
"""
from .registry import SCENARIOS, Scenario, make_scenario
from .synthetic import grid_levels, heteroscedastic_inactive

__all__ = ["SCENARIOS", "Scenario", "make_scenario", "grid_levels", "heteroscedastic_inactive"]
