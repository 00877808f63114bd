"""The asv suite (benchmarks/): every module imports, every benchmark runs on its smallest case,
the baselines compute what the kernels compute, and the accuracy numbers obey known identities."""
from __future__ import annotations

import importlib
import inspect
import itertools
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import common  # noqa: E402

BENCH_MODULES = ["bench_kernels", "bench_estimators", "bench_accuracy", "bench_references", "bench_brackets"]
PREFIXES = ("time_", "peakmem_", "track_", "mem_", "timeraw_")


@pytest.fixture(autouse=True)
def _restore_torch_settings():
    """configure_torch() changes process-wide settings: put them back for the other tests."""
    threads, precision = torch.get_num_threads(), torch.get_float32_matmul_precision()
    omp = os.environ.get("OMP_NUM_THREADS")
    yield
    torch.set_num_threads(threads)
    torch.set_float32_matmul_precision(precision)
    if omp is None:
        os.environ.pop("OMP_NUM_THREADS", None)
    else:
        os.environ["OMP_NUM_THREADS"] = omp


def _benchmark_classes(module):
    for _, cls in inspect.getmembers(module, inspect.isclass):
        if cls.__module__ == module.__name__ and any(n.startswith(PREFIXES) for n in dir(cls)):
            yield cls


def _smallest(values):
    """All string values (kinds), the smallest of numeric ones."""
    return list(values) if isinstance(values[0], str) else [min(values)]


# ---------------------------------------------------------------------------------------------
# configuration and discovery


def test_asv_conf_is_valid_and_sends_output_to_dot_asv():
    from asv import util

    conf = util.load_json(str(ROOT / "asv.conf.json"), js_comments=True)
    assert conf["repo"] == "." and conf["branches"] == ["main"]
    assert conf["benchmark_dir"] == "benchmarks"
    for key in ("results_dir", "env_dir", "html_dir"):
        assert conf[key].startswith(".asv/"), key
    assert conf["matrix"]["req"]["torch"] == ["2.13.0"]  # the local CPU wheel
    assert not any("setup.py" in cmd for cmd in conf["build_command"])
    assert (ROOT / ".gitignore").read_text().count(".asv/") >= 1


@pytest.mark.parametrize("name", BENCH_MODULES)
def test_module_imports_and_declares_benchmarks(name):
    module = importlib.import_module(f"benchmarks.{name}")
    classes = list(_benchmark_classes(module))
    assert classes, f"{name} declares no benchmark class"
    for cls in classes:
        if getattr(cls, "params", None) is not None:
            params = cls.params if isinstance(cls.params, tuple) else (cls.params,)
            assert len(params) == len(cls.param_names), cls.__name__
        for attr in dir(cls):
            if attr.startswith("track_"):
                assert getattr(cls, "unit", None) == "nats", f"{cls.__name__}.{attr} needs unit = 'nats'"


@pytest.mark.parametrize("name", ["speed_kernels", "speed_estimators"])
def test_standalone_speed_scripts_do_nothing_on_import(name):
    # asv imports every module under benchmarks/; these scripts must only run under __main__
    if not (ROOT / "benchmarks" / f"{name}.py").exists():
        pytest.skip(f"benchmarks/{name}.py not there yet")
    module = importlib.import_module(f"benchmarks.{name}")
    assert not any(n.startswith(PREFIXES) for n in dir(module))


def test_estimator_params_cover_the_registry():
    from benchmarks import bench_accuracy, bench_estimators
    from estimators.log_qz import ESTIMATORS

    assert set(ESTIMATORS) | {bench_estimators.BASELINE} == set(bench_estimators.Estimator.params[0])
    assert set(ESTIMATORS) == set(bench_accuracy.Accuracy.params[1])
    assert bench_estimators.Estimator.params[1:] == ([256, 1024, 4096], [10, 64])


# ---------------------------------------------------------------------------------------------
# every benchmark once, smallest case


@pytest.mark.parametrize("name", [pytest.param("bench_kernels", marks=pytest.mark.slow),
                                  pytest.param("bench_estimators", marks=pytest.mark.slow), "bench_references"])
