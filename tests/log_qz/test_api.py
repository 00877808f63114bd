"""log_aggregate_posterior, the one contract: the same arguments for every estimator, dtypes, gradients, bad input.

Every estimator is called the same way (``tests.helpers.call``): the batch's own posteriors
``field[index]``, ``field=`` and ``index=``. Value checks (finiteness, index range) follow the
``validate_args`` switch; shape and type checks do not.
"""
import math

import pytest
import torch

import estimators
from estimators import ESTIMATORS, Posteriors, log_aggregate_posterior, set_validate_args, validate_args
from estimators.kernels import native
from tests.helpers import F64, brute_exact, call, draw, make_field

ALL = list(ESTIMATORS)


def test_public_exports():
    assert estimators.log_aggregate_posterior is log_aggregate_posterior
    assert set(ESTIMATORS) >= {"naive", "mws", "mss", "stratified", "loo", "iwae", "exact",
                               "mss_shipped", "mss_per_dim", "tc_no_constant"}
    info = ESTIMATORS["mss"]
    assert info.family == "minibatch" and info.unbiased_inside and not info.needs_field and not info.needs_k
    assert info.weights is not None
    assert ESTIMATORS["iwae"].needs_k and ESTIMATORS["iwae"].needs_field and ESTIMATORS["iwae"].family == "importance"
    assert ESTIMATORS["exact"].family == "exact" and ESTIMATORS["exact"].unbiased_inside
    assert {n for n, i in ESTIMATORS.items() if i.published_variant} == {"mss_shipped", "mss_per_dim", "tc_no_constant",
                                                                          "hfvae", "calc_mi"}
    assert {n for n, i in ESTIMATORS.items() if i.unbiased_inside} == {"mss", "stratified", "iwae", "exact"}
    # the minibatch estimators, and only they, are data: a log-weight function
    assert {n for n, i in ESTIMATORS.items() if i.weights is not None} == {
        n for n, i in ESTIMATORS.items() if i.family == "minibatch"}


@pytest.mark.parametrize("name", ALL)
def test_every_estimator_takes_the_same_arguments(name, small_batch):
    b = small_batch
    lq, lqd = call(log_aggregate_posterior, name, b.z, *b.field, b.index)
    assert lq.shape == (b.B,) and lqd.shape == (b.B, b.D) and lq.dtype == F64 and lqd.dtype == F64
    assert bool(torch.isfinite(lq).all()) and bool(torch.isfinite(lqd).all())
    # marginals=False: the same joint (same draws for iwae), no marginals
    joint, none = call(log_aggregate_posterior, name, b.z, *b.field, b.index, marginals=False)
    assert none is None
    torch.testing.assert_close(joint, lq, rtol=0, atol=0)
    # the field as a Posteriors or as a pair: the same numbers
    g = torch.Generator().manual_seed(0)
    via = log_aggregate_posterior(b.z, b.mu, b.logvar, None, name, field=Posteriors(*b.field), index=b.index, k=4,
                                  generator=g)
    torch.testing.assert_close(via[0], lq, rtol=0, atol=0)


def test_default_estimator_is_mss(small_batch):
    b = small_batch
    default = log_aggregate_posterior(b.z, b.mu, b.logvar, b.N)
    mss = log_aggregate_posterior(b.z, b.mu, b.logvar, b.N, "mss")
    torch.testing.assert_close(default[0], mss[0], rtol=0, atol=0)
    torch.testing.assert_close(default[1], mss[1], rtol=0, atol=0)


def test_minibatch_estimators_ignore_the_field(small_batch):
    """With or without field= and index=, a minibatch estimator reads only the batch (and N)."""
    b = small_batch
    with_field = call(log_aggregate_posterior, "mss", b.z, *b.field, b.index)
    without = log_aggregate_posterior(b.z, b.mu, b.logvar, b.N, "mss")
    torch.testing.assert_close(with_field[0], without[0], rtol=0, atol=0)


def test_mixed_dtypes_promote(small_batch):
    b = small_batch
    lq, lqd = log_aggregate_posterior(b.z.float(), b.mu, b.logvar, 40, "mss")
    assert lq.dtype == F64 and lqd.dtype == F64 and lq.shape == (b.B,) and lqd.shape == (b.B, b.D)
    # a float64 field promotes float32 batch inputs
    lq, _ = log_aggregate_posterior(b.z.float(), b.mu.float(), b.logvar.float(), None, "exact", field=b.field,
                                    index=b.index)
    assert lq.dtype == F64


@pytest.mark.parametrize("dtype,atol", [(F64, 1e-12), (torch.float32, 2e-5)])
@pytest.mark.parametrize("name,extra", [("mss", {}), ("stratified", {}), ("loo", {}), ("exact", {}),
                                        ("iwae", {"proposal": "uniform"}), ("iwae", {"proposal": "own"})])
