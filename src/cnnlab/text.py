"""Text that is safe to print: names from files, folders and specs cannot steer the terminal.

A file name may hold a newline (to forge a line of output), ``ESC [2J`` (to clear the screen),
``ESC ]0;...BEL`` (to set the window title), right-to-left overrides (to reverse what is read) or bytes
that are not UTF-8 (which make ``print`` raise). :func:`safe_text` turns each such character into a
visible escape, so what is printed is what the name holds, one line, nothing executed. Standard library
only, so any layer may import it.
"""

from __future__ import annotations

import unicodedata

__all__ = ["safe_text"]

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(ch: str) -> str:
    code = ord(ch)
    if ch in _NAMED:
        return _NAMED[ch]
    if unicodedata.category(ch) == "Zs":  # a no-break or other wide space reads as a space
        return " "
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8, kept by os.fsdecode as a lone surrogate
        return f"\\x{code - 0xDC00:02x}"
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}"


def safe_text(s: object) -> str:
    """``str(s)`` with every character that is not printable written as a visible escape: control
    characters (C0, DEL, C1, so every ANSI escape sequence's introducer) as ``\\n`` or ``\\xNN``,
    format characters (bidi controls, zero-width joiners), line and paragraph separators and
    undecodable bytes as ``\\uNNNN`` or ``\\xNN``; other spaces become a plain space.

    Printable text, including non-ASCII letters and emoji, is kept as it is.
    """
    text = str(s)
    if text.isprintable():  # the common case: nothing to escape
        return text
    return "".join(c if c.isprintable() or c == " " else _escape(c) for c in text)
