"""Estimators of log q(z_i): brute force, exact offsets, unbiasedness, gradients, precision, bad input."""
import math

import pytest
import torch

import estimators
from estimators import ESTIMATORS, decompose, log_aggregate_posterior, log_qz as log_qz_module

F64 = torch.float64
MINIBATCH = [name for name, info in ESTIMATORS.items() if info.family == "minibatch"]
FIELD = [name for name, info in ESTIMATORS.items() if info.needs_field]


def make_field(N, D, seed, dtype=F64, spread=1.5, logvar=(-1.5, 0.5)):
    g = torch.Generator().manual_seed(seed)
    mu = spread * torch.randn(N, D, generator=g, dtype=F64)
    lv = logvar[0] + (logvar[1] - logvar[0]) * torch.rand(N, D, generator=g, dtype=F64)
    return mu.to(dtype), lv.to(dtype)


def sample(mu, lv, seed):
    g = torch.Generator().manual_seed(seed)
    return mu + torch.randn(mu.shape, generator=g, dtype=mu.dtype) * torch.exp(0.5 * lv)


# ------------------------------------------------------------------------------------------------
# brute force: Python loops in float64, weights from the SPEC's definitions


def log_normal_1d(x, m, lv):
    return -0.5 * (math.log(2 * math.pi) + lv + (x - m) ** 2 / math.exp(lv))


def log_weighted_sum(logs, ws):
    """log sum_j w_j exp(logs_j), max subtracted; w_j = 0 terms dropped."""
    pairs = [(l + math.log(w)) for l, w in zip(logs, ws) if w > 0]
    m = max(pairs)
    return m + math.log(math.fsum(math.exp(p - m) for p in pairs))


def hand_weights(name, B, N, D):
    """(joint weights, marginal weights) as B x B lists, from the SPEC text."""
    M = B - 1
    strat = (N - M) / (N * M) if M else 0.0
    const = {"naive": 1 / B, "mws": 1 / (N * B), "tc_no_constant": 1.0}
    W = [[0.0] * B for _ in range(B)]
    for i in range(B):
        for j in range(B):
            if name in const:
                W[i][j] = const[name]
            elif name == "mss":
                W[i][j] = 1 / N if j == i else strat if j == (i + 1) % B else 1 / M
            elif name == "stratified":
                W[i][j] = 1 / N if j == i else (N - 1) / (N * M)
            elif name == "loo":
                W[i][j] = 0.0 if j == i else 1 / M
            elif name in ("mss_shipped", "mss_per_dim"):
                W[i][j] = 1 / N if j == 0 else strat if j == 1 else 1 / M
    if name in ("mss_shipped", "mss_per_dim"):
        W[M - 1][0] = strat
    joint = [[w ** D for w in row] for row in W] if name == "mss_per_dim" else W
    return joint, W


def brute_minibatch(name, z, mu, lv, N):
    z, mu, lv = z.tolist(), mu.tolist(), lv.tolist()
    B, D = len(z), len(z[0])
    Wj, Wd = hand_weights(name, B, N, D)
    Ld = [[[log_normal_1d(z[i][d], mu[j][d], lv[j][d]) for d in range(D)] for j in range(B)] for i in range(B)]
    joint = [log_weighted_sum([sum(Ld[i][j]) for j in range(B)], Wj[i]) for i in range(B)]
    dims = [[log_weighted_sum([Ld[i][j][d] for j in range(B)], Wd[i]) for d in range(D)] for i in range(B)]
    return torch.tensor(joint, dtype=F64), torch.tensor(dims, dtype=F64)


def brute_components(z, mu, lv, comps, log_ws):
    """For each i: log sum_m w_im q(z_i | comps[i][m]) and its marginals."""
    z, mu, lv = z.tolist(), mu.tolist(), lv.tolist()
    D = len(z[0])
    joint, dims = [], []
    for i, zi in enumerate(z):
        Ld = [[log_normal_1d(zi[d], mu[n][d], lv[n][d]) for d in range(D)] for n in comps[i]]
        ws = [math.exp(lw) for lw in log_ws[i]]
        joint.append(log_weighted_sum([sum(row) for row in Ld], ws))
        dims.append([log_weighted_sum([row[d] for row in Ld], ws) for d in range(D)])
    return torch.tensor(joint, dtype=F64), torch.tensor(dims, dtype=F64)


