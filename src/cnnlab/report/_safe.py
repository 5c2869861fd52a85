"""Names from files (specs, metadata, class names, paths) shown inside rich markup.

A name may carry terminal escape sequences or a newline (:func:`cnnlab.text.safe_text` writes them
as visible escapes) and rich markup such as ``[/]`` that rich would interpret or fail on.
"""

from __future__ import annotations

from ..text import safe_text

__all__ = ["markup", "safe_text"]


def markup(s: object) -> str:
    """``safe_text`` with rich markup escaped: a name shown literally inside a rich string."""
    from rich.markup import escape

    return escape(safe_text(s))
