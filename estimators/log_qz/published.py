r"""The published variants: replicas of estimators as shipped in widely copied code, bugs included.

Kept so that a user can see how wrong a reported number is; never a default.

* ``mss_shipped`` -- the weight matrix of rtqichen/beta-tcvae ``_log_importance_weight_matrix``
  (filled with the wrong stride: 1/N in column 0 of every row, see :mod:`.weights`), applied once to
  the joint and to each marginal.
* ``mss_per_dim`` -- the same matrix added to every L_ijd before the sum over d, so the joint receives
  D log W_ij (YannDubs/disentangling-vae ``_get_log_pz_qz_prodzi_qzCx`` with ``is_mss=True``).
* ``tc_no_constant`` -- no normalising constant at all (the same function with ``is_mss=False``):
  TC = mws TC - (D-1) log(N B).
* ``hfvae`` -- the batch marginal of the HFVAE code (probtorch, Esmaeili et al. 2019): the own term
  divided by bias = (N - 1)/(B - 1), then the mean over B; it is ``stratified`` plus
  c = log(N (B - 1) / (B (N - 1))) <= 0 in log q(z) and in every log q(z_d), so mi is raised by
  |c|, tc raised by (D - 1)|c|, kl_agg lowered by |c| and dimwise_kl lowered by D|c| (0 when B = N).
* ``calc_mi`` -- the mutual information of He et al. 2019 (``calc_mi`` of the lagging-encoder code):
  the closed-form negative entropy of q(z|x) minus the naive log-mean-exp over the batch. No bug: in
  expectation it equals ``naive``'s mi (the InfoNCE bound), with a different variance; it defines mi only.
"""
from __future__ import annotations

import math

from .minibatch import weighted_logsumexp
from .registry import LogWeights, register_minibatch
from .weights import cached_log_weights

SHIPPED_MATRIX = ("rtqichen/beta-tcvae vae_quant.py VAE._log_importance_weight_matrix (copied into "
                  "YannDubs/disentangling-vae disvae/utils/math.py log_importance_weight_matrix)")
HFVAE = ("Esmaeili, Wu, Jain, Bozkurt, Siddharth, Paige, Brooks, Dy & van de Meent (2019), Structured Disentangled "
         "Representations, AISTATS; probtorch objectives/marginal.py elbo(bias=(N - 1)/(B - 1)) and "
         "Trace.log_batch_marginal")
HE_2019 = ("He, Spokoyny, Neubig & Berg-Kirkpatrick (2019), Lagging Inference Networks and Posterior Collapse in "
           "Variational Autoencoders, ICLR; jxhe/vae-lagging-encoder modules/encoders/encoder.py calc_mi")
SHIPPED_PER_DIM = ("YannDubs/disentangling-vae disvae/models/losses.py _get_log_pz_qz_prodzi_qzCx "
                   "(and its many copies)")


@register_minibatch("mss_shipped", implementation=weighted_logsumexp, unbiased_inside=False,
                    published_variant=True, needs_dataset_size=True, min_batch=2,
                    citation=SHIPPED_MATRIX + "; weights applied once to the joint and to each marginal")
def _mss_shipped(B, N, D, dtype, device):
    r"""Replica of the shipped MSS: 1/N in column 0 of every row, strat in column 1 (the stride bug)."""
    W = cached_log_weights("mss_shipped", B, N, dtype, device)
    return LogWeights(W, W)


@register_minibatch("mss_per_dim", implementation=weighted_logsumexp, unbiased_inside=False,
                    published_variant=True, needs_dataset_size=True, min_batch=2,
                    citation=SHIPPED_PER_DIM + ", is_mss=True: the shipped matrix added to every L_ijd")
def _mss_per_dim(B, N, D, dtype, device):
    r"""Replica: shipped log W added to each L_ijd before the sum over d, so the joint gets D log W_ij."""
    W = cached_log_weights("mss_shipped", B, N, dtype, device)
    return LogWeights(W * float(D), W)


@register_minibatch("tc_no_constant", implementation=weighted_logsumexp, unbiased_inside=False,
                    published_variant=True,
                    citation=SHIPPED_PER_DIM + ", is_mss=False: no normalising constant at all")
def _tc_no_constant(B, N, D, dtype, device):
    r"""Replica: LSE_j L_ij and LSE_j L_ijd with no constant; TC = mws TC - (D-1) log(N B)."""
    return LogWeights(0.0, 0.0)


@register_minibatch("hfvae", implementation=weighted_logsumexp, unbiased_inside=False, published_variant=True,
                    needs_dataset_size=True, min_batch=2,
                    citation=HFVAE + "; the own term divided by bias, then the mean over B, in the joint and "
                             "in every marginal")
def _hfvae(B, N, D, dtype, device):
    r"""Replica of HFVAE's batch marginal: W_ii = M/(B (N-1)), else 1/B (stratified + log(N M / (B (N-1))))."""
    W = cached_log_weights("hfvae", B, N, dtype, device)
    return LogWeights(W, W)


@register_minibatch("calc_mi", implementation=weighted_logsumexp, unbiased_inside=False, published_variant=True,
                    quantities=("mi",), analytic_entropy=True, mi_bound="lower", citation=HE_2019)
def _calc_mi(B, N, D, dtype, device):
    r"""He et al.'s calc_mi: mean_i -H(q(z|n_i)) - mean_i [LSE_j L_ij - log B] (mi only; naive's mi in expectation)."""
    return LogWeights(-math.log(B), -math.log(B))
