"""The audit names what a function computes: the project's replicas, independent implementations of
every estimator and bug (tests/audit/implementations.py, written from the formulas), offsets,
unknown variants, and functions that cannot be audited."""
import functools
import json

import numpy as np
import pytest
import torch

import estimators
from estimators.auditing import AuditError, audit
from estimators.auditing.api import _table
from estimators.auditing.candidates import candidates
from estimators.auditing.fixtures import BATCH_SIZES, DIMENSIONS, DSPRITES_N, KINDS, make_fixtures
from estimators.testing import assert_matches
from tests.audit import implementations as impl


@functools.lru_cache(maxsize=None)
def classify(fn):
    """The classification alone (no accuracy part); each function is audited once per session."""
    return audit(fn, check_accuracy=False)


# --- the fixture set ---------------------------------------------------------------------------

def test_the_fixtures_cover_what_the_issue_lists():
    fixtures = make_fixtures()
    assert {f.kind for f in fixtures} == set(KINDS)
    assert {f.B for f in fixtures} == set(BATCH_SIZES) == {2, 3, 16, 64, 256}
    assert {f.D for f in fixtures} == set(DIMENSIONS) == {1, 5, 10}
    assert {f.dtype for f in fixtures} == {torch.float32, torch.float64}
    assert min(f.N - f.B for f in fixtures) == 0 and max(f.N for f in fixtures) == DSPRITES_N
    prior = [f for f in fixtures if f.kind == "prior"]
    assert all(bool((f.mu == 0).all() and (f.logvar == 0).all()) for f in prior)
    assert {f.B for f in prior} >= {2, 64}
    # the two dtypes carry the same numbers; fixed seed: the same fixtures every time
    by_key = {}
    for f in fixtures:
        by_key.setdefault((f.group, f.N), []).append(f)
    for pair in by_key.values():
        assert torch.equal(pair[0].z.double(), pair[1].z.double())
    again = make_fixtures()
    assert all(torch.equal(a.z, b.z) for a, b in zip(fixtures, again))


def test_every_pair_of_candidates_is_told_apart():
    """On per-sample outputs every two candidates defining all four quantities differ by more than the
    tolerance on some fixture, so an exact match names one formula."""
    fixtures, cands, values, tols = _table()
    full = [c for c in cands if len(c.quantities) == 4]
    for i, a in enumerate(full):
        for b in full[i + 1:]:
            worst = 0.0
            for f in range(len(fixtures)):
                for key in ("log_qz", "log_prod_qz"):
                    d = (values[a.name][f][key] - values[b.name][f][key]).abs().numpy()
                    worst = max(worst, float(np.max(d / tols[a.name][f])))
            assert worst > 10.0, f"{a.name} and {b.name} agree on every fixture (max {worst:.3g} x tolerance)"


# --- the project's own replicas ----------------------------------------------------------------

def _registered_as_user_function(name, dtype_of_constants=None):
    def fn(z, mu, logvar, N):
        out = estimators.decompose(z, mu, logvar, N, name)
        return out["log_qz"], out["log_qz_dims"].sum(1)
    return fn


@pytest.mark.parametrize("name", [n for n, i in estimators.ESTIMATORS.items()
                                  if i.family == "minibatch" and len(i.quantities) == 4])
def test_each_registered_replica_is_named(name):
    report = classify(_registered_as_user_function(name))
    assert report.computes == name and report.differentiable is None
    assert report.verdict == ("known_bug" if name in ("mss_shipped", "mss_per_dim", "tc_no_constant", "hfvae")
                              else "correct")
    assert report.exit_code == {"correct": 0, "known_bug": 1}[report.verdict]


# --- independent implementations ---------------------------------------------------------------

CASES = [
    # function, verdict, what it computes, the fix
    (impl.mss_from_the_paper, "correct", "mss", None),
    (impl.mss_scalars, "correct", "mss", None),
    (impl.object_with_attributes, "correct", "mss", None),
    (impl.mws_from_the_paper, "correct", "mws", None),
    (impl.stratified, "correct", "stratified", None),
    (impl.leave_one_out, "correct", "loo", None),
    (impl.infonce_mi, "correct", "naive", None),
    (impl.he_calc_mi, "correct", "calc_mi", None),
    (impl.shipped_stride, "known_bug", "mss_shipped", "mss"),
    (impl.yanndubs_is_mss, "known_bug", "mss_per_dim", "mss"),
    (impl.yanndubs_no_constant, "known_bug", "tc_no_constant", "mss"),
    (impl.hfvae_batch_marginal, "known_bug", "hfvae", "stratified"),
    (impl.mws_weights_per_dimension, "known_bug", "mws:weights_per_dim", "mws"),
    (impl.mss_transposed, "known_bug", "mss:transposed_weights", "mss"),
    (impl.naive_wrong_axis, "known_bug", "naive:wrong_axis", "naive"),
]


