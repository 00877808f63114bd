r"""scikit-learn's bundled digits (1797 8x8 images, no download), the one loader of the package.

Pixels are scaled to [0, 1] by dividing by 16. Used by the ``vae-digits`` scenario (a VAE trained on
them) and by the ``fa-digits`` log p(x) tasks (probabilistic PCA fitted to them).
"""
from __future__ import annotations

import functools

import numpy as np
import torch

__all__ = ["DIGITS_N", "digits_images"]

DIGITS_N = 1797


@functools.lru_cache(maxsize=1)
def _pixels() -> np.ndarray:
    from sklearn.datasets import load_digits  # imported here: sklearn is slow to import

    return load_digits().data / 16.0


def digits_images(dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The 1797 images as a (1797, 64) tensor of ``dtype`` with values in [0, 1] (a fresh copy)."""
    return torch.tensor(_pixels(), dtype=dtype)
