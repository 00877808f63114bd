"""The published variants (mss_shipped, mss_per_dim, tc_no_constant): replicas of shipped code, bugs included.

Independent references: float64 Python loops with the shipped weights written from the shipped code
(``tests.helpers.hand_weights``), and the closed-form offsets between the variants.
"""
import math

import pytest
import torch

from estimators import ESTIMATORS, decompose, log_aggregate_posterior
from tests.helpers import F64, Z, brute_minibatch, call
from tests.log_qz.test_minibatch import minibatch_replicates

PUBLISHED = [name for name, info in ESTIMATORS.items() if info.published_variant]


def test_the_published_variants_are_registered_and_never_unbiased():
    assert set(PUBLISHED) == {"mss_shipped", "mss_per_dim", "tc_no_constant"}
    for name in PUBLISHED:
        info = ESTIMATORS[name]
        assert info.family == "minibatch" and not info.unbiased_inside and info.citation


@pytest.mark.parametrize("name", PUBLISHED)
@pytest.mark.parametrize("B,D", [(5, 3), (2, 4), (9, 1), (4, 2)])
def test_published_matches_brute_force(name, B, D, make_batch):
    b = make_batch(50, B, D, seed=B * 10 + D)
    got, got_dims = call(log_aggregate_posterior, name, b.z, *b.field, b.index)
    want, want_dims = brute_minibatch(name, b.z, b.mu, b.logvar, 50)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-10)
    torch.testing.assert_close(got_dims, want_dims, rtol=0, atol=1e-10)


def test_tc_no_constant_is_mws_tc_minus_its_missing_constant(make_batch):
    """No normalising constant at all: TC = mws TC - (D - 1) log(N B), per sample."""
    b = make_batch(1000, 32, 4, seed=9)
    mws, nc = (call(decompose, name, b.z, *b.field, b.index) for name in ("mws", "tc_no_constant"))
    torch.testing.assert_close(nc["tc_terms"], mws["tc_terms"] - (b.D - 1) * math.log(b.N * b.B), rtol=0, atol=1e-10)


def test_mss_per_dim_joint_takes_the_shipped_weight_d_times(make_batch):
    """mss_per_dim and mss_shipped share the marginals; only the joint differs (D log W_ij against log W_ij)."""
    b = make_batch(200, 6, 3, seed=10)
    shipped = call(log_aggregate_posterior, "mss_shipped", b.z, *b.field, b.index)
    per_dim = call(log_aggregate_posterior, "mss_per_dim", b.z, *b.field, b.index)
    torch.testing.assert_close(per_dim[1], shipped[1], rtol=0, atol=1e-12)
    assert bool((per_dim[0] < shipped[0] - 1.0).all())  # weights below 1 raised to the power D = 3


@pytest.mark.slow
def test_unbiasedness_check_detects_the_shipped_matrix():
    vals, _, truth, _ = minibatch_replicates("mss_shipped", position=2, replicates=200)
    assert float(((vals.mean() - truth) / (vals.std() / math.sqrt(200))).abs()) > Z
