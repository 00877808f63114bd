import math

import numpy as np
import pytest
import torch

from estimators import Posteriors, load_posteriors, save_posteriors


def test_roundtrip_npz_and_pt(tmp_path):
    field = Posteriors(torch.randn(5, 3), torch.randn(5, 3), "mine")
    for suffix in (".npz", ".pt"):
        path = tmp_path / f"field{suffix}"
        save_posteriors(field, path)
        back = load_posteriors(path)
        assert back.name == "field" and (back.N, back.D) == (5, 3)
        torch.testing.assert_close(back.mu, field.mu)
        torch.testing.assert_close(back.logvar, field.logvar)


def test_sample_and_log_prob_match_torch_distributions():
    g = torch.Generator().manual_seed(0)
    field = Posteriors(torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64))
    index = torch.tensor([0, 2, 2, 3])
    z = field.sample(index, generator=g)
    dist = torch.distributions.Normal(field.mu[index], torch.exp(0.5 * field.logvar[index]))
    torch.testing.assert_close(field.log_prob(z, index), dist.log_prob(z).sum(-1))


@pytest.mark.parametrize("mu, logvar, message", [
    (np.zeros((0, 3)), np.zeros((0, 3)), "N >= 1"),
    (np.zeros((4, 0)), np.zeros((4, 0)), "D >= 1"),
    (np.zeros(4), np.zeros(4), "mu must be 2-dimensional"),
    (np.zeros((4, 3)), np.zeros((4, 2)), "same shape"),
    (np.zeros((4, 3), dtype=np.int64), np.zeros((4, 3)), "mu must have a floating dtype"),
    (np.zeros((4, 3)), np.full((4, 3), math.inf), "logvar holds 12 non-finite"),
    (np.full((4, 3), math.nan), np.zeros((4, 3)), r"mu holds 12 non-finite \(NaN\)"),
])
def test_validation(mu, logvar, message):
    with pytest.raises((ValueError, TypeError), match=message):
        Posteriors(torch.as_tensor(mu), torch.as_tensor(logvar))


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_posteriors(tmp_path / "nope.npz")
    np.savez(tmp_path / "nolv.npz", mu=np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"lacks array\(s\) \['logvar'\]"):
        load_posteriors(tmp_path / "nolv.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="cannot read posterior file"):
        load_posteriors(tmp_path / "junk.npz")
    (tmp_path / "x.csv").write_text("1,2")
    with pytest.raises(ValueError, match="expected .npz or .pt"):
        load_posteriors(tmp_path / "x.csv")
    np.savez(tmp_path / "nan.npz", mu=np.full((3, 2), np.nan), logvar=np.zeros((3, 2)))
    with pytest.raises(ValueError, match="nan.npz.*non-finite"):
        load_posteriors(tmp_path / "nan.npz")
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="expected a dict"):
        load_posteriors(tmp_path / "list.pt")
