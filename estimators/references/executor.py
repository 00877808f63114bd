r"""Where the references' query chunks are evaluated: here, in order (the default), or wherever an executor says.

An executor is any object with ``map(func, items, shared) -> list``: ``[func(item, *shared) for item in
items]``, results in item order. ``func`` is a module-level (picklable) function, ``items`` a list of
query-chunk tensors and ``shared`` a tuple of objects identical for every item (a prepared mixture), so an
executor may run the calls in other processes or on other machines. The Monte Carlo reference
(:func:`estimators.references.monte_carlo.neg_entropy_mc`) fixes its chunks and prepares its mixture before
handing anything over, so its numbers do not depend on the executor. An optional ``workers`` attribute says
how many chunks to hand over at once (1 when absent).
"""
from __future__ import annotations

from typing import Callable, Sequence

__all__ = ["SerialExecutor", "SERIAL", "check_executor"]


class SerialExecutor:
    r"""Runs every call here, in order: the default executor."""

    workers = 1

    def map(self, func: Callable, items: Sequence, shared: tuple = ()) -> list:
        r"""``[func(item, *shared) for item in items]``."""
        return [func(item, *shared) for item in items]


SERIAL = SerialExecutor()


def check_executor(executor):
    r"""``executor`` itself (:data:`SERIAL` for None) if it has a callable ``map``; ValueError otherwise."""
    if executor is None:
        return SERIAL
    if not callable(getattr(executor, "map", None)):
        raise ValueError(f"executor must have a method map(func, items, shared) -> list, got {type(executor).__name__}")
    return executor
