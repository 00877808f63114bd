r"""The three kinds of benchmark unit, behind one small interface (:class:`Unit`).

A unit is one estimator configuration on one scenario; it yields one CSV row per quantity.

* :class:`AggregateUnit` (scenario field, estimator, batch size B, k): draws R replicate batches
  -- B distinct indices uniformly without replacement, one z_i ~ q(z|n_i) each -- and makes one
  ``decompose`` call per replicate, which yields all four quantities (mi, kl_agg, tc, dimwise_kl)
  and their per-sample terms; its reference is the field's ``exact_references``.
* :class:`DirectUnit` (scenario field, direct estimator, batch size, steps): an estimator of
  ``estimators.direct.DIRECT_ESTIMATORS`` (moment-based, density ratio), which does not go through
  log q(z); it yields rows only for the quantities it estimates, against the same references. A moment
  estimator sees the R replicate batches the aggregate units see (common random numbers); the density
  ratio samples the whole field, trains on ``batch_size`` samples per class and step for ``steps``
  steps (the ``k`` column) and is seeded per replicate by the unit.
* :class:`LogPxUnit` (log p(x) task, estimator, k): draws its R replicate estimates in a few
  vectorised calls of ``estimators.log_px.sample_log_px_estimates``; every estimator of a task
  sees the same draws (common random numbers); its reference is closed form.

The runner only uses the interface: :attr:`Unit.quantities`, :attr:`Unit.field_id`,
:meth:`Unit.base_row`, :meth:`Unit.reference` and :meth:`Unit.measure`. In the CSV a batch size
or k that does not apply is written 0 (and so it is in the unit key, see :mod:`.grid`).
"""
from __future__ import annotations

import math
import statistics
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np
import torch

from .. import log_px
from ..decompose import decompose
from ..direct import DIRECT_ESTIMATORS
from ..log_qz import ESTIMATORS
from ..posteriors import Posteriors
from .grid import LOG_PX, derive_seed, unit_key
from .metrics import theory_columns
from .reference_cache import compute_reference
from .schema import COLUMN_NAMES

__all__ = ["Unit", "AggregateUnit", "DirectUnit", "LogPxUnit", "Measurement", "Z95", "TIMED_CHUNKS"]

Z95 = 1.959963984540054  # two-sided 95% normal quantile
TIMED_CHUNKS = 8  # a log p(x) unit's replicates are drawn in this many timed calls


@dataclass
class Measurement:
    r"""What a unit measured: R estimates per quantity, optional per-replicate 95% intervals, the
    median time per call, and extra columns of its rows."""

    estimates: dict[str, np.ndarray]
    time_per_call_s: float
    lower: dict[str, np.ndarray] = field(default_factory=dict)
    upper: dict[str, np.ndarray] = field(default_factory=dict)
    columns: dict[str, object] = field(default_factory=dict)


class Unit(ABC):
    r"""One estimator configuration on one scenario or task.

    Subclasses are frozen dataclasses with at least ``estimator``, ``replicates``, ``dtype``,
    ``seed`` (the global seed) and ``quantities``; they say which cell columns identify them, what
    their reference is and how to measure.
    """

    estimator: str
    replicates: int
    dtype: str
    seed: int
    quantities: tuple[str, ...]  # the quantities the unit emits, one CSV row each

    @property
    @abstractmethod
    def field_id(self) -> tuple:
        r"""Which field (or task) the unit runs on: units with one id share one reference."""

    @abstractmethod
    def cell_columns(self) -> dict:
        r"""The CSV columns naming the unit's cells: scenario, N, D, batch_size, k, separation,
        scenario_seed, dtype, estimator (0 for a batch size or k that does not apply)."""

    @abstractmethod
    def info_columns(self, quantity: str) -> dict:
        r"""What is known before running: family, published_variant and the theory columns."""

    @abstractmethod
    def reference(self, plan, cache, progress=None) -> dict:
        r"""The field's references: ``{quantity: {"value", "se", "method"}}`` (plus ``"samples"``,
        the Monte Carlo draws per component, where there are any). ``progress``: None, or what
        ``exact_references(..., progress=)`` takes (see :func:`.reference_cache.compute_reference`)."""

    @abstractmethod
    def measure(self, plan) -> Measurement:
        r"""Run the R replicates."""

    @property
    def label(self) -> str:
        c = self.cell_columns()
        return " ".join([str(c["scenario"]), self.estimator] + [f"{s}={c[n]}" for s, n in (("B", "batch_size"),
                                                                                           ("k", "k")) if c[n]])

    @property
    def key(self) -> str:
        r"""Identity of the unit's random numbers: everything but quantities, replicates and seed."""
        return unit_key(**self.cell_columns())

    @property
    def batch_key(self) -> str:
        r"""Identity of the replicate batches: the field, the batch size and the dtype, not the estimator."""
        return unit_key(**dict(self.cell_columns(), estimator="*", k=0))

    @property
    def unit_seed(self) -> int:
        return derive_seed(self.seed, self.key)

    def batch_seed(self, r: int) -> int:
        return derive_seed(self.seed, self.batch_key, r)

    def estimator_seed(self, r: int) -> int:
        return derive_seed(self.unit_seed, r)

    def row_id(self, quantity: str) -> tuple:
        r"""Identity of one CSV row, as :func:`.grid.row_id_of` computes it from the row."""
        return (self.key, quantity, self.replicates, self.seed)

    def base_row(self, quantity: str) -> dict:
        r"""The row of ``quantity`` before measuring: identity, what is known up front, NaN elsewhere."""
        c = self.cell_columns()
        row = {name: math.nan for name in COLUMN_NAMES}
        row.update({
            "scenario": c["scenario"], "quantity": quantity, "estimator": self.estimator, "N": c["N"], "D": c["D"],
            "batch_size": c["batch_size"], "k": c["k"], "replicates": self.replicates,
            "separation": math.nan if c["separation"] is None else float(c["separation"]),
            "scenario_seed": c["scenario_seed"], "dtype": self.dtype, "seed": self.seed, "unit_seed": self.unit_seed,
            "reference_method": "", "bias_sign_theory": "", "bias_sign_ok": None, "reference_se_ok": None,
            "status": "ok", "error": "",
        })
        row.update(self.info_columns(quantity))
        return row


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _decompose_call(fld: Posteriors, index: torch.Tensor, z: torch.Tensor, unit: "AggregateUnit", generator):
    r"""One estimator call on one replicate batch (the one estimator contract): every quantity and its terms."""
    return decompose(z, fld.mu[index], fld.logvar[index], fld.N, unit.estimator, field=fld, index=index,
                     k=unit.k, generator=generator)


