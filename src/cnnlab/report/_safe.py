"""Text from files (spec names, metadata, class names, paths) made safe to print.

A name may carry terminal escape sequences (``ESC]0;...BEL`` sets the window title, ``ESC[2J``
clears the screen), a newline that forges a second output line, or rich markup (``[/]``) that
rich would interpret or fail on. Every name printed goes through these helpers.
"""

from __future__ import annotations

import unicodedata

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def safe_text(s: object) -> str:
    """``str(s)`` with control and format characters (C0, C1, DEL, bidi overrides, line
    separators) written as escapes such as ``\\x1b``: one visible line, no terminal effects."""
    text = str(s)
    if text.isprintable():  # the common case: nothing to escape
        return text
    out = []
    for ch in text:
        if ch.isprintable() or ch == " ":
            out.append(ch)
        elif unicodedata.category(ch) in ("Zs",):
            out.append(" ")
        else:
            out.append(_NAMED.get(ch) or (f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}"))
    return "".join(out)


def markup(s: object) -> str:
    """``safe_text`` with rich markup escaped: a name shown literally inside a rich string."""
    from rich.markup import escape

    return escape(safe_text(s))
