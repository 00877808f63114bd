r"""The published variants: replicas of estimators as shipped in widely copied code, bugs included.

Kept so that a user can see how wrong a reported number is; never a default.

* ``mss_shipped`` -- the weight matrix of rtqichen/beta-tcvae ``_log_importance_weight_matrix``
  (filled with the wrong stride: 1/N in column 0 of every row, see :mod:`.weights`), applied once to
  the joint and to each marginal.
* ``mss_per_dim`` -- the same matrix added to every L_ijd before the sum over d, so the joint receives
  D log W_ij (YannDubs/disentangling-vae ``_get_log_pz_qz_prodzi_qzCx`` with ``is_mss=True``).
* ``tc_no_constant`` -- no normalising constant at all (the same function with ``is_mss=False``):
  TC = mws TC - (D-1) log(N B).
"""
from __future__ import annotations

from .minibatch import weighted_logsumexp
from .registry import LogWeights, register_minibatch
from .weights import cached_log_weights

SHIPPED_MATRIX = ("rtqichen/beta-tcvae vae_quant.py VAE._log_importance_weight_matrix (copied into "
                  "YannDubs/disentangling-vae disvae/utils/math.py log_importance_weight_matrix)")
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
