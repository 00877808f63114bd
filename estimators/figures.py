r"""Figures that reproduce byte for byte: matplotlib on the Agg backend, PNGs without a timestamp or version.

The report's plots and the gradient study's plot are committed; a figure is rewritten only when its
bytes change (:func:`estimators.files.write_if_changed`), so regenerating a report leaves unchanged
plots alone.
"""
from __future__ import annotations

import io
from pathlib import Path

from .files import write_if_changed

__all__ = ["pyplot", "png_bytes", "save_png", "PNG_METADATA"]

PNG_METADATA = {"Software": None}  # no matplotlib version: the bytes depend on the figure only


def pyplot():
    r"""``matplotlib.pyplot`` on the Agg backend (imported on first use: plotting is optional work)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def png_bytes(fig, dpi: int) -> bytes:
    r"""The figure as PNG bytes: fixed resolution and metadata, no timestamp."""
    buf = io.BytesIO()
    fig.savefig(buf, dpi=dpi, format="png", metadata=PNG_METADATA)
    return buf.getvalue()


def save_png(fig, path: Path, dpi: int) -> bool:
    r"""Close ``fig`` and write it to ``path`` unless the file already holds the same bytes; whether it wrote."""
    try:
        data = png_bytes(fig, dpi)
    finally:
        pyplot().close(fig)
    return write_if_changed(path, data)