def test_prior_posteriors_give_zero(name, extra, dtype, atol, prior_field):
    """All posteriors equal to the prior: q(z) = q(z|n) = p(z), so mi = tc = kl_agg = 0 exactly."""
    mu, lv = (t.to(dtype) for t in prior_field)
    B, D = 8, mu.shape[1]
    z = torch.randn(B, D, generator=torch.Generator().manual_seed(10), dtype=dtype) * 2
    out = call(estimators.decompose, name, z, mu, lv, torch.arange(B) * 3, k=5, **extra)
    for q in ("mi", "tc", "kl_agg"):
        torch.testing.assert_close(out[f"{q}_terms"], torch.zeros(B, dtype=dtype), rtol=0, atol=atol)


@pytest.mark.parametrize("name", ALL)
def test_gradcheck(name, make_batch):
    """Gradients reach the field through both paths of the contract: the batch rows field[index] and field=."""
    b = make_batch(6, 4, 2, seed=30)
    inputs = tuple(t.clone().requires_grad_() for t in (b.z, *b.field))
    assert torch.autograd.gradcheck(lambda z, m, v: call(log_aggregate_posterior, name, z, m, v, b.index), inputs)


@pytest.mark.parametrize("fixture", ["sharp_field", "broad_field"])
@pytest.mark.parametrize("name", ALL)
def test_float32_agrees_with_float64(name, fixture, request):
    """Sharp and broad posteriors mixed (logvar in [-10, 2]) and broad overlapping ones. Agreement to
    1e-4 in log q, i.e. 1e-4 relative in q."""
    mu32, lv32 = (t.float() for t in request.getfixturevalue(fixture))
    index = torch.randperm(mu32.shape[0], generator=torch.Generator().manual_seed(41))[:96]
    z32 = draw(mu32[index], lv32[index], seed=42)
    out32 = call(log_aggregate_posterior, name, z32, mu32, lv32, index)
    out64 = call(log_aggregate_posterior, name, z32.double(), mu32.double(), lv32.double(), index)
    assert out32[0].dtype == torch.float32 and out64[0].dtype == F64
    for a, b in zip(out32, out64):
        torch.testing.assert_close(a.double(), b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ["exact", "iwae"])
def test_field_estimators_accept_more_samples_than_components(name):
    """exact and iwae evaluate log q at any points: B > N is legitimate there (distinct indices are a
    minibatch requirement). E.g. 9 draws from a field of 2 posteriors."""
    mu, lv = make_field(2, 3, seed=3)
    index = torch.tensor([0, 1, 1, 0, 1, 0, 0, 1, 1])
    z = draw(mu[index], lv[index], seed=4)
    lq, lqd = call(log_aggregate_posterior, name, z, mu, lv, index, k=2, proposal="own")
    assert lq.shape == (9,) and lqd.shape == (9, 3)
    if name == "exact":
        want, want_dims = brute_exact(z, mu, lv)
        torch.testing.assert_close(lq, want, rtol=0, atol=1e-10)
        torch.testing.assert_close(lqd, want_dims, rtol=0, atol=1e-10)


# ------------------------------------------------------------------------------------------------
# the validation switch


def _nan_batch(make_batch):
    b = make_batch(9, 5, 2, seed=60)
    z = b.z.clone()
    z[1, 1] = float("nan")
    return b, z


def test_validation_off_skips_value_checks_only(make_batch):
    b, nan_z = _nan_batch(make_batch)
    with pytest.raises(ValueError, match=r"z holds 1 non-finite \(NaN\)"):
        log_aggregate_posterior(nan_z, b.mu, b.logvar, b.N, "mss")
    with validate_args(False):
        lq, lqd = log_aggregate_posterior(nan_z, b.mu, b.logvar, b.N, "mss")  # no host sync, no check
        assert lq.shape == (b.B,) and bool(torch.isfinite(lq[[0, 2, 3, 4]]).all())
        call(log_aggregate_posterior, "exact", nan_z, *b.field, b.index)
        with pytest.raises(ValueError, match="batch's own posteriors"):  # shapes are still checked
            log_aggregate_posterior(b.z, *b.field, b.N, "mss")
        with pytest.raises(ValueError, match=r"index must have shape \(B,\)"):
            log_aggregate_posterior(b.z, b.mu, b.logvar, None, "exact", field=b.field, index=b.index[:4])
        with pytest.raises(TypeError, match="z must have a floating dtype"):
            log_aggregate_posterior(b.z.long(), b.mu, b.logvar, b.N, "mss")
    with pytest.raises(ValueError, match="non-finite"):  # restored after the block
        log_aggregate_posterior(nan_z, b.mu, b.logvar, b.N, "mss")