@dataclass(frozen=True)
class FieldUnit(Unit):
    r"""What the two kinds of unit on a posterior field share: their cells, their field and its reference.

    ``N`` and ``D`` are the built field's actual sizes, so the unit key can be recomputed from a CSV
    row (resume) without rebuilding anything; ``k`` is None where it does not apply.
    """

    scenario: str
    N: int
    D: int
    separation: float | None
    scenario_seed: int
    estimator: str
    batch_size: int
    k: int | None
    quantities: tuple[str, ...]
    replicates: int
    dtype: str
    seed: int

    @property
    def field_id(self) -> tuple:
        return (self.scenario, self.separation)

    def cell_columns(self) -> dict:
        return {"scenario": self.scenario, "N": int(self.N), "D": int(self.D), "separation": self.separation,
                "scenario_seed": int(self.scenario_seed), "estimator": self.estimator,
                "batch_size": int(self.batch_size), "k": int(self.k or 0), "dtype": self.dtype}

    def reference(self, plan, cache, progress=None) -> dict:
        fid = self.field_id
        return compute_reference(plan.fields[fid], plan.reference_settings[fid], cache, progress=progress)

    def _collect(self, replicate, interval, *, warm_up: bool) -> Measurement:
        r"""Run ``replicate(r) -> (out, seconds)`` for r < R (after one discarded warm-up call if ``warm_up``:
        first calls pay for allocation and dispatch) and gather each quantity's estimates, the 95% intervals
        ``interval(out, q, estimate) -> (lo, hi) | None`` and the median call time."""
        R = self.replicates
        est = {q: np.empty(R) for q in self.quantities}
        lo = {q: np.full(R, np.nan) for q in self.quantities}
        hi = {q: np.full(R, np.nan) for q in self.quantities}
        times = []
        with torch.no_grad():
            if warm_up:
                replicate(0)
            for r in range(R):
                out, dt = replicate(r)
                times.append(dt)
                for q in self.quantities:
                    est[q][r] = float(out[q])
                    bounds = interval(out, q, est[q][r])
                    if bounds is not None:
                        lo[q][r], hi[q][r] = bounds
        return Measurement(est, statistics.median(times), lo, hi)


@dataclass(frozen=True)
class AggregateUnit(FieldUnit):
    r"""An estimator of the aggregate-posterior quantities on one field, at one batch size (and k)."""

    @property
    def info(self):
        return ESTIMATORS[self.estimator]

    def info_columns(self, quantity: str) -> dict:
        info = self.info
        out = {"family": info.family, "published_variant": bool(info.published_variant)}
        out.update(theory_columns(quantity, self.N, self.D, self.batch_size, unbiased_inside=bool(info.unbiased_inside),
                                  estimator=self.estimator, mi_bound=info.mi_bound))
        return out

    def measure(self, plan) -> Measurement:
        r"""R replicate estimates, 95% intervals (mean of the terms +- 1.96 se) and call times."""
        dtype = getattr(torch, self.dtype)
        fld = plan.fields[self.field_id].to(dtype)
        B = self.batch_size

        def replicate(r: int):
            g = _generator(self.batch_seed(r))  # the same batches for every estimator
            index = torch.randperm(fld.N, generator=g)[:B]
            z = fld.sample(index, generator=g)
            g_est = _generator(self.estimator_seed(r))
            t0 = time.perf_counter()
            out = _decompose_call(fld, index, z, self, g_est)
            return out, time.perf_counter() - t0

        def interval(out, q, _estimate):
            terms = out.get(f"{q}_terms")
            if terms is None or terms.numel() <= 1:
                return None
            t = terms.detach().to(torch.float64)
            half = Z95 * float(t.std()) / math.sqrt(t.numel())
            m = float(t.mean())
            return m - half, m + half

        return self._collect(replicate, interval, warm_up=True)


