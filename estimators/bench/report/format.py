r"""Number and table formatting shared by the Markdown summary and the terminal table."""
from __future__ import annotations

import math

import numpy as np

__all__ = ["fmt", "md_table"]


def fmt(x: float, se: float | None = None) -> str:
    r"""``x ± se`` with the digits the se supports (at most 6), or ``x`` to 4 significant digits."""
    if x is None or not np.isfinite(x):
        return ""
    if se is not None and np.isfinite(se) and se > 0:
        digits = max(0, min(6, 1 - int(math.floor(math.log10(se)))))
        return f"{x:.{digits}f} ± {se:.{digits}f}"
    return f"{x:.4g}"


def md_table(header: list[str], rows: list[list[str]]) -> str:
    r"""A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)
