"""Small implementations of each estimator and of each known bug, written here from the formulas
(docs/maths.md and the shipped code's description), never by calling the package: what the audit
must recognise. Each takes (z, mu, logvar, N) like a user's function.

The pairwise matrices are B x B x D broadcasts on purpose: that is how the published code is written.
"""
import math

import numpy as np
import torch

LOG_2PI = math.log(2 * math.pi)


def pairwise(z, mu, logvar, *, drop_log_2pi=False):
    """L[i, j, d] = log N(z_id; mu_jd, exp(logvar_jd))."""
    c = 0.0 if drop_log_2pi else LOG_2PI
    return -0.5 * (c + logvar[None] + (z[:, None] - mu[None]) ** 2 * torch.exp(-logvar[None]))


def weighted(z, mu, logvar, log_w_joint, log_w_marginal):
    L = pairwise(z, mu, logvar)
    return torch.logsumexp(L.sum(2) + log_w_joint, 1), torch.logsumexp(L + log_w_marginal[:, :, None], 1).sum(1)


def mss_matrix(B, N, dtype):
    M = B - 1
    W = torch.full((B, B), 1.0 / M, dtype=dtype)
    i = torch.arange(B)
    W[i, (i + 1) % B] = (N - M) / (N * M)
    W[i, i] = 1.0 / N
    return W


def scalars(z, mu, logvar, log_qz, log_prod):
    own = (-0.5 * (LOG_2PI + logvar + (z - mu) ** 2 * torch.exp(-logvar))).sum(1)
    prior = (-0.5 * (LOG_2PI + z ** 2)).sum(1)
    return {"mi": (own - log_qz).mean(), "kl_agg": (log_qz - prior).mean(), "tc": (log_qz - log_prod).mean(),
            "dimwise_kl": (log_prod - prior).mean()}


# --- correct estimators -------------------------------------------------------------------------

def mss_from_the_paper(z, mu, logvar, N):
    """Chen et al. 2018, App. C.2, as intended: per-sample (log q(z), log prod q(z_d))."""
    log_w = mss_matrix(z.shape[0], N, z.dtype).log()
    return weighted(z, mu, logvar, log_w, log_w)


def mss_scalars(z, mu, logvar, N):
    """The same, returning all four quantities as a dict."""
    return scalars(z, mu, logvar, *mss_from_the_paper(z, mu, logvar, N))


def mws_from_the_paper(z, mu, logvar, N):
    B = z.shape[0]
    L = pairwise(z, mu, logvar)
    c = math.log(N * B)
    return torch.logsumexp(L.sum(2), 1) - c, (torch.logsumexp(L, 1) - c).sum(1)


def stratified(z, mu, logvar, N):
    B = z.shape[0]
    W = torch.full((B, B), (N - 1) / (N * (B - 1)), dtype=z.dtype)
    W.fill_diagonal_(1.0 / N)
    return weighted(z, mu, logvar, W.log(), W.log())


def infonce_mi(z, mu, logvar, N):
    """The naive minibatch mi (InfoNCE with the encoder as critic)."""
    B = z.shape[0]
    L = pairwise(z, mu, logvar).sum(2)
    own = L.diagonal()
    return {"mi": (own - (torch.logsumexp(L, 1) - math.log(B))).mean()}


def leave_one_out(z, mu, logvar, N):
    B = z.shape[0]
    W = torch.full((B, B), 1.0 / (B - 1), dtype=z.dtype)
    W.fill_diagonal_(0.0)
    return weighted(z, mu, logvar, W.log(), W.log())


def he_calc_mi(z, mu, logvar, N):
    """He et al. 2019's calc_mi: the analytic negative entropy minus the naive log-mean-exp."""
    B, D = z.shape
    neg_entropy = (-0.5 * D * LOG_2PI - 0.5 * (1 + logvar).sum(-1)).mean()
    log_density = pairwise(z, mu, logvar).sum(2)
    log_qz = torch.logsumexp(log_density, 1) - math.log(B)
    return {"mi": neg_entropy - log_qz.mean()}


# --- the bugs ----------------------------------------------------------------------------------

def shipped_matrix(B, N):
    """rtqichen/beta-tcvae's _log_importance_weight_matrix as shipped (float32), stride bug included."""
    M = B - 1
    strat = (N - M) / (N * M)
    W = torch.empty(B, B).fill_(1 / M)
    W.view(-1)[::M + 1] = 1 / N
    W.view(-1)[1::M + 1] = strat
    W[M - 1, 0] = strat
    return W


def shipped_stride(z, mu, logvar, N):
    """The shipped matrix applied to the joint and to each marginal, as TC."""
    log_w = shipped_matrix(z.shape[0], N).log().to(z.dtype)
    lq, lp = weighted(z, mu, logvar, log_w, log_w)
    return {"tc": (lq - lp).mean()}


def yanndubs_is_mss(z, mu, logvar, N):
    """disentangling-vae _get_log_pz_qz_prodzi_qzCx with is_mss=True: the shipped matrix added to every L_ijd."""
    L = pairwise(z, mu, logvar) + shipped_matrix(z.shape[0], N).log().to(z.dtype)[:, :, None]
    return torch.logsumexp(L.sum(2), 1), torch.logsumexp(L, 1).sum(1)


def yanndubs_no_constant(z, mu, logvar, N):
    """The same function with is_mss=False: no normalising constant at all."""
    L = pairwise(z, mu, logvar)
    return {"tc": (torch.logsumexp(L.sum(2), 1) - torch.logsumexp(L, 1).sum(1)).mean()}