@dataclass(frozen=True)
class DirectUnit(FieldUnit):
    r"""A direct estimator (``estimators.direct.DIRECT_ESTIMATORS``) on one field.

    ``batch_size`` is the batch the estimate uses: the replicate batch a moment estimator is computed on,
    or the density ratio's training batch (per class and step); ``k`` holds the density ratio's training
    steps (None for the others). ``quantities`` are the estimator's own.
    """

    @property
    def info(self):
        return DIRECT_ESTIMATORS[self.estimator]

    def info_columns(self, quantity: str) -> dict:
        out = {"family": self.info.family, "published_variant": False}
        out.update(theory_columns(quantity, self.N, self.D, self.batch_size, unbiased_inside=False,
                                  estimator=self.estimator))
        out["mws_offset"] = math.nan  # a constant of the minibatch estimators, not of these
        return out

    def measure(self, plan) -> Measurement:
        r"""R replicate estimates and call times; the density ratio's interval is its logit mean +- 1.96 se
        over its evaluation samples (the training's noise is not in it, so its coverage shows that)."""
        dtype = getattr(torch, self.dtype)
        fld = plan.fields[self.field_id].to(dtype)
        info = self.info

        def replicate(r: int):
            if info.reads_field:
                mu, logvar = fld.mu, fld.logvar
            else:
                g = _generator(self.batch_seed(r))  # the aggregate units' batches
                index = torch.randperm(fld.N, generator=g)[:self.batch_size]
                mu, logvar = fld.mu[index], fld.logvar[index]
            t0 = time.perf_counter()
            out = info.implementation(mu, logvar, seed=self.estimator_seed(r) % 2**62, batch_size=self.batch_size,
                                      steps=self.k)
            return out, time.perf_counter() - t0

        def interval(out, q, estimate):
            if f"{q}_se" not in out:
                return None
            half = Z95 * float(out[f"{q}_se"])
            return estimate - half, estimate + half

        # warm-up for the moments only: the density ratio's calls take seconds and need none
        return self._collect(replicate, interval, warm_up=not info.reads_field)


@dataclass(frozen=True)
class LogPxUnit(Unit):
    r"""An estimator of log p(x) on one task (``estimators.log_px.LOG_PX_TASKS``) with k samples.

    In the CSV: scenario = the task, N = 1 (one data point per estimate), D = the latent dimension,
    batch_size 0, no separation, scenario_seed 0.
    """

    task: str
    latent_dim: int
    estimator: str
    k: int
    replicates: int
    dtype: str
    seed: int

    @property
    def quantities(self) -> tuple[str, ...]:
        return (LOG_PX,)

    @property
    def field_id(self) -> tuple:
        return (LOG_PX, self.task)

    def cell_columns(self) -> dict:
        return {"scenario": self.task, "N": 1, "D": int(self.latent_dim), "separation": None, "scenario_seed": 0,
                "estimator": self.estimator, "batch_size": 0, "k": int(self.k), "dtype": self.dtype}

    def info_columns(self, quantity: str) -> dict:
        out = {"family": "iwae", "published_variant": False}
        out.update(theory_columns(quantity, 1, self.latent_dim, None, unbiased_inside=False, estimator=self.estimator))
        return out

    def reference(self, plan, cache, progress=None) -> dict:
        ref = log_px.log_px_reference(self.task)  # closed form: instant
        return {LOG_PX: {"value": float(ref["value"]), "se": float(ref["se"]), "method": ref["method"]}}

    def measure(self, plan) -> Measurement:
        r"""R estimates in :data:`TIMED_CHUNKS` timed calls; chunk c draws from the unit's batch seed
        (not the estimator's), so every estimator of the task sees the same draws."""
        task = log_px.LOG_PX_TASKS[self.task]
        dtype = getattr(torch, self.dtype)
        R = self.replicates
        chunks = [len(c) for c in np.array_split(np.arange(R), min(TIMED_CHUNKS, R)) if len(c)]
        values, times = [], []
        with torch.no_grad():
            log_px.sample_log_px_estimates(task, self.estimator, self.k, chunks[0], _generator(0), dtype)  # warm-up
            for c, size in enumerate(chunks):
                g = _generator(self.batch_seed(c))
                t0 = time.perf_counter()
                out = log_px.sample_log_px_estimates(task, self.estimator, self.k, size, g, dtype)
                times.append((time.perf_counter() - t0) / size)
                values.append(np.asarray(torch.as_tensor(out).detach().to(torch.float64).reshape(-1)))
        predicted = float(log_px.predicted_bias(task, self.estimator, self.k))
        return Measurement({LOG_PX: np.concatenate(values)}, statistics.median(times),
                           columns={"predicted_bias": predicted})