def test_every_benchmark_runs_on_its_smallest_case(name):
    module = importlib.import_module(f"benchmarks.{name}")
    ran = 0
    for cls in _benchmark_classes(module):
        params = getattr(cls, "params", None)
        params = () if params is None else (params if isinstance(params, tuple) else (params,))
        methods = [n for n in dir(cls) if n.startswith(PREFIXES)]
        for combo in itertools.product(*[_smallest(p) for p in params]):
            bench = cls()
            try:
                bench.setup(*combo)
            except NotImplementedError as exc:  # only the native kernel may be missing here
                assert "native" in str(exc), (cls.__name__, combo, exc)
                continue
            for method in methods:
                getattr(bench, method)(*combo)
                ran += 1
    assert ran > 0


def test_slow_and_impossible_cases_are_skipped_before_any_work(monkeypatch):
    from benchmarks import bench_estimators, bench_kernels, bench_references

    monkeypatch.setattr(common, "SLOW", False)
    for bench, args in [(bench_kernels.MixtureJoint(), ("native", 20000, 10)),
                        (bench_kernels.MixtureMarginals(), ("torch", 4096, 10)),
                        (bench_kernels.MixtureJoint(), ("naive", 4096, 10)),
                        (bench_estimators.Estimator(), ("mss", 4096, 64)),
                        (bench_estimators.Estimator(), ("exact", 4096, 64)),
                        (bench_estimators.Estimator(), ("iwae", 4096, 10)),
                        (bench_references.ExactReferences(), (20000,))]:
        with pytest.raises(NotImplementedError, match="ASV_SLOW=1"):
            bench.setup(*args)
    monkeypatch.setattr(common, "SLOW", True)  # GBs of memory: never, even when asked
    for bench, args in [(bench_kernels.MixtureJoint(), ("naive", 4096, 64)),
                        (bench_estimators.Estimator(), (bench_estimators.BASELINE, 4096, 64))]:
        with pytest.raises(NotImplementedError, match="GB"):
            bench.setup(*args)


def test_ci_smoke_regex_keeps_only_small_cases():
    script = (ROOT / "scripts" / "asv_ci.sh").read_text()
    smoke = re.search(r"^SMOKE='(.*)'$", script, re.M).group(1)
    keep = ["bench_estimators.Estimator.time_log_qz('mss', 256, 10)",
            "bench_kernels.MixtureJoint.time_joint('naive', 1024, 10)",
            "bench_references.ExactReferences.time_exact_references(1000)",
            "bench_accuracy.Accuracy.track_tc_rmse('gaussian', 'iwae')"]
    drop = ["bench_estimators.Estimator.time_log_qz('mss', 4096, 10)",
            "bench_estimators.Estimator.time_log_qz('mss', 256, 64)",
            "bench_kernels.MixtureJoint.time_joint('native', 20000, 10)",
            "bench_references.ExactReferences.time_exact_references(5000)"]
    assert all(re.search(smoke, n) for n in keep)
    assert not any(re.search(smoke, n) for n in drop)


# ---------------------------------------------------------------------------------------------
# factories and baselines against independent computations


def test_factories_are_seeded_and_consistent():
    mu32, lv32 = common.field(500, 4, "float32")
    mu64, lv64 = common.field(500, 4, "float64")
    assert mu32.dtype == torch.float32 and mu64.dtype == torch.float64
    torch.testing.assert_close(mu32, mu64.float(), rtol=0, atol=0)
    assert float(lv64.min()) >= -3 and float(lv64.max()) <= 1
    z, mu_b, lv_b, index, mu, lv = common.minibatch(64, 4, "float64", N=500)
    assert index.unique().numel() == 64 and int(index.max()) < 500
    torch.testing.assert_close(mu_b, mu[index])
    again = common.minibatch(64, 4, "float64", N=500)
    torch.testing.assert_close(z, again[0], rtol=0, atol=0)
    # the standardised noise is N(0, 1): mean within 4 standard errors of 0 (256 draws)
    eps = (z - mu_b) / torch.exp(0.5 * lv_b)
    assert abs(float(eps.mean())) < 4 / math.sqrt(eps.numel())


