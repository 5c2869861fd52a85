"""How the reports write counts, shared by the text and HTML renderers so both read the same."""

from __future__ import annotations


def count(v: int) -> str:
    """``1234567`` -> ``1,234,567``; zero as ``-`` so empty columns recede."""
    return f"{v:,}" if v else "-"


def human(v: float) -> str:
    """Three significant digits with a decimal prefix: ``62378344`` -> ``62.4M``."""
    for unit in ("", "K", "M", "G", "T"):
        if abs(v) < 1000:
            return f"{v:.3g}{unit}"
        v /= 1000
    return f"{v:.3g}P"
