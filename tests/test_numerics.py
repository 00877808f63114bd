"""The shared formulas (estimators/numerics.py) against torch.distributions and math."""
import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from estimators import numerics
from tests.helpers import F64, make_field


def test_log_2pi_and_the_accumulation_dtype():
    assert numerics.LOG_2PI == math.log(2 * math.pi)
    assert numerics.ACCUMULATE == torch.float64


@pytest.mark.parametrize("dtype,clamp", [(torch.float16, -80.0), (torch.bfloat16, -80.0), (torch.float32, -80.0),
                                         (torch.float64, -700.0)])
def test_exp_clamp_stays_above_the_denormals(dtype, clamp):
    assert numerics.exp_clamp(dtype) == clamp
    if dtype in (torch.float32, torch.float64):  # exp of the clamp is still a normal number of that dtype
        assert math.exp(clamp) > torch.finfo(dtype).tiny


@pytest.mark.parametrize("dtype", [F64, torch.float32])
def test_log_normal_is_elementwise_and_broadcasts(dtype):
    mu, lv = make_field(7, 3, seed=0, dtype=dtype)
    z = torch.randn(5, 1, 3, generator=torch.Generator().manual_seed(1), dtype=dtype)
    got = numerics.log_normal(z, mu[None], lv[None])  # (5, 7, 3)
    want = Normal(mu[None], torch.exp(0.5 * lv[None])).log_prob(z)
    assert got.shape == (5, 7, 3) and got.dtype == dtype
    torch.testing.assert_close(got, want)


def test_log_standard_normal_sums_the_rows():
    z = torch.randn(4, 6, generator=torch.Generator().manual_seed(2), dtype=F64)
    torch.testing.assert_close(numerics.log_standard_normal(z), Normal(0.0, 1.0).log_prob(z).sum(-1), rtol=0, atol=1e-13)
    assert numerics.log_standard_normal(z[None]).shape == (1, 4)


def test_kl_to_prior_matches_torch_distributions(small_field):
    mu, lv = small_field
    want = kl_divergence(Normal(mu, torch.exp(0.5 * lv)), Normal(0.0, 1.0)).sum(-1)
    torch.testing.assert_close(numerics.kl_to_prior(mu, lv), want, rtol=0, atol=1e-13)
    assert float(numerics.kl_to_prior(torch.zeros(1, 3), torch.zeros(1, 3))) == 0.0