def _brute_log_normal(z, mu, logvar):
    """Float64 double loop over (i, n): the per-dimension log-densities, (Q, N, D)."""
    Q, N = z.shape[0], mu.shape[0]
    out = np.empty((Q, N, z.shape[1]))
    for i in range(Q):
        for n in range(N):
            var = np.exp(logvar[n])
            out[i, n] = -0.5 * (np.log(2 * np.pi * var) + (z[i] - mu[n]) ** 2 / var)
    return out


def _lse(a, axis):
    m = a.max(axis=axis, keepdims=True)
    return np.squeeze(m, axis) + np.log(np.exp(a - m).sum(axis))


def test_naive_baselines_match_a_brute_force_loop():
    z, mu, logvar = common.queries(30, 40, 3, "float64")
    L = _brute_log_normal(z.numpy(), mu.numpy(), logvar.numpy())
    np.testing.assert_allclose(common.naive_joint(z, mu, logvar).numpy(), _lse(L.sum(2), 1) - np.log(40), rtol=1e-12)
    np.testing.assert_allclose(common.naive_marginals(z, mu, logvar).numpy(), _lse(L, 1) - np.log(40), rtol=1e-12)
    zb, mu_b, lv_b, *_ = common.minibatch(25, 3, "float64", N=1000)
    Lb = _brute_log_normal(zb.numpy(), mu_b.numpy(), lv_b.numpy())
    joint, dims = common.naive_estimator("mws", zb, mu_b, lv_b, 1000)
    np.testing.assert_allclose(joint.numpy(), _lse(Lb.sum(2), 1) - np.log(1000 * 25), rtol=1e-12)
    np.testing.assert_allclose(dims.numpy(), _lse(Lb, 1) - np.log(1000 * 25), rtol=1e-12)
    assert common.naive_estimator("mws", zb, mu_b, lv_b, 1000, marginals=False)[1] is None


def _minibatch_names():
    from estimators.log_qz import ESTIMATORS

    return [name for name, info in ESTIMATORS.items() if info.weights is not None]


