"""Posteriors (estimators/posteriors.py): validation, sampling and log_prob, files."""
import math

import numpy as np
import pytest
import torch

from estimators import Posteriors, load_posteriors, save_posteriors


def test_roundtrip_npz_and_pt(tmp_path):
    field = Posteriors(torch.randn(5, 3), torch.randn(5, 3), "mine")
    for suffix in (".npz", ".pt", ".pth"):
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
    with pytest.raises(ValueError, match=r"x\.csv.*extension '\.csv'; expected a \.npz, \.pt or \.pth file"):
        load_posteriors(tmp_path / "x.csv")
    (tmp_path / "empty.npz").write_bytes(b"")
    with pytest.raises(ValueError, match="empty.npz.*empty"):
        load_posteriors(tmp_path / "empty.npz")
    np.savez(tmp_path / "nan.npz", mu=np.full((3, 2), np.nan), logvar=np.zeros((3, 2)))
    with pytest.raises(ValueError, match="nan.npz.*non-finite"):
        load_posteriors(tmp_path / "nan.npz")
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="expected a dict"):
        load_posteriors(tmp_path / "list.pt")


def test_properties_subset_and_conversion():
    field = Posteriors(torch.randn(6, 2, dtype=torch.float64), torch.zeros(6, 2, dtype=torch.float32), "f")
    assert (field.N, field.D, field.dtype) == (6, 2, torch.float64)  # promoted to the common dtype
    sub = field.subset(torch.tensor([4, 1]))
    assert sub.name == "f" and sub.N == 2 and torch.equal(sub.mu, field.mu[[4, 1]])
    half = field.to(torch.float32)
    assert half.dtype == torch.float32 and half.logvar.dtype == torch.float32 and half.name == "f"
    z = field.sample(generator=torch.Generator().manual_seed(0))
    assert z.shape == (6, 2) and z.dtype == torch.float64


def test_save_rejects_unknown_extensions(tmp_path):
    with pytest.raises(ValueError, match=r"must end in \.npz, \.pt or \.pth"):
        save_posteriors(Posteriors(torch.zeros(2, 2), torch.zeros(2, 2)), tmp_path / "f.csv")


def test_load_accepts_saved_encoder_outputs(tmp_path):
    """A .pt of tensors that require grad (saved encoder outputs) or of float16: detached, widened to float32."""
    mu = torch.randn(4, 2, requires_grad=True)
    torch.save({"mu": mu * 1.0, "logvar": torch.zeros(4, 2, dtype=torch.float16)}, tmp_path / "enc.pt")
    back = load_posteriors(tmp_path / "enc.pt", name="enc")
    assert back.name == "enc" and back.dtype == torch.float32 and not back.mu.requires_grad
    torch.testing.assert_close(back.mu, mu.detach())


@pytest.mark.parametrize("make", ["bfloat16", "float16", "numpy"])
def test_load_accepts_what_users_save(tmp_path, make):
    # each of these was refused, or failed with a traceback, on the earlier loader
    mu, logvar = torch.randn(6, 3), torch.randn(6, 3)
    if make == "numpy":
        saved = {"mu": mu.double().numpy(), "logvar": logvar.double().numpy()}
    else:
        saved = {"mu": mu.to(getattr(torch, make)), "logvar": logvar.to(getattr(torch, make))}
    torch.save(saved, tmp_path / "f.pth")
    back = load_posteriors(tmp_path / "f.pth")
    assert back.N == 6 and back.dtype == (torch.float64 if make == "numpy" else torch.float32)
    torch.testing.assert_close(back.mu.double(), torch.as_tensor(saved["mu"]).double())


@pytest.mark.parametrize("content, match", [
    (b"", "the file is empty"),
    (b"not a torch file at all", "not a file written by torch.save"),
    (None, "it holds a list, expected a dict with keys 'mu' and 'logvar'"),
])
def test_unreadable_pt_files_get_one_clear_line(tmp_path, content, match):
    path = tmp_path / "bad.pt"
    if content is None:
        torch.save([torch.zeros(2, 2)], path)
    else:
        path.write_bytes(content)
    with pytest.raises(ValueError, match=match) as info:
        load_posteriors(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
