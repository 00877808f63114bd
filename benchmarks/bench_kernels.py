r"""Speed and peak memory of the mixture kernels: the joint log q(z) and its D marginals.

Q = N query points against N components (the shape of an exact reference), float32:

* ``native``: :func:`estimators.kernels.log_mixture` / ``log_mixture_marginals`` (fused C kernel),
* ``torch``: the same with ``use_native=False`` (streamed pure-torch path),
* ``naive``: the Q x N x D broadcast + ``torch.logsumexp`` of the published code (see common.py).

``MixtureWeightedMarginals`` times the minibatch estimators' marginals: Q = N = B with a (B, B)
log-weight matrix shared by every dimension (:func:`estimators.kernels.log_weighted_marginals`),
forward and forward + backward.

By default only cases of about a second or less run; the rest need ASV_SLOW=1: N = 20000, the
torch marginals at N = 4096, and the naive form above Q N D = 7e7 elements (GBs). Never run: the
naive form above 2e8 elements (over 0.8 GB per temporary) and the torch marginals above 5e9
(tens of seconds per call, repeated by asv).
"""
from __future__ import annotations

import math

import torch

from .common import (DATASET_SIZE, configure_torch, naive_joint, naive_log_normal, naive_marginals, queries,
                     skip_unless_slow)

NAIVE_QUICK = 7e7  # elements of the Q x N x D tensor run by default (about 0.3 GB float32)
NAIVE_MAX = 2e8  # never run beyond (several temporaries of 0.8 GB each)
TORCH_MARGINALS_MAX = 5e9  # Q N D of the torch marginals never run (about 1.5 ns per term on one thread: tens of s)


def skip_cases(impl: str, N: int, D: int, *, marginals: bool) -> None:
    r"""Raise NotImplementedError (asv: skipped) for the cases that are slow or impossible here."""
    if impl == "naive":
        size = float(N) * N * D
        if size > NAIVE_MAX:
            raise NotImplementedError(f"naive broadcast at N={N}, D={D} needs > {4 * size / 1e9:.0f} GB")
        skip_unless_slow(size > NAIVE_QUICK, "naive broadcast needs GBs")
    skip_unless_slow(N >= 20000, "N = 20000 takes seconds per call")
    if impl == "torch" and marginals:
        if float(N) * N * D > TORCH_MARGINALS_MAX:
            raise NotImplementedError(f"the torch marginals at N={N}, D={D} take tens of seconds per call")
        skip_unless_slow(N >= 4096, "the torch marginals take seconds")
    if impl == "native":
        from estimators.kernels import native

        if native.get() is None:  # timing the fallback under the native label would mislead
            raise NotImplementedError(f"native kernel unavailable: {native.unavailable_reason()}")


class _Kernel:
    params = (["native", "torch", "naive"], [1024, 4096, 20000], [10, 64])
    param_names = ["impl", "N", "D"]
    timeout = 600
    marginals = False

    def setup(self, impl, N, D):
        configure_torch()
        skip_cases(impl, N, D, marginals=self.marginals)
        from estimators.kernels import log_mixture, log_mixture_marginals

        z, mu, logvar = queries(N, N, D, "float32")
        log_n = math.log(N)
        if impl == "naive":
            naive = naive_marginals if self.marginals else naive_joint
            self.fn = lambda: naive(z, mu, logvar)
        else:
            kernel = log_mixture_marginals if self.marginals else log_mixture
            native = impl == "native"
            self.fn = lambda: kernel(z, mu, logvar, use_native=native) - log_n
            kernel(z[:2], mu[:2], logvar[:2], use_native=native)  # warm-up: loads (or compiles) the C kernel


class MixtureJoint(_Kernel):
    r"""log q(z_i) of Q = N points under the N-component mixture, (Q,)."""

    def time_joint(self, impl, N, D):
        self.fn()

    def peakmem_joint(self, impl, N, D):
        self.fn()


class MixtureMarginals(_Kernel):
    r"""All D marginals log q(z_id) of Q = N points, (Q, D)."""

    marginals = True

    def time_marginals(self, impl, N, D):
        self.fn()

    def peakmem_marginals(self, impl, N, D):
        self.fn()


class MixtureJointGradient:
    r"""Forward + backward of the joint kernel (what a training loss pays), Q = N, D = 10."""

    params = (["native", "torch", "naive"], [1024, 4096])
    param_names = ["impl", "N"]
    D = 10

    def setup(self, impl, N):
        configure_torch()
        skip_cases(impl, N, self.D, marginals=False)
        from estimators.kernels import log_mixture

        z, mu, logvar = queries(N, N, self.D, "float32")
        self.leaves = [t.clone().requires_grad_(True) for t in (z, mu, logvar)]
        if impl == "naive":
            self.fn = lambda: naive_joint(*self.leaves)
        else:
            native = impl == "native"
            self.fn = lambda: log_mixture(*self.leaves, use_native=native)
            log_mixture(z[:2], mu[:2], logvar[:2], use_native=native)

    def _step(self):
        self.fn().sum().backward()
        for t in self.leaves:
            t.grad = None

    def time_forward_backward(self, impl, N):
        self._step()

    def peakmem_forward_backward(self, impl, N):
        self._step()


def stratified_log_weights(B: int, dataset_size: int = DATASET_SIZE):
    r"""(B, B) log weights of stratified sampling: 1/N on the diagonal, (N-1)/(N (B-1)) elsewhere."""
    W = torch.full((B, B), math.log((dataset_size - 1) / (dataset_size * (B - 1))))
    W.fill_diagonal_(-math.log(dataset_size))
    return W


class MixtureWeightedMarginals:
    r"""log q(z_id) of a minibatch with a (B, B) log-weight matrix, (B, D), D = 10: forward, forward + backward."""

    params = (["native", "torch", "naive"], [1024, 2048])
    param_names = ["impl", "N"]
    D = 10

    def setup(self, impl, N):
        configure_torch()
        skip_cases(impl, N, self.D, marginals=True)
        from estimators.kernels import log_weighted_marginals

        z, mu, logvar = queries(N, N, self.D, "float32")
        W = stratified_log_weights(N)
        self.leaves = [t.clone().requires_grad_(True) for t in (z, mu, logvar)]
        if impl == "naive":
            self.fn = lambda *a: torch.logsumexp(naive_log_normal(*a) + W[:, :, None], dim=1)
        else:
            native = impl == "native"
            self.fn = lambda *a: log_weighted_marginals(*a, W, use_native=native)
            log_weighted_marginals(z[:2], mu[:2], logvar[:2], W[:2, :2], use_native=native)
        self.inputs = (z, mu, logvar)

    def time_weighted_marginals(self, impl, N):
        with torch.no_grad():
            self.fn(*self.inputs)

    def time_forward_backward(self, impl, N):
        self.fn(*self.leaves).sum().backward()
        for t in self.leaves:
            t.grad = None
