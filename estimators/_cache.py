"""Where the package caches what it builds once: the compiled native kernel, trained VAE posteriors."""
from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "VAE_ESTIMATORS_CACHE"


def cache_dir() -> Path:
    """The cache directory: ``$VAE_ESTIMATORS_CACHE`` if set, else ``~/.cache/vae-aggregate-estimators``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "vae-aggregate-estimators"
