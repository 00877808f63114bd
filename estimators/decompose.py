r"""Stage 4, the quantities: minibatch estimates of the aggregate-posterior quantities: mi, kl_agg, tc, dimwise_kl.

Each quantity is a mean over the batch of per-sample terms built from an estimate of log q(z_i)
and of the marginals log q(z_id) (:func:`estimators.log_aggregate_posterior`):

* mi: mean_i [log q(z_i|n_i) - log q^(z_i)] (index-code mutual information),
* kl_agg: mean_i [log q^(z_i) - log p(z_i)] (marginal KL, Hoffman & Johnson 2016),
* tc: mean_i [log q^(z_i) - sum_d log q^(z_id)] (total correlation, Chen et al. 2018),
* dimwise_kl: mean_i [sum_d log q^(z_id) - log p(z_i)],

so mi + kl_agg = mean_i [log q(z_i|n_i) - log p(z_i)] and tc + dimwise_kl = kl_agg hold for every
batch and estimator. (An estimator with ``analytic_entropy``, He et al.'s ``calc_mi``, uses the closed-form
-H(q(z|n_i)) in place of log q(z_i|n_i) in mi; it defines mi only, the other entries are ``naive``'s.) ``avg_kl`` is the closed-form mean of KL(q(z|n_i) || p(z)) over the batch's own
posteriors, whose expectation is the ELBO-surgery total mi + kl_agg.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .log_qz import prepare
from .log_qz.registry import QUANTITIES
from .numerics import kl_to_prior, log_normal, log_standard_normal, neg_entropy_normal

__all__ = ["decompose", "QUANTITIES"]


def decompose(z, mu, logvar, dataset_size=None, estimator: str = "mss", *, field=None, index=None, k=None,
              proposal: str = "uniform", generator: torch.Generator | None = None) -> dict[str, Tensor]:
    r"""Estimate mi, kl_agg, tc and dimwise_kl from samples z_i ~ q(z|n_i) (Chen et al. 2018, NeurIPS).

    Arguments as :func:`estimators.log_aggregate_posterior`: ``mu``, ``logvar`` (B, D) are the batch's
    own posteriors for every estimator; ``field`` and ``index`` add the whole data set for the
    estimators that read it (``iwae``, ``exact``).

    Returns:
        dict of tensors in the inputs' dtype, all differentiable in z, mu and logvar:
        scalars ``"mi"``, ``"kl_agg"``, ``"tc"``, ``"dimwise_kl"``, ``"avg_kl"``; per-sample (B,)
        ``"mi_terms"``, ``"kl_agg_terms"``, ``"tc_terms"``, ``"dimwise_kl_terms"``,
        ``"log_qz"``, ``"log_qz_given_n"``, ``"log_pz"``; and ``"log_qz_dims"`` (B, D).

    Example::

        >>> mu, logvar = torch.randn(512, 10), torch.full((512, 10), -2.0)
        >>> z = mu + torch.randn(512, 10) * torch.exp(0.5 * logvar)
        >>> terms = decompose(z, mu, logvar, dataset_size=60000, estimator="mss")
        >>> loss = terms["mi"] + 6.0 * terms["tc"] + terms["dimwise_kl"]  # beta-TCVAE penalty
    """
    info, batch, options, out_dtype = prepare(z, mu, logvar, dataset_size, estimator, field=field, index=index, k=k,
                                              proposal=proposal)
    log_qz, log_qz_dims = info.implementation(batch, generator=generator, marginals=True, **options)
    log_qz_given_n = log_normal(batch.z, batch.mu, batch.logvar).sum(1)
    log_pz = log_standard_normal(batch.z)
    log_prod = log_qz_dims.sum(1)
    own = neg_entropy_normal(batch.logvar) if info.analytic_entropy else log_qz_given_n
    terms = {
        "mi_terms": own - log_qz,
        "kl_agg_terms": log_qz - log_pz,
        "tc_terms": log_qz - log_prod,
        "dimwise_kl_terms": log_prod - log_pz,
    }
    out = {name: terms[f"{name}_terms"].mean() for name in QUANTITIES}
    out["avg_kl"] = kl_to_prior(batch.mu, batch.logvar).mean()
    out.update(terms)
    out.update(log_qz=log_qz, log_qz_dims=log_qz_dims, log_qz_given_n=log_qz_given_n, log_pz=log_pz)
    return {name: value.to(out_dtype) for name, value in out.items()}