@pytest.mark.parametrize("name", MINIBATCH)
@pytest.mark.parametrize("B,D,block", [(5, 3, None), (5, 3, 10), (5, 3, 60), (2, 4, None), (9, 1, 7)])
def test_minibatch_matches_brute_force(name, B, D, block, monkeypatch):
    """Every minibatch estimator vs a float64 Python loop; small blocks exercise the row/dimension chunking."""
    if block is not None:
        monkeypatch.setattr(log_qz_module, "BLOCK_ELEMENTS", block)
    mu, lv = make_field(B, D, seed=B * 10 + D)
    z = sample(mu, lv, seed=1)
    N = 50
    got, got_dims = log_aggregate_posterior(z, mu, lv, N, name)
    want, want_dims = brute_minibatch(name, z, mu, lv, N)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-10)
    torch.testing.assert_close(got_dims, want_dims, rtol=0, atol=1e-10)


def test_exact_matches_brute_force():
    mu, lv = make_field(13, 3, seed=2)
    index = torch.tensor([0, 4, 4, 12, 7])
    z = sample(mu[index], lv[index], seed=3)
    got, got_dims = log_aggregate_posterior(z, mu, lv, estimator="exact", index=index)
    comps = [list(range(13))] * 5
    want, want_dims = brute_components(z, mu, lv, comps, [[-math.log(13)] * 13] * 5)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-10)
    torch.testing.assert_close(got_dims, want_dims, rtol=0, atol=1e-10)


@pytest.mark.parametrize("proposal", ["uniform", "own"])
def test_iwae_matches_brute_force_with_the_same_draws(proposal):
    N, B, k = 11, 6, 7
    mu, lv = make_field(N, 2, seed=4)
    index = torch.tensor([3, 0, 10, 3, 5, 9])
    z = sample(mu[index], lv[index], seed=5)
    got, got_dims = log_aggregate_posterior(z, mu, lv, estimator="iwae", k=k, proposal=proposal, index=index,
                                            generator=torch.Generator().manual_seed(7))
    g = torch.Generator().manual_seed(7)  # documented draw: torch.randint of shape (B, k)
    if proposal == "uniform":
        comps = torch.randint(N, (B, k), generator=g).tolist()
        log_ws = [[-math.log(k)] * k] * B
    else:
        u = torch.randint(N - 1, (B, k), generator=g).tolist()
        comps = [[int(index[i])] + [v + (v >= int(index[i])) for v in u[i]] for i in range(B)]
        assert all(int(index[i]) not in comps[i][1:] for i in range(B))
        log_ws = [[-math.log(N)] + [math.log((N - 1) / (N * k))] * k] * B
    want, want_dims = brute_components(z, mu, lv, comps, log_ws)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-10)
    torch.testing.assert_close(got_dims, want_dims, rtol=0, atol=1e-10)


def test_iwae_own_with_single_component_is_exact():
    mu, lv = make_field(1, 3, seed=6)
    z = sample(mu.expand(4, 3), lv.expand(4, 3), seed=7)
    index = torch.zeros(4, dtype=torch.long)
    got = log_aggregate_posterior(z, mu, lv, estimator="iwae", k=3, proposal="own", index=index)
    want = log_aggregate_posterior(z, mu, lv, estimator="exact")
    torch.testing.assert_close(got[0], want[0], rtol=0, atol=1e-12)
    torch.testing.assert_close(got[1], want[1], rtol=0, atol=1e-12)


# ------------------------------------------------------------------------------------------------
# exact identities


def test_mws_minus_naive_and_tc_no_constant_offsets_are_exact():
    B, D, N = 32, 4, 1000
    mu, lv = make_field(B, D, seed=8)
    z = sample(mu, lv, seed=9)
    naive, mws, nc = (decompose(z, mu, lv, N, name) for name in ("naive", "mws", "tc_no_constant"))
    offsets = {"mi": math.log(N), "tc": (D - 1) * math.log(N), "dimwise_kl": -D * math.log(N), "kl_agg": -math.log(N)}
    for q, off in offsets.items():
        torch.testing.assert_close(mws[f"{q}_terms"] - naive[f"{q}_terms"], torch.full((B,), off, dtype=F64),
                                   rtol=0, atol=1e-10)
    torch.testing.assert_close(nc["tc_terms"], mws["tc_terms"] - (D - 1) * math.log(N * B), rtol=0, atol=1e-10)


