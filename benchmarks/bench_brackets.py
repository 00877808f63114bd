r"""Speed of the certified brackets (:mod:`estimators.references.brackets`): the Kolchinsky-Tracey
pairwise bounds over all N^2 pairs of components.

``kl`` and ``bhattacharyya_relaxed`` run through the streamed joint kernel (fused C); ``bhattacharyya``
is the exact elementwise form (heteroscedastic field, blocked, used while N^2 D <= 5e8). The ``gaussian``
scenario has one variance per dimension, so its exact Bhattacharyya bound is the kernel form at any N.
N = 100000 (1e10 pairs) runs only with ASV_SLOW=1.
"""
from __future__ import annotations

import math

from .common import configure_torch, skip_unless_slow


class PairwiseBounds:
    r"""I_BC <= mi <= I_KL of a field of N posteriors in D = 10 (heteroscedastic: per-point variances)."""

    params = ([2000, 10000, 100000], ["kl", "bhattacharyya", "bhattacharyya_relaxed"])
    param_names = ["N", "form"]
    timeout = 900
    D = 10

    def setup(self, N, form):
        skip_unless_slow(N >= 100000, "the pairwise bounds at N = 1e5 take minutes")
        if form == "bhattacharyya" and N * N * self.D > 5e8:
            raise NotImplementedError("the exact elementwise form is used up to N^2 D = 5e8 only")
        configure_torch()
        import torch

        from estimators.references import brackets
        from estimators.scenarios import make_scenario

        field = make_scenario("heteroscedastic", N=N, D=self.D, separation=0.5, seed=0)
        mu = (field.mu - field.mu.mean(0)).to(torch.float64)
        lv = field.logvar.to(torch.float64)
        log_w = torch.full((N,), -math.log(N), dtype=torch.float64)
        fn = {"kl": brackets._kl_information, "bhattacharyya": brackets._bhattacharyya_exact,
              "bhattacharyya_relaxed": brackets._bhattacharyya_relaxed}[form]
        self.fn = lambda: fn(mu, lv, log_w)

    def time_pairwise_bound(self, N, form):
        self.fn()
