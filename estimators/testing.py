r"""Helpers for users' own test suites.

    def test_my_tc_is_mss():
        estimators.testing.assert_matches(my_loss.tc_terms, "mss")

fails, with the audit's explanation, unless the function computes exactly the named estimator on
every audit fixture (within float32 rounding) and is differentiable.
"""
from __future__ import annotations

from .auditing import audit
from .log_qz import get_estimator

__all__ = ["assert_matches"]


def assert_matches(fn, estimator: str, *, differentiable: bool = True) -> None:
    r"""Assert that ``fn(z, mu, logvar, dataset_size)`` computes ``estimator`` (a registered name).

    Args:
        fn: the function under test (see :func:`estimators.audit`).
        estimator: the registry name it must match, e.g. ``"mss"``.
        differentiable: also require that autograd goes through it (False for a numpy function).

    Raises:
        AssertionError: with the audit's report, saying what the function computes instead.
        ValueError: ``estimator`` is not a registered name; the function cannot be run at all.
    """
    get_estimator(estimator)
    report = audit(fn, check_accuracy=False)
    exact = report.verdict != "unknown" and report.offsets == {} and "float32" not in (report.bug or "")
    matched = exact and estimator in ([report.computes] + report.also_matches)
    if not matched:
        raise AssertionError(f"the function does not compute {estimator!r}:\n{report}")
    if differentiable and report.differentiable is not None:
        raise AssertionError(f"the function computes {estimator!r} but is {report.differentiable}")
