r"""The names a user can give the commands, for the ``--help`` epilogs of ``bench`` and ``exact``."""
from __future__ import annotations

import textwrap

WIDTH = 100


def paragraph(text: str) -> str:
    r"""``text`` wrapped to the help's width (a raw-description parser does not wrap it)."""
    return textwrap.fill(text, WIDTH - 2, break_on_hyphens=False)


def _wrapped(title: str, names) -> list[str]:
    text = ", ".join(names) if names else "(none)"
    return [title] + textwrap.wrap(text, WIDTH, initial_indent="  ", subsequent_indent="  ", break_on_hyphens=False)


def _estimators_by_family() -> list[str]:
    from ..bench.plan import known_names
    from ..log_qz import ESTIMATORS

    lines = []
    names = known_names()["estimators"]
    for family in dict.fromkeys(ESTIMATORS[n].family for n in names):
        members = [n + ("*" if ESTIMATORS[n].published_variant else "")
                   for n in names if ESTIMATORS[n].family == family]
        lines += textwrap.wrap(f"{family}: " + ", ".join(members), WIDTH, initial_indent="  ",
                               subsequent_indent="    ", break_on_hyphens=False)
    return lines


def scenario_lines() -> list[str]:
    from ..bench.plan import known_names

    return _wrapped("scenarios (built-in fields of posteriors; size --N, --D, knob --separation):",
                    known_names()["scenarios"])


def estimator_lines() -> list[str]:
    return (["estimators (--estimators) of mi, kl_agg, tc, dimwise_kl, by family (*: a published variant):"]
            + _estimators_by_family())


def bench_names() -> str:
    r"""Every name ``bench`` takes: scenarios, log p(x) tasks, estimators of both kinds, quantities."""
    from ..bench.plan import known_names

    known = known_names()
    lines = scenario_lines()
    lines += _wrapped("log p(x) tasks (--scenarios; the quantity log_px):", known["tasks"])
    lines += estimator_lines()
    lines += _wrapped("direct estimators (--estimators; not through log q(z): moment bounds, density ratio):",
                      known["direct_estimators"])
    lines += _wrapped("log p(x) estimators (--estimators; k from --k):", known["log_px_estimators"])
    lines += _wrapped("quantities (--quantities):", known["quantities"])
    return "\n".join(lines)


def exact_names() -> str:
    r"""The scenario names FIELD may be, and the estimators ``bench`` measures against these references."""
    lines = scenario_lines()
    lines += ["estimators measured against these references by `bench --estimators NAME ...`:"]
    lines += _estimators_by_family()
    return "\n".join(lines)
