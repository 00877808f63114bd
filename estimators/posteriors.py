"""A field of diagonal-Gaussian encoder posteriors q(z|n) = Normal(mu_n, diag exp(logvar_n))."""
from __future__ import annotations

import os
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .numerics import log_normal
from .validation import as_posteriors

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
        mu, logvar = as_posteriors(self.mu, self.logvar)
        if mu.shape[0] == 0:
            raise ValueError("mu and logvar must hold at least one posterior (N >= 1), got N = 0")
        if mu.shape[1] == 0:
            raise ValueError("mu and logvar must have at least one latent dimension (D >= 1), got D = 0")
        dtype = torch.promote_types(torch.promote_types(mu.dtype, logvar.dtype), torch.float32)  # float16 -> 32
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
        return log_normal(z, self.mu[index], self.logvar[index]).sum(-1)


SUFFIXES = (".npz", ".pt", ".pth")
_EXPECTED = "a .npz, .pt or .pth file holding arrays mu and logvar of shape (N, D)"


def _numpy_safe_globals() -> list:
    """What ``torch.load(weights_only=True)`` needs to unpickle numpy arrays saved inside a .pt file."""
    from numpy._core.multiarray import _reconstruct

    dtypes = [getattr(np.dtypes, n) for n in dir(np.dtypes) if n.endswith("DType")]
    # files written under numpy 1.x name the function numpy.core.multiarray._reconstruct
    return [_reconstruct, (_reconstruct, "numpy.core.multiarray._reconstruct"), np.ndarray, np.dtype, *dtypes]


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0].strip() if text else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def _read_arrays(path: Path, suffix: str) -> dict:
    if path.stat().st_size == 0:
        raise ValueError("the file is empty")
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    if not zipfile.is_zipfile(path):
        raise ValueError("not a file written by torch.save (that is a zip archive; this is not)")
    try:
        with torch.serialization.safe_globals(_numpy_safe_globals()):
            arrays = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise ValueError("it holds objects other than tensors, numpy arrays and plain containers, which are not "
                         "unpickled (no code from a file is run): save {'mu': tensor, 'logvar': tensor}") from None
    if not isinstance(arrays, dict):
        raise ValueError(f"it holds a {type(arrays).__name__}, expected a dict with keys 'mu' and 'logvar'")
    return arrays


def _as_array(value) -> Tensor:
    """A saved array as a plain CPU tensor: detached, float16/bfloat16 widened to float32."""
    if isinstance(value, Tensor):
        value = value.detach().cpu()
    else:
        value = torch.as_tensor(np.asarray(value))
    return value.float() if value.is_floating_point() and torch.finfo(value.dtype).bits < 32 else value


def load_posteriors(path: str | os.PathLike, name: str | None = None) -> Posteriors:
    """Load a field from a ``.npz``, ``.pt`` or ``.pth`` file holding arrays ``mu`` and ``logvar`` (N, D).

    A ``.pt``/``.pth`` file is read with ``torch.load(weights_only=True)`` (no arbitrary code runs) and
    may hold tensors (also ones that require grad: saved encoder outputs; float16 and bfloat16 are widened
    to float32) or numpy arrays.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: an unreadable, empty or foreign file, an unknown extension, a missing key, or arrays
            that fail validation; one line naming the file and the problem.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"posterior file {str(path)!r} does not exist (expected {_EXPECTED})")
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise ValueError(f"cannot read posterior file {str(path)!r}: extension {suffix!r}; expected {_EXPECTED}")
    try:
        arrays = _read_arrays(path, suffix)
    except ValueError as exc:
        raise ValueError(f"cannot read posterior file {str(path)!r}: {exc}") from exc
    except Exception as exc:  # zipfile.BadZipFile, pickle.UnpicklingError, RuntimeError, EOFError, ...
        raise ValueError(f"cannot read posterior file {str(path)!r}: not {_EXPECTED} ({_one_line(exc)})") from exc
    missing = [key for key in ("mu", "logvar") if key not in arrays]
    if missing:
        raise ValueError(
            f"posterior file {str(path)!r} lacks array(s) {missing}; it holds {sorted(map(str, arrays))}, "
            "expected 'mu' and 'logvar' of shape (N, D)"
        )
    try:
        return Posteriors(_as_array(arrays["mu"]), _as_array(arrays["logvar"]), name or path.stem)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"posterior file {str(path)!r}: {exc}") from exc


def save_posteriors(field: Posteriors, path: str | os.PathLike) -> None:
    """Write ``field`` to ``.npz`` or ``.pt`` (by extension), readable by :func:`load_posteriors`."""
    path = Path(path)
    mu, logvar = field.mu.detach().cpu(), field.logvar.detach().cpu()
    if path.suffix.lower() == ".npz":
        np.savez(path, mu=mu.numpy(), logvar=logvar.numpy())
    elif path.suffix.lower() in (".pt", ".pth"):
        torch.save({"mu": mu, "logvar": logvar}, path)
    else:
        raise ValueError(f"path must end in .npz, .pt or .pth, got {str(path)!r}")