@pytest.mark.parametrize("fn,verdict,computes,fix", CASES, ids=[c[0].__name__ for c in CASES])
def test_independent_implementations_are_named(fn, verdict, computes, fix):
    report = classify(fn)
    assert (report.verdict, report.computes, report.fix) == (verdict, computes, fix), str(report)
    assert report.offsets == {}
    if verdict == "known_bug":
        assert report.bug and report.residuals[0]["candidate"] == computes
        assert report.residuals[0]["max_over_tolerance"] <= 1.0


def test_tc_alone_cannot_tell_no_constant_from_mws_weights_per_dimension():
    """In tc both drop (D - 1) log(N B): the report says which candidates give the same values."""
    report = classify(impl.yanndubs_no_constant)
    assert "mws:weights_per_dim" in report.also_matches
    assert "indistinguishable" in str(report)


def test_a_missing_dataset_size_is_found_with_the_n_it_assumes():
    report = classify(impl.mws_global_dataset_size)
    assert report.verdict == "known_bug" and report.computes == "naive + offset" and report.fix == "mss"
    assert "missing dataset size" in report.bug and "60000" in report.bug
    assert any("do not change with dataset_size" in n for n in report.notes)


@pytest.mark.parametrize("fn,offsets,what", [
    (impl.mws_dropped_log_2pi, {"log_qz": "0.918939 D", "log_prod_qz": "0.918939 D"}, "log(2 pi)/2"),
    (impl.mws_extra_log_b, {"log_qz": "- log B", "log_prod_qz": "-D log B"}, "a factor N or B"),
])
def test_dropped_normalisers_are_fitted_and_named(fn, offsets, what):
    report = classify(fn)
    assert report.verdict == "known_bug" and report.computes == "mws + offset" and report.fix == "mws"
    assert report.offsets == offsets and what in report.bug


def test_an_unknown_constant_is_unknown_with_its_residuals():
    report = classify(impl.mss_plus_a_random_constant)
    assert report.verdict == "unknown" and report.exit_code == 3 and report.computes is None
    assert report.offsets == {"tc": "0.3183"} and "mss" in report.closest
    assert report.residuals and report.residuals[0]["max_abs_residual"] == pytest.approx(0.3183, abs=1e-4)
    assert "UNKNOWN" in str(report) and "residuals" in str(report)


def test_a_random_perturbation_is_unknown():
    def jittered(z, mu, logvar, N):
        lq, lp = impl.mss_from_the_paper(z, mu, logvar, N)
        g = torch.Generator().manual_seed(int(z.shape[0] * 7 + z.shape[1]))
        return lq + 0.01 * torch.randn(lq.shape, generator=g, dtype=lq.dtype), lp
    report = classify(jittered)
    assert report.verdict == "unknown" and report.offsets == {}


def test_float32_cancellation_is_named():
    report = classify(impl.mss_matmul_form)
    assert report.verdict == "known_bug" and report.computes == "mss" and "float32" in report.bug


def test_a_numpy_function_is_classified_and_flagged_not_differentiable():
    report = classify(impl.tf_style_numpy_tc)
    assert report.verdict == "correct" and report.computes == "mws"
    assert report.differentiable.startswith("not differentiable")
    assert "not differentiable" in str(report)


def test_a_function_failing_on_some_fixtures_is_audited_on_the_rest():
    report = classify(impl.needs_three)
    assert report.verdict == "correct" and report.computes == "mss"
    assert report.fixtures < len(make_fixtures()) and "ValueError: batch too small" in report.notes[0]


@pytest.mark.parametrize("fn,message", [
    (impl.raises, r"raised RuntimeError: my loss is broken \(at .*implementations.py:\d+ in raises\)"),
    (impl.returns_nan, "not finite"),
    (impl.wrong_shape, r"log_qz must have shape \(B,\) = \(2,\), got \(2, 1\)"),
    (impl.one_number, r"return a pair \(log_qz, log_prod_qz\).*\{'tc': tc\}"),
])
def test_functions_that_cannot_be_audited_get_a_clear_message(fn, message):
    with pytest.raises(AuditError, match=message):
        classify(fn)


