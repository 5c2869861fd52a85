"""Text that is safe to print: names from files, folders and specs cannot steer the terminal.

A file name may hold a newline (to forge a line of output), ``ESC [2J`` (to clear the screen),
``ESC ]0;...BEL`` (to set the window title), right-to-left overrides (to reverse what is read) or bytes
that are not UTF-8 (which make ``print`` raise). :func:`safe_text` turns each such character into a
visible escape, so what is printed is what the name holds, one line, nothing executed. Standard library
only, so any layer may import it.
"""

from __future__ import annotations

__all__ = ["safe_text"]

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# Format characters that reorder or isolate text (bidi controls), and the Unicode line/paragraph separators.
_INVISIBLE = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u2028\u2029")


def _escape(ch: str) -> str:
    code = ord(ch)
    if ch in _NAMED:
        return _NAMED[ch]
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8, kept by os.fsdecode as a lone surrogate
        return f"\\x{code - 0xDC00:02x}"
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}"


def _unsafe(ch: str) -> bool:
    code = ord(ch)
    return code < 0x20 or 0x7F <= code <= 0x9F or 0xD800 <= code <= 0xDFFF or ch in _INVISIBLE


def safe_text(s: str) -> str:
    """``s`` with control characters (C0, DEL, C1, so every ANSI escape sequence's introducer), bidi controls,
    line separators and undecodable bytes written as visible ``\\n``, ``\\xNN`` or ``\\uNNNN`` escapes.

    Printable text, including non-ASCII letters and emoji, is kept as it is.
    """
    if s.isprintable():  # no control, format, separator or surrogate character: the common case
        return s
    return "".join(_escape(c) if _unsafe(c) else c for c in s)
