"""Adapters: how to wrap the shapes of popular implementations for ``python -m estimators audit``.

The audit calls ``f(z, mu, logvar, dataset_size)`` with (B, D) torch tensors. Each block below is
the shape of a widely copied implementation (written here from its description, bugs included)
followed by the few lines that adapt it. Try:

    python -m estimators audit examples/audit_adapters.py:audit_loss_method
    python -m estimators audit examples/audit_adapters.py:audit_numpy_function --no-accuracy
    python -m estimators audit examples/audit_adapters.py:audit_global_dataset_size --no-accuracy
"""
import math

import numpy as np
import torch

LOG_2PI = math.log(2 * math.pi)


# 1. A loss method that takes a sampled latent and a (mean, logvar) pair, with N as an attribute
#    (the shape of the beta-TCVAE losses of disentangling-vae and its copies).

class BetaTCVAELoss:
    def __init__(self, n_data, is_mss=True):
        self.n_data, self.is_mss = n_data, is_mss

    def log_densities(self, latent_sample, latent_dist):
        mean, logvar = latent_dist
        B = latent_sample.shape[0]
        mat = -0.5 * (LOG_2PI + logvar[None] + (latent_sample[:, None] - mean[None]) ** 2 * torch.exp(-logvar[None]))
        if self.is_mss:
            M = B - 1
            strat = (self.n_data - M) / (self.n_data * M)
            W = torch.empty(B, B).fill_(1 / M)
            W.view(-1)[::M + 1] = 1 / self.n_data  # the stride bug: M + 1 = B steps a whole row
            W.view(-1)[1::M + 1] = strat
            W[M - 1, 0] = strat
            mat = mat + W.log().to(mat.dtype)[:, :, None]  # and the weights go into every dimension
        log_qz = torch.logsumexp(mat.sum(2), 1)
        log_prod_qzi = torch.logsumexp(mat, 1).sum(1)
        return log_qz, log_prod_qzi


def audit_loss_method(z, mu, logvar, dataset_size):
    loss = BetaTCVAELoss(n_data=dataset_size, is_mss=True)  # N is an attribute: set it from the argument
    return loss.log_densities(z, (mu, logvar))  # per-sample (log q(z), log prod q(z_d))


# 2. A TensorFlow-style function on numpy arrays that drops the constants (the shape of the
#    total-correlation function of disentanglement evaluation code).

def total_correlation_np(z, z_mean, z_logvar):
    log_qz_prob = -0.5 * (LOG_2PI + z_logvar[None] + (z[:, None] - z_mean[None]) ** 2 * np.exp(-z_logvar[None]))

    def logsumexp(x, axis):
        m = x.max(axis=axis, keepdims=True)
        return np.squeeze(m + np.log(np.exp(x - m).sum(axis=axis, keepdims=True)), axis)
    log_qz_product = logsumexp(log_qz_prob, 1).sum(1)
    log_qz = logsumexp(log_qz_prob.sum(2), 1)
    return np.mean(log_qz - log_qz_product)


def audit_numpy_function(z, mu, logvar, dataset_size):
    tc = total_correlation_np(*(t.detach().numpy() for t in (z, mu, logvar)))  # numpy in, numpy out
    return {"tc": float(tc)}  # a scalar, named: the audit says it is not differentiable


# 3. A function that reads the data-set size from a global of its module.

DATASET_SIZE = 60000


def mws_tc(z, mu, logvar):
    B = z.shape[0]
    mat = -0.5 * (LOG_2PI + logvar[None] + (z[:, None] - mu[None]) ** 2 * torch.exp(-logvar[None]))
    c = math.log(DATASET_SIZE * B)
    return ((torch.logsumexp(mat.sum(2), 1) - c) - (torch.logsumexp(mat, 1) - c).sum(1)).mean()


def audit_global_dataset_size(z, mu, logvar, dataset_size):
    global DATASET_SIZE
    saved, DATASET_SIZE = DATASET_SIZE, dataset_size  # inject the audit's N (without it: a missing N)
    try:
        return {"tc": mws_tc(z, mu, logvar)}
    finally:
        DATASET_SIZE = saved


def audit_global_as_shipped(z, mu, logvar, dataset_size):
    return {"tc": mws_tc(z, mu, logvar)}  # N stays 60000 whatever the data set