@pytest.mark.parametrize("dtype,atol", [(F64, 1e-12), (torch.float32, 2e-5)])
@pytest.mark.parametrize("name,extra", [("mss", {}), ("stratified", {}), ("loo", {}), ("exact", {}),
                                        ("iwae", {"k": 5, "proposal": "uniform"}), ("iwae", {"k": 5, "proposal": "own"})])
def test_prior_posteriors_give_zero(name, extra, dtype, atol):
    """All posteriors equal to the prior: q(z) = q(z|n) = p(z), so mi = tc = kl_agg = 0 exactly."""
    N, B, D = 40, 8, 5
    field = name in FIELD
    rows = N if field else B
    mu, lv = torch.zeros(rows, D, dtype=dtype), torch.zeros(rows, D, dtype=dtype)
    z = torch.randn(B, D, generator=torch.Generator().manual_seed(10), dtype=dtype) * 2
    index = torch.arange(B) * 3 if field else None
    out = decompose(z, mu, lv, N, name, index=index, generator=torch.Generator().manual_seed(1), **extra)
    for q in ("mi", "tc", "kl_agg"):
        torch.testing.assert_close(out[f"{q}_terms"], torch.zeros(B, dtype=dtype), rtol=0, atol=atol)


def test_stratified_with_the_whole_dataset_equals_exact():
    N, D = 16, 3
    mu, lv = make_field(N, D, seed=11)
    perm = torch.randperm(N, generator=torch.Generator().manual_seed(0))
    z = sample(mu[perm], lv[perm], seed=12)
    strat = log_aggregate_posterior(z, mu[perm], lv[perm], N, "stratified")
    exact = log_aggregate_posterior(z, mu, lv, estimator="exact", index=perm)
    torch.testing.assert_close(strat[0], exact[0], rtol=0, atol=1e-10)
    torch.testing.assert_close(strat[1], exact[1], rtol=0, atol=1e-10)


def test_marginals_false_skips_the_marginals():
    mu, lv = make_field(10, 3, seed=13)
    z = sample(mu, lv, seed=14)
    full = log_aggregate_posterior(z, mu, lv, 100, "mss")
    joint, none = log_aggregate_posterior(z, mu, lv, 100, "mss", marginals=False)
    assert none is None
    torch.testing.assert_close(joint, full[0], rtol=0, atol=0)


# ------------------------------------------------------------------------------------------------
# unbiasedness inside the log: E[exp(log q^(z))] = q(z) for fixed z and own index


N_UB, D_UB, B_UB, OWN, R_UB = 12, 2, 4, 5, 800
Z_SCORE = 4.0  # two-sided failure rate ~6e-5 per comparison


def unbiased_setup():
    mu, lv = make_field(N_UB, D_UB, seed=20, spread=1.0, logvar=(-1.0, -0.2))
    z = sample(mu[OWN:OWN + 1], lv[OWN:OWN + 1], seed=21)[0]
    truth_joint, truth_dims = brute_components(z[None], mu, lv, [list(range(N_UB))], [[-math.log(N_UB)] * N_UB])
    return mu, lv, z, truth_joint.exp()[0], truth_dims.exp()[0]


def minibatch_replicates(name, position, replicates=R_UB):
    """exp(log q^) at z over random batches holding OWN at ``position`` (others uniform without replacement)."""
    mu, lv, z, truth, truth_dims = unbiased_setup()
    g = torch.Generator().manual_seed(22)
    others = torch.tensor([n for n in range(N_UB) if n != OWN])
    vals, dvals = [], []
    for _ in range(replicates):
        batch = others[torch.randperm(N_UB - 1, generator=g)[:B_UB - 1]].tolist()
        batch.insert(position, OWN)
        zb = mu[batch].clone()  # other rows' samples do not enter row ``position``'s estimate
        zb[position] = z
        lq, lqd = log_aggregate_posterior(zb, mu[batch], lv[batch], N_UB, name)
        vals.append(lq[position])
        dvals.append(lqd[position])
    return torch.stack(vals).exp(), torch.stack(dvals).exp(), truth, truth_dims


def z_scores(samples, truth):
    se = samples.std(0) / math.sqrt(samples.shape[0])
    return ((samples.mean(0) - truth) / se).abs()


@pytest.mark.parametrize("name", ["mss", "stratified"])
@pytest.mark.parametrize("position", [1, B_UB - 1])
def test_minibatch_inner_sum_is_unbiased(name, position):
    vals, dvals, truth, truth_dims = minibatch_replicates(name, position)
    assert float(z_scores(vals, truth)) < Z_SCORE
    assert bool((z_scores(dvals, truth_dims) < Z_SCORE).all())