def hfvae_batch_marginal(z, mu, logvar, N):
    """probtorch's log_batch_marginal with bias = (N - 1)/(B - 1): own term / bias, mean over B."""
    B = z.shape[0]
    bias = (N - 1) / (B - 1)
    L = pairwise(z, mu, logvar)
    eye = torch.eye(B, dtype=torch.bool)
    shift = torch.where(eye, -math.log(bias), 0.0).to(z.dtype)
    lq = torch.logsumexp(L.sum(2) + shift, 1) - math.log(B)
    lp = (torch.logsumexp(L + shift[:, :, None], 1) - math.log(B)).sum(1)
    return lq, lp


def mws_weights_per_dimension(z, mu, logvar, N):
    """MWS with -log(N B) added to every L_ijd before the sum: the joint gets -D log(N B)."""
    B = z.shape[0]
    L = pairwise(z, mu, logvar) - math.log(N * B)
    return torch.logsumexp(L.sum(2), 1), torch.logsumexp(L, 1).sum(1)


def mss_transposed(z, mu, logvar, N):
    log_w = mss_matrix(z.shape[0], N, z.dtype).T.log()
    return weighted(z, mu, logvar, log_w, log_w)


def naive_wrong_axis(z, mu, logvar, N):
    """logsumexp over dim 0 (the samples) of L[i, j]: a column sum."""
    B = z.shape[0]
    L = pairwise(z, mu, logvar)
    return torch.logsumexp(L.sum(2), 0) - math.log(B), (torch.logsumexp(L, 0) - math.log(B)).sum(1)


DATASET_SIZE = 60000  # a global the next function reads instead of its argument


def mws_global_dataset_size(z, mu, logvar, N):
    """MWS with the data-set size read from a global: the argument is ignored."""
    return mws_from_the_paper(z, mu, logvar, DATASET_SIZE)


def mws_dropped_log_2pi(z, mu, logvar, N):
    """MWS whose log-density drops log(2 pi)/2 per dimension."""
    B = z.shape[0]
    L = pairwise(z, mu, logvar, drop_log_2pi=True)
    c = math.log(N * B)
    return torch.logsumexp(L.sum(2), 1) - c, (torch.logsumexp(L, 1) - c).sum(1)


def mws_extra_log_b(z, mu, logvar, N):
    """MWS divided by B twice."""
    lq, lp = mws_from_the_paper(z, mu, logvar, N)
    return lq - math.log(z.shape[0]), lp - z.shape[1] * math.log(z.shape[0])


def mss_plus_a_random_constant(z, mu, logvar, N):
    """An unknown variant: MSS's tc plus 0.3183 (no normaliser gives it)."""
    return {"tc": mss_scalars(z, mu, logvar, N)["tc"] + 0.3183}


def mss_matmul_form(z, mu, logvar, N):
    """MSS with |z - mu|^2 / var expanded as z^2 p - 2 z mu p + mu^2 p in the input dtype: cancels in float32."""
    B = z.shape[0]
    p = torch.exp(-logvar)
    quad = (z ** 2)[:, None] * p[None] - 2 * z[:, None] * (mu * p)[None] + (mu ** 2 * p)[None]
    L = -0.5 * (LOG_2PI + logvar[None] + quad)
    log_w = mss_matrix(B, N, z.dtype).log()
    return torch.logsumexp(L.sum(2) + log_w, 1), torch.logsumexp(L + log_w[:, :, None], 1).sum(1)


def tf_style_numpy_tc(z, mu, logvar, N):
    """A TensorFlow-style function on numpy arrays (MWS TC), wrapped: correct but not differentiable."""
    z, mu, logvar = (t.detach().numpy().astype(np.float64) for t in (z, mu, logvar))
    B = z.shape[0]
    L = -0.5 * (LOG_2PI + logvar[None] + (z[:, None] - mu[None]) ** 2 * np.exp(-logvar[None]))

    def lse(x, axis):
        m = x.max(axis=axis, keepdims=True)
        return (m + np.log(np.exp(x - m).sum(axis=axis, keepdims=True))).squeeze(axis)
    c = math.log(N * B)
    return {"tc": float(np.mean((lse(L.sum(2), 1) - c) - (lse(L, 1) - c).sum(1)))}


# --- functions that cannot be audited ----------------------------------------------------------

def raises(z, mu, logvar, N):
    raise RuntimeError("my loss is broken")


def returns_nan(z, mu, logvar, N):
    return {"tc": torch.tensor(float("nan"))}


def wrong_shape(z, mu, logvar, N):
    lq, lp = mss_from_the_paper(z, mu, logvar, N)
    return lq[:, None], lp


def one_number(z, mu, logvar, N):
    return mss_scalars(z, mu, logvar, N)["tc"]


def needs_three(z, mu, logvar, N):
    """MSS that refuses B = 2 (a user's assertion): audited on the other fixtures."""
    if z.shape[0] < 3:
        raise ValueError("batch too small")
    return mss_from_the_paper(z, mu, logvar, N)


class Scalars:
    """An object with attributes, as some losses return."""

    def __init__(self, tc, mi):
        self.tc, self.mi = tc, mi


def object_with_attributes(z, mu, logvar, N):
    s = mss_scalars(z, mu, logvar, N)
    return Scalars(s["tc"], s["mi"])