@pytest.mark.parametrize("name", _minibatch_names())
def test_the_generic_baseline_is_each_estimator(name):
    """THE naive baseline, from the registered weights, against a float64 loop with the weights written
    from their definitions (independent) and against the estimator itself (the streamed kernels)."""
    from estimators import log_aggregate_posterior
    from tests.helpers import brute_minibatch

    z, mu_b, lv_b, *_ = common.minibatch(9, 3, "float64", N=1000)
    joint, dims = common.naive_estimator(name, z, mu_b, lv_b, 1000)
    want, want_dims = brute_minibatch(name, z, mu_b, lv_b, 1000)
    torch.testing.assert_close(joint, want, rtol=0, atol=1e-10)
    torch.testing.assert_close(dims, want_dims, rtol=0, atol=1e-10)
    z, mu_b, lv_b, *_ = common.minibatch(64, 5, "float64", N=1000)
    ours = log_aggregate_posterior(z, mu_b, lv_b, 1000, name)
    base = common.naive_estimator(name, z, mu_b, lv_b, 1000)
    torch.testing.assert_close(base[0], ours[0], rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(base[1], ours[1], rtol=1e-10, atol=1e-10)


def test_the_baseline_refuses_estimators_without_weights():
    z, mu_b, lv_b, *_ = common.minibatch(8, 2, "float64", N=100)
    with pytest.raises(ValueError, match="no minibatch weights"):
        common.naive_estimator("exact", z, mu_b, lv_b, 100)


def test_contract_call_gives_every_estimator_the_same_arguments():
    from estimators import ESTIMATORS, Posteriors, decompose, log_aggregate_posterior

    z, mu_b, lv_b, index, mu, lv = common.minibatch(16, 3, "float64", N=200)
    for name in ESTIMATORS:
        a = common.contract_call(log_aggregate_posterior, name, z, Posteriors(mu, lv), index, k=8, seed=3)
        b = common.contract_call(log_aggregate_posterior, name, z, (mu, lv), index, k=8, seed=3)
        direct = log_aggregate_posterior(z, mu_b, lv_b, None, name, field=(mu, lv), index=index, k=8,
                                         generator=torch.Generator().manual_seed(3))
        for x, y in ((a, direct), (b, direct)):
            torch.testing.assert_close(x[0], y[0], rtol=0, atol=0)
            torch.testing.assert_close(x[1], y[1], rtol=0, atol=0)
        terms = common.contract_call(decompose, name, z, (mu, lv), index, k=8, seed=3)
        torch.testing.assert_close(terms["log_qz"], direct[0], rtol=0, atol=0)


def test_benchmarks_call_every_estimator_through_the_one_contract():
    """No per-family branches and no hand-kept weight tables in the estimator benchmarks."""
    for name in ("bench_accuracy", "bench_estimators", "speed_estimators"):
        source = (ROOT / "benchmarks" / f"{name}.py").read_text()
        assert "needs_field" not in source and "cached_log_weights" not in source, name
        assert "contract_call" in source, name
    from benchmarks import speed_estimators

    assert not hasattr(speed_estimators, "broadcast_weights") and not hasattr(speed_estimators, "broadcast")
    assert not hasattr(common, "naive_minibatch")


# ---------------------------------------------------------------------------------------------
# accuracy numbers


def test_error_summary_matches_numpy():
    from benchmarks.bench_accuracy import error_summary

    x = np.random.default_rng(0).normal(1.0, 0.5, size=37)
    s = error_summary(list(x), 0.8)
    assert s["bias"] == pytest.approx(x.mean() - 0.8, abs=1e-12)
    assert s["abs_bias"] == pytest.approx(abs(x.mean() - 0.8), abs=1e-12)
    assert s["bias_se"] == pytest.approx(x.std(ddof=1) / math.sqrt(37), rel=1e-12)
    assert s["rmse"] == pytest.approx(math.sqrt(np.mean((x - 0.8) ** 2)), rel=1e-12)


@pytest.fixture(scope="module")
def small_table():
    from benchmarks.bench_accuracy import accuracy_table

    return accuracy_table(scenarios=("gaussian",), estimators=["naive", "mws", "exact"], replicates=30)


@pytest.mark.slow  # the module fixture runs a small accuracy table (exact reference of N = 2000): seconds
def test_accuracy_obeys_the_known_constant_offsets(small_table):
    # mws - naive is a per-sample constant: mi + log N, tc + (D - 1) log N (N = 2000, D = 6; docs/maths.md)
    from benchmarks.bench_accuracy import N

    naive, mws = small_table["gaussian/naive"], small_table["gaussian/mws"]
    assert mws["mi"]["bias"] - naive["mi"]["bias"] == pytest.approx(math.log(N), abs=1e-4)
    assert mws["tc"]["bias"] - naive["tc"]["bias"] == pytest.approx(5 * math.log(N), abs=1e-3)


@pytest.mark.slow
def test_exact_estimator_is_unbiased_against_the_reference(small_table):
    # the exact estimator is unbiased for mi and tc up to float32 rounding; z = 4 (failure ~6e-5)
    refs = small_table["references"]["gaussian"]
    for q in ("mi", "tc"):
        s = small_table["gaussian/exact"][q]
        assert abs(s["bias"]) < 4 * math.hypot(s["bias_se"], refs[q]["se"]), (q, s)
        assert s["rmse"] >= s["abs_bias"]


@pytest.mark.slow
def test_accuracy_benchmark_methods_read_the_table(small_table):
    from benchmarks.bench_accuracy import Accuracy

    bench = Accuracy()
    bench.setup(small_table, "gaussian", "mws")
    assert bench.track_mi_abs_bias(small_table, "gaussian", "mws") == pytest.approx(
        small_table["gaussian/mws"]["mi"]["abs_bias"], rel=1e-4)
    assert bench.track_tc_rmse(small_table, "gaussian", "mws") > 0
    with pytest.raises(NotImplementedError):
        bench.setup(small_table, "heteroscedastic", "mws")
    assert json.loads(json.dumps(small_table)) == small_table  # asv pickles it; keep it plain data


@pytest.mark.slow
def test_asv_check_passes():
    asv = ROOT / ".venv" / "bin" / "asv"
    if not asv.exists():
        pytest.skip("asv is not installed in .venv")
    out = subprocess.run([str(asv), "check", "--python=same"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "No problems found" in out.stdout