@pytest.mark.parametrize("name", ["naive", "mws", "loo", "mss_shipped"])
def test_unbiasedness_check_detects_biased_estimators(name):
    """The same check has the power to reject the estimators that are not unbiased inside."""
    vals, _, truth, _ = minibatch_replicates(name, position=2, replicates=200)
    assert float(z_scores(vals, truth)) > Z_SCORE


@pytest.mark.parametrize("proposal", ["uniform", "own"])
def test_iwae_inner_sum_is_unbiased(proposal):
    mu, lv, z, truth, truth_dims = unbiased_setup()
    R = 20000  # R rows of the same z: each row draws its own k indices independently
    zb = z.expand(R, D_UB)
    index = torch.full((R,), OWN)
    lq, lqd = log_aggregate_posterior(zb, mu, lv, estimator="iwae", k=3, proposal=proposal, index=index,
                                      generator=torch.Generator().manual_seed(23))
    assert float(z_scores(lq.exp(), truth)) < Z_SCORE
    assert bool((z_scores(lqd.exp(), truth_dims) < Z_SCORE).all())
    # power: the check resolves a 10 % bias
    assert float(z_scores(0.9 * lq.exp(), truth)) > Z_SCORE


# ------------------------------------------------------------------------------------------------
# gradients


def call(name, z, mu, lv, N, index, seed=0):
    info = ESTIMATORS[name]
    kwargs = {"k": 4, "generator": torch.Generator().manual_seed(seed)} if info.needs_k else {}
    return log_aggregate_posterior(z, mu, lv, N if not info.needs_field else None, name, index=index, **kwargs)


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_gradcheck(name):
    B, D, N = 4, 2, 6
    field = ESTIMATORS[name].needs_field
    mu, lv = make_field(N if field else B, D, seed=30)
    index = torch.tensor([0, 2, 5, 2]) if field else None
    z = sample(mu[index] if field else mu, lv[index] if field else lv, seed=31)
    inputs = tuple(t.clone().requires_grad_() for t in (z, mu, lv))
    assert torch.autograd.gradcheck(lambda a, b, c: call(name, a, b, c, N, index), inputs)


@pytest.mark.parametrize("name,proposal", [("iwae", "own")])
def test_gradcheck_iwae_own(name, proposal):
    mu, lv = make_field(6, 2, seed=32)
    index = torch.tensor([1, 1, 4])
    z = sample(mu[index], lv[index], seed=33)
    inputs = tuple(t.clone().requires_grad_() for t in (z, mu, lv))
    f = lambda a, b, c: log_aggregate_posterior(a, b, c, estimator="iwae", k=3, proposal=proposal, index=index,
                                                generator=torch.Generator().manual_seed(0))
    assert torch.autograd.gradcheck(f, inputs)


def broadcast_reference(name, z, mu, lv, N):
    """Plain-autograd B x B x D implementation (the published code's layout), for gradient comparison."""
    B, D = z.shape
    Ld = -0.5 * (math.log(2 * math.pi) + lv[None] + (z[:, None] - mu[None]) ** 2 * torch.exp(-lv[None]))
    Wj, Wd = hand_weights(name, B, N, D)
    lwj = torch.tensor(Wj, dtype=z.dtype).log()
    lwd = torch.tensor(Wd, dtype=z.dtype).log()
    return torch.logsumexp(Ld.sum(2) + lwj, 1), torch.logsumexp(Ld + lwd[:, :, None], 1)


@pytest.mark.parametrize("name", MINIBATCH)
def test_gradient_matches_plain_autograd_with_many_blocks(name, monkeypatch):
    """Custom backward passes vs autograd through the broadcast form, on a batch split into many blocks."""
    monkeypatch.setattr(log_qz_module, "BLOCK_ELEMENTS", 40)
    B, D, N = 23, 3, 500
    mu, lv = make_field(B, D, seed=34)
    z = sample(mu, lv, seed=35)
    g = torch.Generator().manual_seed(36)
    wj, wd = torch.randn(B, generator=g, dtype=F64), torch.randn(B, D, generator=g, dtype=F64)
    grads = []
    for f in (lambda *a: log_aggregate_posterior(*a, N, name), lambda *a: broadcast_reference(name, *a, N)):
        inputs = [t.clone().requires_grad_() for t in (z, mu, lv)]
        lq, lqd = f(*inputs)
        ((lq * wj).sum() + (lqd * wd).sum()).backward()
        grads.append([t.grad for t in inputs])
    for got, want in zip(*grads):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-10)


