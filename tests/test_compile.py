"""torch.compile of the estimators: the values and gradients of eager mode, for every registered estimator.

Before the kernels were registered operators, ``torch.compile`` of a training step silently gave
wrong numbers (the C kernel, called through ctypes inside traced code, read freed memory; see
:mod:`estimators.kernels._dispatch`). Here: the issue's reproduction (fast, ``aot_eager``: the bug was
in dynamo's tracing, before any backend), then every estimator of :data:`estimators.ESTIMATORS`
through the default backend (inductor), forward and gradients in z and in the field's mu and logvar,
float32 and float64, and recompilation for new batch sizes. Compiling takes seconds on two cores:
the inductor tests are marked slow.
"""
from __future__ import annotations

import pytest
import torch
from torch._dynamo.utils import counters

import estimators
from tests.helpers import draw, make_field

# dynamo traces through the lru_cache of the minibatch weight matrices (estimators.log_qz.weights) and says so
pytestmark = pytest.mark.filterwarnings("ignore:Dynamo detected a call to a `functools.lru_cache`")

DTYPES = [pytest.param(torch.float64, id="f64"), pytest.param(torch.float32, id="f32")]
QUANTITIES = ("mi", "kl_agg", "tc", "dimwise_kl")


def _tolerance(dtype):
    return dict(rtol=1e-10, atol=1e-10) if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-5)


def _batch(N, B, D, dtype, seed):
    mu, logvar = make_field(N, D, seed=seed, dtype=dtype)
    index = torch.randperm(N, generator=torch.Generator().manual_seed(seed + 1))[:B]
    return mu, logvar, index, draw(mu[index], logvar[index], seed=seed + 2)


def _objective(name, index):
    """A training-step objective of one estimator: a weighted sum of the four quantities (the one contract)."""
    def objective(z, field_mu, field_logvar, generator):
        terms = estimators.decompose(z, field_mu[index], field_logvar[index], None, name,
                                     field=(field_mu, field_logvar), index=index, k=4, generator=generator)
        return sum(w * terms[q] for w, q in zip((0.5, 1.0, 2.0, 0.25), QUANTITIES))

    return objective


def _value_and_grads(fn, z, field_mu, field_logvar):
    leaves = [t.detach().clone().requires_grad_() for t in (z, field_mu, field_logvar)]
    value = fn(*leaves, torch.Generator().manual_seed(0))  # iwae: the same draws in both modes
    return [value.detach(), *torch.autograd.grad(value, leaves)]


def _mismatches(name, fn, compiled, inputs, dtype) -> list[str]:
    want = _value_and_grads(fn, *inputs)
    got = _value_and_grads(compiled, *inputs)
    bad = []
    for label, g, w in zip(("value", "d/dz", "d/dmu", "d/dlogvar"), got, want):
        try:
            torch.testing.assert_close(g, w, **_tolerance(dtype))
        except AssertionError:
            bad.append(f"{name} {label}: max |compiled - eager| = {float((g - w).abs().max()):.3g}")
    return bad


@pytest.mark.parametrize("dtype", DTYPES)
def test_issue_reproduction_mss_tc(dtype):
    """The issue: torch.compile(lambda z, mu, lv: decompose(..., "mss")["tc"]) differed from eager mode."""
    mu, logvar = make_field(32, 3, seed=3, dtype=dtype)
    z = draw(mu, logvar, seed=4)

    def tc(z, mu, logvar):
        return estimators.decompose(z, mu, logvar, dataset_size=1000, estimator="mss")["tc"]

    torch._dynamo.reset()
    compiled = torch.compile(tc, backend="aot_eager")
    leaves = [t.clone().requires_grad_() for t in (z, mu, logvar)]
    got = compiled(*leaves)
    got_grads = torch.autograd.grad(got, leaves)
    want = tc(*leaves)
    want_grads = torch.autograd.grad(want, leaves)
    torch.testing.assert_close(got, want, **_tolerance(dtype))
    for g, w in zip(got_grads, want_grads):
        torch.testing.assert_close(g, w, **_tolerance(dtype))


@pytest.mark.slow
@pytest.mark.parametrize("dtype", DTYPES)
def test_every_estimator_compiles_to_the_eager_values_and_gradients(dtype):
    mu, logvar, index, z = _batch(40, 16, 3, dtype, seed=1)
    bad = []
    for name in estimators.ESTIMATORS:
        torch._dynamo.reset()  # a fresh cache per estimator: no recompile limit, no silent eager fallback
        counters.clear()
        fn = _objective(name, index)
        bad += _mismatches(name, fn, torch.compile(fn), (z, mu, logvar), dtype)
        assert counters["stats"]["unique_graphs"] > 0, f"{name}: nothing was compiled"
    assert not bad, "\n".join(bad)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mss", "exact"])
def test_recompiling_for_new_batch_sizes(name):
    """New shapes recompile (then dynamic shapes): every batch size gives the eager values."""
    torch._dynamo.reset()
    bad = []
    for B in (16, 24, 40):
        mu, logvar, index, z = _batch(64, B, 3, torch.float32, seed=B)
        fn = _objective(name, index)
        compiled = torch.compile(fn)
        bad += [f"B={B}: {m}" for m in _mismatches(name, fn, compiled, (z, mu, logvar), torch.float32)]
    assert not bad, "\n".join(bad)
