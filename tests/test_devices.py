"""Devices: the torch path runs where the inputs live, with no hidden host synchronisation.

Every estimator runs on every device present (CPU always; CUDA where there is one, compared with the
CPU result), forward and backward. That nothing in an estimator reads a value back to the host when
validation is off is checked on the ``meta`` device, which holds no data: any ``.item()``,
``float(t)`` or data-dependent branch there raises, as it would sync a GPU.
"""
import pytest
import torch

import estimators as est

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
B, D, N, K = 32, 4, 300, 8


def _inputs(device, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    field_mu = torch.randn(N, D, generator=g, dtype=dtype)
    field_lv = -1.0 + 0.5 * torch.randn(N, D, generator=g, dtype=dtype)
    index = torch.randperm(N, generator=g)[:B]
    z = field_mu[index] + torch.randn(B, D, generator=g, dtype=dtype) * torch.exp(0.5 * field_lv[index])
    return [t.to(device) for t in (z, field_mu, field_lv, index)]


def _call(name, z, field_mu, field_lv, index, generator=None):
    info = est.ESTIMATORS[name]
    kw = {"field": (field_mu, field_lv), "index": index} if info.needs_field else {}
    if info.needs_k:
        kw.update(k=K, generator=generator)
    return est.decompose(z, field_mu[index], field_lv[index], N, name, **kw)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", list(est.ESTIMATORS))
def test_every_estimator_runs_where_its_inputs_live(name, device):
    z, mu, lv, index = _inputs(device)
    inputs = [t.requires_grad_() for t in (z, mu, lv)]
    gen = torch.Generator(device=device).manual_seed(1)
    out = _call(name, *inputs, index, generator=gen)
    assert all(v.device.type == device for v in out.values())
    (out["mi"] + out["tc"] + out["dimwise_kl"]).backward()
    assert all(t.grad is not None and t.grad.device.type == device for t in inputs)
    if device != "cpu" and not est.ESTIMATORS[name].needs_k:  # the same numbers as on the CPU
        ref = _call(name, *_inputs("cpu"))
        for key in ("mi", "kl_agg", "tc", "dimwise_kl"):
            torch.testing.assert_close(out[key].detach().cpu(), ref[key], rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", list(est.ESTIMATORS))
def test_no_host_synchronisation_when_validation_is_off(name):
    """On meta tensors (no data) any read-back raises: forward and backward run without one."""
    z, mu, lv, index = (torch.empty_like(t, device="meta") for t in _inputs("cpu"))
    inputs = [t.requires_grad_() for t in (z, mu, lv)]
    with est.validate_args(False):
        out = _call(name, *inputs, index)
        out["tc"].backward()
    assert out["tc"].device.type == "meta" and inputs[0].grad.device.type == "meta"