@pytest.mark.parametrize("name", ["mss", "naive", "exact"])
def test_nan_propagates_when_validation_is_off(name, make_batch):
    """With the checks off, a NaN input must come out as NaN (as torch.logsumexp does), never as a
    finite number that a training loop would take for a valid log density."""
    b, nan_z = _nan_batch(make_batch)
    with validate_args(False):
        lq, lqd = call(log_aggregate_posterior, name, nan_z, *b.field, b.index)
    assert bool(torch.isnan(lq[1])), lq
    assert bool(torch.isnan(lqd[1, 1])), lqd


def test_set_validate_args_is_global(make_batch):
    b, nan_z = _nan_batch(make_batch)
    try:
        set_validate_args(False)
        log_aggregate_posterior(nan_z, b.mu, b.logvar, b.N, "mss")
        estimators.decompose(nan_z, b.mu, b.logvar, b.N, "mss")
    finally:
        set_validate_args(True)
    with pytest.raises(ValueError, match="non-finite"):
        estimators.decompose(nan_z, b.mu, b.logvar, b.N, "mss")


# ------------------------------------------------------------------------------------------------
# bad input


def bad_cases():
    mu, lv = make_field(5, 2, seed=50)
    z = draw(mu, lv, seed=51)
    nan_z = z.clone()
    nan_z[1, 1] = float("nan")
    inf_lv = lv.clone()
    inf_lv[0, 0] = float("inf")
    fmu, flv = make_field(9, 2, seed=52)
    nan_fmu = fmu.clone()
    nan_fmu[3, 0] = float("nan")
    idx = torch.tensor([0, 1, 2, 3, 8])
    own = dict(z=z, mu=fmu[idx], logvar=flv[idx])
    field = dict(own, field=(fmu, flv))
    return [
        (dict(z=z, mu=mu, logvar=lv, dataset_size=10, estimator="msss"), ValueError, "unknown estimator 'msss'; known estimators: .*naive, mws, mss"),
        (dict(z=z[:1], mu=mu[:1], logvar=lv[:1], dataset_size=10, estimator="mss"), ValueError, "at least 2 samples"),
        (dict(z=z[:1], mu=mu[:1], logvar=lv[:1], dataset_size=10, estimator="loo"), ValueError, "at least 2 samples"),
        (dict(z=z[:1], mu=mu[:1], logvar=lv[:1], dataset_size=10, estimator="mss_per_dim"), ValueError, "at least 2 samples"),
        (dict(z=z, mu=mu, logvar=lv, dataset_size=4, estimator="stratified"), ValueError, "dataset_size must be at least"),
        (dict(z=z, mu=mu, logvar=lv, dataset_size=4, estimator="naive"), ValueError, "dataset_size must be at least"),
        (dict(z=z, mu=mu, logvar=lv, estimator="mws"), ValueError, "needs dataset_size"),
        (dict(z=z, mu=mu, logvar=lv, dataset_size=10.0, estimator="mss"), TypeError, "dataset_size must be an int"),
        (dict(z=z, mu=mu, logvar=lv, dataset_size=True, estimator="mss"), TypeError, "dataset_size must be an int, got bool"),
        (dict(field, estimator="iwae", index=idx), ValueError, "needs k"),
        (dict(field, estimator="iwae", k=0, index=idx), ValueError, "k must be >= 1"),
        (dict(field, estimator="iwae", k=2.5), TypeError, "k must be an int"),
        (dict(field, estimator="iwae", k=3, proposal="prior"), ValueError, "proposal must be one of"),
        (dict(field, estimator="iwae", k=3, proposal="own"), ValueError, "proposal 'own' needs index"),
        (dict(own, estimator="naive", index=idx), ValueError, "index needs field="),
        (dict(own, estimator="exact"), ValueError, "'exact' reads the whole data set: pass field="),
        (dict(own, estimator="iwae", k=3), ValueError, "'iwae' reads the whole data set: pass field="),
        (dict(field, estimator="exact", index=idx[:4]), ValueError, r"index must have shape \(B,\)"),
        (dict(field, estimator="exact", index=idx + 1), ValueError, r"index values must lie in \[0, N\)"),
        (dict(field, estimator="exact", index=idx.double()), TypeError, "index must hold integers"),
        (dict(field, dataset_size=100, estimator="exact", index=idx), ValueError, "dataset_size must equal"),
        (dict(own, field=(fmu[:, :1], flv[:, :1]), estimator="exact", index=idx), ValueError, r"field must be \(N, D\)"),
        (dict(own, field=fmu, estimator="exact", index=idx), TypeError, "field must be a Posteriors or a pair"),
        (dict(own, field=(nan_fmu, flv), estimator="exact", index=idx), ValueError, r"field mu holds 1 non-finite \(NaN\)"),
        (dict(own, field=(fmu, flv[:4]), estimator="exact", index=idx), ValueError, "field mu and logvar must have the same shape"),
        (dict(z=z, mu=fmu, logvar=flv, dataset_size=100, estimator="mss"), ValueError, "batch's own posteriors"),
        (dict(z=z, mu=mu, logvar=lv[:, :1], dataset_size=10, estimator="mss"), ValueError, "batch's own posteriors"),
        (dict(z=z[:, :1], mu=mu, logvar=lv, dataset_size=10, estimator="mss"), ValueError, "batch's own posteriors"),
        (dict(z=z[0], mu=mu, logvar=lv, dataset_size=10, estimator="mss"), ValueError, "z must be 2-dimensional"),
        (dict(z=z[:0], mu=mu[:0], logvar=lv[:0], dataset_size=10, estimator="naive"), ValueError, "at least one sample"),
        (dict(z=nan_z, mu=mu, logvar=lv, dataset_size=10, estimator="mss"), ValueError, r"z holds 1 non-finite \(NaN\)"),
        (dict(z=z, mu=mu, logvar=inf_lv, dataset_size=10, estimator="mss"), ValueError, r"logvar holds 1 non-finite \(infinite\)"),
        (dict(z=z.long(), mu=mu, logvar=lv, dataset_size=10, estimator="mss"), TypeError, "z must have a floating dtype"),
        (dict(z="z", mu=mu, logvar=lv, dataset_size=10, estimator="mss"), TypeError, "z must be a tensor or array of floats"),
    ]