def test_exact_gradient_matches_finite_differences_and_autograd():
    N, B, D = 30, 5, 3
    mu, lv = make_field(N, D, seed=37)
    index = torch.tensor([0, 7, 7, 20, 29])
    z = sample(mu[index], lv[index], seed=38)
    inputs = [t.clone().requires_grad_() for t in (z, mu, lv)]
    lq, lqd = log_aggregate_posterior(*inputs, estimator="exact")
    (lq.sum() + 0.5 * lqd.sum()).backward()
    ref_inputs = [t.clone().requires_grad_() for t in (z, mu, lv)]
    a, b, c = ref_inputs
    Ld = -0.5 * (math.log(2 * math.pi) + c[None] + (a[:, None] - b[None]) ** 2 * torch.exp(-c[None]))
    ref = torch.logsumexp(Ld.sum(2), 1).sum() + 0.5 * torch.logsumexp(Ld, 1).sum() - (1 + 0.5 * D) * B * math.log(N)
    ref.backward()
    for t, r in zip(inputs, ref_inputs):
        torch.testing.assert_close(t.grad, r.grad, rtol=1e-9, atol=1e-11)
    # central finite differences on a few coordinates of z and logvar
    def f(zz, ll):
        out = log_aggregate_posterior(zz, mu, ll, estimator="exact")
        return float(out[0].sum() + 0.5 * out[1].sum())
    h = 1e-6
    for (which, i, d) in [(0, 1, 2), (0, 4, 0), (2, 7, 1), (2, 20, 2)]:
        zp, lp, zm, lm = z.clone(), lv.clone(), z.clone(), lv.clone()
        (zp if which == 0 else lp)[i, d] += h
        (zm if which == 0 else lm)[i, d] -= h
        fd = (f(zp, lp) - f(zm, lm)) / (2 * h)
        assert fd == pytest.approx(float(inputs[which].grad[i, d]), rel=1e-6, abs=1e-8)


# ------------------------------------------------------------------------------------------------
# precision: float32 vs float64 on a realistic field


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_float32_agrees_with_float64(name):
    """logvar in [-10, 2] (sharp and broad posteriors). Agreement to 1e-4 in log q, i.e. 1e-4 relative in q."""
    N, B, D = 2000, 96, 6
    field = ESTIMATORS[name].needs_field
    mu32, lv32 = make_field(N if field else B, D, seed=40, dtype=torch.float32, spread=1.0, logvar=(-10.0, 2.0))
    index = torch.randperm(N, generator=torch.Generator().manual_seed(41))[:B] if field else None
    z32 = sample(mu32[index] if field else mu32, lv32[index] if field else lv32, seed=42)
    out32 = call(name, z32, mu32, lv32, N, index)
    out64 = call(name, z32.double(), mu32.double(), lv32.double(), N, index)
    assert out32[0].dtype == torch.float32 and out64[0].dtype == F64
    for a, b in zip(out32, out64):
        torch.testing.assert_close(a.double(), b, rtol=1e-4, atol=1e-4)


def test_mixed_dtypes_promote():
    mu, lv = make_field(6, 2, seed=43)
    z = sample(mu, lv, seed=44).float()
    lq, lqd = log_aggregate_posterior(z, mu, lv, 10, "mss")
    assert lq.dtype == F64 and lqd.dtype == F64 and lq.shape == (6,) and lqd.shape == (6, 2)


# ------------------------------------------------------------------------------------------------
# bad input


