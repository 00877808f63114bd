"""The public kernel functions: validation at the boundary only, dtypes, and the exported internals."""
import inspect
import math

import pytest
import torch

from estimators import kernels
from estimators.kernels import (joint_lse, log_mixture, log_mixture_marginals, log_normal_matrix,
                                log_weighted_marginals, log_weighted_sum, marginal_lse)
from estimators.validation import validate_args
from kernel_cases import field, weight_matrix

PUBLIC = [log_mixture, log_mixture_marginals, log_weighted_sum, log_weighted_marginals]


def test_exports():
    assert set(kernels.__all__) == {"log_normal_matrix", "log_mixture", "log_weighted_sum", "log_mixture_marginals",
                                    "log_weighted_marginals", "joint_lse", "marginal_lse", "DEFAULT_BLOCK_BYTES"}
    for fn in (joint_lse, marginal_lse):
        params = inspect.signature(fn).parameters
        assert list(params)[:5] == ["z", "mu", "logvar", "log_weights", "bias"]
        assert params["block_bytes"].default == kernels.DEFAULT_BLOCK_BYTES and params["use_native"].default is True
        assert params["block_bytes"].kind is inspect.Parameter.KEYWORD_ONLY


@pytest.mark.parametrize("fn", PUBLIC + [log_normal_matrix])
def test_bad_inputs_name_the_argument(fn):
    z, mu, logvar = field(N=10, D=3, Q=4, seed=9)
    with pytest.raises(ValueError, match="z has 2 latent dimensions"):
        fn(z[:, :2], mu, logvar)
    with pytest.raises(ValueError, match="mu and logvar must have the same shape"):
        fn(z, mu, logvar[:5])
    bad = mu.clone()
    bad[3, 1] = float("nan")
    with pytest.raises(ValueError, match="mu holds 1 non-finite"):
        fn(z, bad, logvar)
    with pytest.raises(ValueError, match="z must be 2-dimensional"):
        fn(z[0], mu, logvar)
    with pytest.raises(TypeError, match="logvar must have a floating dtype"):
        fn(z, mu, logvar.long())


@pytest.mark.parametrize("fn", [log_mixture, log_mixture_marginals])
def test_bad_log_weights(fn):
    z, mu, logvar = field(N=10, D=3, Q=4, seed=10)
    with pytest.raises(ValueError, match="log_weights must be a tensor of shape"):
        fn(z, mu, logvar, torch.zeros(9, dtype=torch.float64))
    with pytest.raises(ValueError, match="log_weights must not hold NaN or \\+inf"):
        fn(z, mu, logvar, torch.full((10,), math.inf, dtype=torch.float64))


@pytest.mark.parametrize("fn", [log_weighted_sum, log_weighted_marginals])
def test_bad_weight_matrix(fn):
    z, mu, logvar = field(N=10, D=3, Q=4, seed=11)
    with pytest.raises(ValueError, match=r"log_weight_matrix must have shape \(Q, N\) = \(4, 10\)"):
        fn(z, mu, logvar, torch.zeros(10, 4, dtype=torch.float64))
    W = weight_matrix(4, 10, seed=12)
    W[0, 0] = math.nan
    with pytest.raises(ValueError, match="log_weight_matrix must not hold NaN"):
        fn(z, mu, logvar, W)
    W[0, 0] = math.inf
    with pytest.raises(ValueError, match=r"log_weight_matrix must not hold NaN or \+inf"):
        fn(z, mu, logvar, W)
    with validate_args(False):  # value checks off: no host sync, the caller vouches for the values
        fn(z, mu, logvar, weight_matrix(4, 10, seed=12))


@pytest.mark.parametrize("fn", PUBLIC)
def test_mixed_dtypes_promote(fn):
    z, mu, logvar = field(N=10, D=3, Q=4, seed=13)
    out = fn(z.float(), mu, logvar.float())
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, fn(z.float().double(), mu, logvar.float().double()), rtol=0, atol=0)


def test_weights_in_another_dtype_are_cast():
    z, mu, logvar = field(N=10, D=3, Q=4, seed=14, dtype=torch.float32)
    W = weight_matrix(4, 10, seed=15)  # float64 matrix with float32 points
    for fn in (log_weighted_sum, log_weighted_marginals):
        assert fn(z, mu, logvar, W).dtype == torch.float32
    for fn in (log_mixture, log_mixture_marginals):
        assert fn(z, mu, logvar, torch.zeros(10, dtype=torch.float64)).dtype == torch.float32
