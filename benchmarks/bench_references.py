r"""Speed and peak memory of the exact references (:func:`estimators.references.exact_references`).

The ``gaussian`` scenario (correlated means, tc > 0) in D = 10 at separation 0.5, default
settings (8 Monte Carlo draws per component for kl_agg, adaptive Gauss-Legendre quadrature for
the marginals). The cost grows like N^2: N = 20000 (tens of seconds) runs only with ASV_SLOW=1.
"""
from __future__ import annotations

from .common import configure_torch, skip_unless_slow


class ExactReferences:
    r"""All five reference quantities of a field of N posteriors, with their standard errors."""

    params = ([1000, 5000, 20000],)
    param_names = ["N"]
    timeout = 900
    D = 10

    def setup(self, N):
        skip_unless_slow(N >= 20000, "the reference at N = 20000 takes tens of seconds")
        configure_torch()
        from estimators.references import exact_references
        from estimators.scenarios import make_scenario

        field = make_scenario("gaussian", N=N, D=self.D, separation=0.5, seed=0)
        self.fn = lambda: exact_references(field.mu, field.logvar, samples=8, seed=0)

    def time_exact_references(self, N):
        self.fn()

    def peakmem_exact_references(self, N):
        self.fn()