def test_bad_arguments():
    with pytest.raises(TypeError, match="fn must be callable"):
        audit(3)
    with pytest.raises(ValueError, match="dataset_size must be at least batch_size"):
        audit(impl.mss_from_the_paper, batch_size=64, dataset_size=10)
    with pytest.raises(ValueError, match="batch_size must be"):
        audit(impl.mss_from_the_paper, batch_size=1)


# --- the report and the accuracy part ----------------------------------------------------------

def test_accuracy_against_exact_references_at_the_users_sizes(tmp_path, monkeypatch):
    """The user's bias, sd and RMSE at their B and N; an unbiased-inside estimator compared with itself
    has the same numbers as the comparison column, and the buggy one differs from it."""
    monkeypatch.setenv("VAE_ESTIMATORS_CACHE", str(tmp_path))
    report = audit(impl.shipped_stride, batch_size=16, dataset_size=200, D=3, scenarios=("gaussian",),
                   replicates=8)
    (row,) = report.accuracy
    assert row["quantity"] == "tc" and row["N"] == 200 and row["batch_size"] == 16 and row["compare_with"] == "mss"
    refs = estimators.exact_references(*_field("gaussian", 200, 3), samples=row_samples(200))
    assert row["reference"] == pytest.approx(refs["tc"]["value"], abs=1e-12)
    assert row["bias"] == pytest.approx(row["mean"] - row["reference"], abs=1e-12)
    assert row["rmse"] ** 2 == pytest.approx(row["bias"] ** 2 + row["sd"] ** 2 * 7 / 8, rel=1e-9)
    assert row["bias"] != pytest.approx(row["compare_bias"], abs=1e-6)
    data = json.loads(json.dumps(report.to_dict()))
    assert data["verdict"] == "known_bug" and data["accuracy"][0]["quantity"] == "tc"
    assert "accuracy at B = 16, N = 200" in str(report)
    assert list(tmp_path.glob("audit-references/*.json"))  # cached for the next audit


def _field(name, N, D):
    f = estimators.make_scenario(name, N=N, D=D, separation=0.5)
    return f.mu, f.logvar


def row_samples(N):
    from estimators.auditing.accuracy import REFERENCE_SAMPLES
    from estimators.bench.plan import reference_samples
    return reference_samples(N, REFERENCE_SAMPLES)


def test_accuracy_on_the_users_posteriors(tmp_path, monkeypatch):
    monkeypatch.setenv("VAE_ESTIMATORS_CACHE", str(tmp_path))
    field = estimators.make_scenario("clustered", N=120, D=2)
    path = tmp_path / "mine.npz"
    estimators.save_posteriors(field, path)
    report = audit(impl.mss_from_the_paper, batch_size=8, dataset_size=120, posteriors=str(path), replicates=4)
    assert {r["quantity"] for r in report.accuracy} == {"mi", "kl_agg", "tc", "dimwise_kl"}
    assert {r["field"] for r in report.accuracy} == {"mine"}
    for r in report.accuracy:  # mss compared with mss: the same batches, the same numbers
        assert r["bias"] == pytest.approx(r["compare_bias"], abs=1e-5)


def test_a_large_dataset_size_for_the_accuracy_part_is_a_clear_error():
    with pytest.raises(ValueError, match="dataset_size must be at most 32768"):
        audit(impl.mss_from_the_paper, dataset_size=737280)


# --- estimators.testing ------------------------------------------------------------------------

def test_assert_matches_passes_and_fails_with_the_explanation():
    assert_matches(impl.mss_from_the_paper, "mss")
    assert_matches(impl.tf_style_numpy_tc, "mws", differentiable=False)
    with pytest.raises(AssertionError, match="(?s)does not compute 'mss'.*mss_shipped.*wrong stride"):
        assert_matches(impl.shipped_stride, "mss")
    with pytest.raises(AssertionError, match="not differentiable"):
        assert_matches(impl.tf_style_numpy_tc, "mws")
    with pytest.raises(AssertionError, match="does not compute 'mss'"):
        assert_matches(impl.mss_matmul_form, "mss")
    with pytest.raises(ValueError, match="unknown estimator"):
        assert_matches(impl.mss_from_the_paper, "nope")


def test_the_full_audit_is_fast(tmp_path, monkeypatch):
    """Under 30 s on 2 cores with the accuracy part (references cached after the first field build)."""
    import time
    monkeypatch.setenv("VAE_ESTIMATORS_CACHE", str(tmp_path))
    _table()
    start = time.perf_counter()
    audit(impl.mss_scalars, replicates=8, scenarios=("gaussian",), dataset_size=512)
    assert time.perf_counter() - start < 30.0