@pytest.mark.parametrize("case", range(len(bad_cases())))
def test_bad_input(case):
    kwargs, exc, match = bad_cases()[case]
    with pytest.raises(exc, match=match):
        log_aggregate_posterior(**kwargs)


def test_estimator_log_n_offsets_are_those_of_their_weights(small_batch):
    """The registered weights are what the estimator uses: naive and mws are constants, so the estimates
    differ by exactly log N (a check of the record, through the public call)."""
    b = small_batch
    naive = call(log_aggregate_posterior, "naive", b.z, *b.field, b.index)
    mws = call(log_aggregate_posterior, "mws", b.z, *b.field, b.index)
    torch.testing.assert_close(naive[0] - mws[0], torch.full((b.B,), math.log(b.N), dtype=F64), rtol=0, atol=1e-12)
    w = ESTIMATORS["mws"].weights(b.B, b.N, b.D, F64, "cpu")
    assert w.joint == pytest.approx(-math.log(b.N * b.B)) and w.marginal == pytest.approx(-math.log(b.N * b.B))


@pytest.mark.parametrize("name", ["mss", "naive", "stratified"])
def test_float32_beyond_its_range_is_computed_in_float64(name):
    # logvar = -100 overflows exp(-logvar) in float32: decompose returned NaN and -inf without a word
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(16, 3, generator=g)
    logvar = torch.full((16, 3), -100.0)
    z = mu.clone()
    out32 = estimators.decompose(z, mu, logvar, 1000, name)
    out64 = estimators.decompose(z.double(), mu.double(), logvar.double(), 1000, name)
    for q in ("mi", "tc", "kl_agg", "dimwise_kl"):
        assert out32[q].dtype == torch.float32 and torch.isfinite(out32[q]), (q, out32[q])
        torch.testing.assert_close(out32[q].double(), out64[q], rtol=1e-6, atol=1e-4)


def test_logvar_beyond_float64_is_a_clear_error():
    mu = torch.zeros(4, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"logvar must lie in \[-700, 700\]"):
        log_aggregate_posterior(mu, mu, torch.full((4, 2), -800.0, dtype=torch.float64), 10, "mss")


def test_registry_records_what_each_estimator_defines():
    """calc_mi defines mi only, with the analytic entropy; naive's and loo's mi are the InfoNCE and L1Out bounds."""
    from estimators.log_qz.registry import QUANTITIES, register_estimator
    assert ESTIMATORS["calc_mi"].quantities == ("mi",) and ESTIMATORS["calc_mi"].analytic_entropy
    assert (ESTIMATORS["naive"].mi_bound, ESTIMATORS["loo"].mi_bound, ESTIMATORS["mss"].mi_bound) == ("lower", "upper", "")
    assert all(set(i.quantities) <= set(QUANTITIES) for i in ESTIMATORS.values())
    assert "InfoNCE" in ESTIMATORS["naive"].citation and "L1Out" in ESTIMATORS["loo"].citation
    with pytest.raises(ValueError, match="quantities must be a non-empty subset"):
        register_estimator("x", family="minibatch", citation="", unbiased_inside=False, quantities=("entropy",))
    with pytest.raises(ValueError, match="mi_bound must be"):
        register_estimator("x", family="minibatch", citation="", unbiased_inside=False, mi_bound="both")
    assert "x" not in ESTIMATORS