def bad_cases():
    mu, lv = make_field(5, 2, seed=50)
    z = sample(mu, lv, seed=51)
    nan_z = z.clone()
    nan_z[1, 1] = float("nan")
    inf_lv = lv.clone()
    inf_lv[0, 0] = float("inf")
    fmu, flv = make_field(9, 2, seed=52)
    idx = torch.tensor([0, 1, 2, 3, 8])
    return [
        (dict(z=z, mu=mu, logvar=lv, dataset_size=10, estimator="msss"), ValueError, "unknown estimator 'msss'.*known estimators: naive, mws, mss"),
        (dict(z=z[:1], mu=mu[:1], logvar=lv[:1], dataset_size=10, estimator="mss"), ValueError, "at least 2 samples"),
        (dict(z=z[:1], mu=mu[:1], logvar=lv[:1], dataset_size=10, estimator="loo"), ValueError, "at least 2 samples"),
        (dict(z=z[:1], mu=mu[:1], logvar=lv[:1], dataset_size=10, estimator="mss_per_dim"), ValueError, "at least 2 samples"),
        (dict(z=z, mu=mu, logvar=lv, dataset_size=4, estimator="stratified"), ValueError, "dataset_size must be at least"),
        (dict(z=z, mu=mu, logvar=lv, dataset_size=4, estimator="naive"), ValueError, "dataset_size must be at least"),
        (dict(z=z, mu=mu, logvar=lv, estimator="mws"), ValueError, "needs dataset_size"),
        (dict(z=z, mu=mu, logvar=lv, dataset_size=10.0, estimator="mss"), TypeError, "dataset_size must be an int"),
        (dict(z=z, mu=fmu, logvar=flv, estimator="iwae", index=idx), ValueError, "needs k"),
        (dict(z=z, mu=fmu, logvar=flv, estimator="iwae", k=0, index=idx), ValueError, "k must be at least 1"),
        (dict(z=z, mu=fmu, logvar=flv, estimator="iwae", k=2.5), TypeError, "k must be an int"),
        (dict(z=z, mu=fmu, logvar=flv, estimator="iwae", k=3, proposal="prior"), ValueError, "proposal must be one of"),
        (dict(z=z, mu=fmu, logvar=flv, estimator="iwae", k=3, proposal="own"), ValueError, "needs index"),
        (dict(z=z, mu=fmu, logvar=flv, estimator="exact", index=idx[:4]), ValueError, r"index must have shape \(B,\)"),
        (dict(z=z, mu=fmu, logvar=flv, estimator="exact", index=idx + 1), ValueError, r"index values must lie in \[0, N\)"),
        (dict(z=z, mu=fmu, logvar=flv, estimator="exact", index=idx.double()), TypeError, "index must hold integers"),
        (dict(z=z, mu=fmu, logvar=flv, dataset_size=100, estimator="exact"), ValueError, "dataset_size must equal"),
        (dict(z=z, mu=fmu, logvar=flv, dataset_size=100, estimator="mss"), ValueError, "batch's own posteriors"),
        (dict(z=z, mu=mu, logvar=lv[:, :1], dataset_size=10, estimator="mss"), ValueError, "mu and logvar must have the same shape"),
        (dict(z=z[:, :1], mu=mu, logvar=lv, dataset_size=10, estimator="mss"), ValueError, "latent dimensions"),
        (dict(z=z[0], mu=mu, logvar=lv, dataset_size=10, estimator="mss"), ValueError, "z must be 2-dimensional"),
        (dict(z=nan_z, mu=mu, logvar=lv, dataset_size=10, estimator="mss"), ValueError, r"z holds 1 non-finite \(NaN\)"),
        (dict(z=z, mu=mu, logvar=inf_lv, dataset_size=10, estimator="exact"), ValueError, r"logvar holds 1 non-finite \(infinite\)"),
        (dict(z=z.long(), mu=mu, logvar=lv, dataset_size=10, estimator="mss"), TypeError, "z must have a floating dtype"),
    ]


@pytest.mark.parametrize("case", range(len(bad_cases())))
def test_bad_input(case):
    kwargs, exc, match = bad_cases()[case]
    with pytest.raises(exc, match=match):
        log_aggregate_posterior(**kwargs)


def test_public_exports():
    assert estimators.log_aggregate_posterior is log_aggregate_posterior
    assert set(ESTIMATORS) >= {"naive", "mws", "mss", "stratified", "loo", "iwae", "exact",
                               "mss_shipped", "mss_per_dim", "tc_no_constant"}
    info = ESTIMATORS["mss"]
    assert info.family == "minibatch" and info.unbiased_inside and not info.needs_field and not info.needs_k
    assert ESTIMATORS["iwae"].needs_k and ESTIMATORS["iwae"].needs_field and ESTIMATORS["iwae"].family == "importance"
    assert ESTIMATORS["exact"].family == "exact" and ESTIMATORS["exact"].unbiased_inside
    assert {n for n, i in ESTIMATORS.items() if i.published_variant} == {"mss_shipped", "mss_per_dim", "tc_no_constant"}
    assert {n for n, i in ESTIMATORS.items() if i.unbiased_inside} == {"mss", "stratified", "iwae", "exact"}
