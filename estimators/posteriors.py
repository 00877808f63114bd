"""A field of diagonal-Gaussian encoder posteriors q(z|n) = Normal(mu_n, diag exp(logvar_n))."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ._checks import as_float_tensor, check_finite, check_same_shape

__all__ = ["Posteriors", "load_posteriors", "save_posteriors"]


@dataclass(frozen=True)
class Posteriors:
    r"""N diagonal-Gaussian posteriors in D dimensions: ``mu`` and ``logvar``, both (N, D).

    Construction validates the arrays: floating dtype, rank 2, equal shapes, N >= 1, D >= 1,
    all values finite. ``name`` is a label carried into reports.

    Example::

        >>> field = Posteriors(torch.zeros(100, 4), torch.zeros(100, 4))
        >>> field.N, field.D
        (100, 4)
    """

    mu: Tensor
    logvar: Tensor
    name: str = "posteriors"

    def __post_init__(self) -> None:
        mu = as_float_tensor("mu", self.mu, ndim=2)
        logvar = as_float_tensor("logvar", self.logvar, ndim=2)
        check_same_shape("mu", mu, "logvar", logvar)
        if mu.shape[0] == 0:
            raise ValueError("mu and logvar must hold at least one posterior (N >= 1), got N = 0")
        if mu.shape[1] == 0:
            raise ValueError("mu and logvar must have at least one latent dimension (D >= 1), got D = 0")
        check_finite("mu", mu)
        check_finite("logvar", logvar)
        dtype = torch.promote_types(mu.dtype, logvar.dtype)
        object.__setattr__(self, "mu", mu.to(dtype))
        object.__setattr__(self, "logvar", logvar.to(dtype))

    @property
    def N(self) -> int:
        return int(self.mu.shape[0])

    @property
    def D(self) -> int:
        return int(self.mu.shape[1])

    @property
    def dtype(self) -> torch.dtype:
        return self.mu.dtype

    def to(self, dtype: torch.dtype | None = None, device=None) -> "Posteriors":
        return Posteriors(self.mu.to(device=device, dtype=dtype), self.logvar.to(device=device, dtype=dtype), self.name)

    def subset(self, index: Tensor) -> "Posteriors":
        return Posteriors(self.mu[index], self.logvar[index], self.name)

    def sample(self, index: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:
        """One reparameterised draw z_i ~ q(z|n_i) for each index (all N when ``index`` is None)."""
        mu, logvar = (self.mu, self.logvar) if index is None else (self.mu[index], self.logvar[index])
        eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype, device=mu.device)
        return mu + eps * torch.exp(0.5 * logvar)

    def log_prob(self, z: Tensor, index: Tensor) -> Tensor:
        """log q(z_i | n_i) for paired rows of ``z`` (B, D) and ``index`` (B,)."""
        mu, logvar = self.mu[index], self.logvar[index]
        return (-0.5 * (math.log(2 * math.pi) + logvar + (z - mu) ** 2 * torch.exp(-logvar))).sum(-1)


def load_posteriors(path: str | os.PathLike, name: str | None = None) -> Posteriors:
    """Load a field from a ``.npz`` or ``.pt`` file holding arrays ``mu`` and ``logvar`` of shape (N, D).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: unreadable file, unknown extension, missing key, or arrays that fail validation
            (the message names the file and the problem).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"posterior file {str(path)!r} does not exist (expected a .npz or .pt file with arrays mu and logvar)")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                arrays = {key: data[key] for key in data.files}
        elif suffix == ".pt":
            arrays = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(arrays, dict):
                raise ValueError(f"holds a {type(arrays).__name__}, expected a dict with keys 'mu' and 'logvar'")
        else:
            raise ValueError(f"has extension {suffix!r}; expected .npz or .pt")
    except (OSError, ValueError, RuntimeError, EOFError) as exc:  # zipfile/pickle errors surface as these
        raise ValueError(f"cannot read posterior file {str(path)!r}: {exc}") from exc
    except Exception as exc:  # e.g. zipfile.BadZipFile, pickle.UnpicklingError
        raise ValueError(f"cannot read posterior file {str(path)!r}: {type(exc).__name__}: {exc}") from exc
    missing = [key for key in ("mu", "logvar") if key not in arrays]
    if missing:
        raise ValueError(
            f"posterior file {str(path)!r} lacks array(s) {missing}; it holds {sorted(arrays)}, "
            "expected 'mu' and 'logvar' of shape (N, D)"
        )
    try:
        return Posteriors(torch.as_tensor(np.asarray(arrays["mu"])), torch.as_tensor(np.asarray(arrays["logvar"])),
                          name or path.stem)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"posterior file {str(path)!r}: {exc}") from exc


def save_posteriors(field: Posteriors, path: str | os.PathLike) -> None:
    """Write ``field`` to ``.npz`` or ``.pt`` (by extension), readable by :func:`load_posteriors`."""
    path = Path(path)
    mu, logvar = field.mu.detach().cpu(), field.logvar.detach().cpu()
    if path.suffix.lower() == ".npz":
        np.savez(path, mu=mu.numpy(), logvar=logvar.numpy())
    elif path.suffix.lower() == ".pt":
        torch.save({"mu": mu, "logvar": logvar}, path)
    else:
        raise ValueError(f"path must end in .npz or .pt, got {str(path)!r}")
