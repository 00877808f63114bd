"""exact: the full mixture over the field, against a brute-force loop, autograd and finite differences."""
import math

import pytest
import torch

from estimators import log_aggregate_posterior
from tests.helpers import brute_exact, call, draw, make_field


def test_exact_matches_brute_force():
    mu, lv = make_field(13, 3, seed=2)
    index = torch.tensor([0, 4, 4, 12, 7])  # a repeated index is fine for the exact mixture
    z = draw(mu[index], lv[index], seed=3)
    got, got_dims = call(log_aggregate_posterior, "exact", z, mu, lv, index)
    want, want_dims = brute_exact(z, mu, lv)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-10)
    torch.testing.assert_close(got_dims, want_dims, rtol=0, atol=1e-10)


def test_exact_gradient_matches_finite_differences_and_autograd():
    N, D = 30, 3
    mu, lv = make_field(N, D, seed=37)
    index = torch.tensor([0, 7, 8, 20, 29])
    B = len(index)
    z = draw(mu[index], lv[index], seed=38)
    inputs = [t.clone().requires_grad_() for t in (z, mu, lv)]
    lq, lqd = call(log_aggregate_posterior, "exact", *inputs, index)
    (lq.sum() + 0.5 * lqd.sum()).backward()
    ref_inputs = [t.clone().requires_grad_() for t in (z, mu, lv)]
    a, b, c = ref_inputs
    Ld = -0.5 * (math.log(2 * math.pi) + c[None] + (a[:, None] - b[None]) ** 2 * torch.exp(-c[None]))
    ref = torch.logsumexp(Ld.sum(2), 1).sum() + 0.5 * torch.logsumexp(Ld, 1).sum() - (1 + 0.5 * D) * B * math.log(N)
    ref.backward()
    for t, r in zip(inputs, ref_inputs):
        torch.testing.assert_close(t.grad, r.grad, rtol=1e-9, atol=1e-11)

    def f(zz, ll):  # central finite differences on a few coordinates of z and logvar
        out = call(log_aggregate_posterior, "exact", zz, mu, ll, index)
        return float(out[0].sum() + 0.5 * out[1].sum())

    h = 1e-6
    for (which, i, d) in [(0, 1, 2), (0, 4, 0), (2, 7, 1), (2, 20, 2)]:
        zp, lp, zm, lm = z.clone(), lv.clone(), z.clone(), lv.clone()
        (zp if which == 0 else lp)[i, d] += h
        (zm if which == 0 else lm)[i, d] -= h
        fd = (f(zp, lp) - f(zm, lm)) / (2 * h)
        assert fd == pytest.approx(float(inputs[which].grad[i, d]), rel=1e-6, abs=1e-8)
