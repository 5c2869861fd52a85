"""safe_text: names that would steer the terminal print as visible escapes."""

from __future__ import annotations

import os

import pytest

from cnnlab.text import safe_text


@pytest.mark.parametrize("raw,shown", [
    ("evil\ncnnlab: error: FAKE MESSAGE.png", "evil\\ncnnlab: error: FAKE MESSAGE.png"),
    ("a\rb\tc", "a\\rb\\tc"),
    ("\x1b[2Jcleared", "\\x1b[2Jcleared"),               # ANSI clear screen
    ("\x1b]0;title\x07x", "\\x1b]0;title\\x07x"),       # OSC set title, ended by BEL
    ("nul\x00del\x7f", "nul\\x00del\\x7f"),
    ("\x9b31mred", "\\x9b31mred"),                       # C1 CSI, the one-byte ANSI introducer
    ("\x85next line", "\\x85next line"),                 # C1 NEL
    ("abc\u202egnp.exe", "abc\\u202egnp.exe"),           # right-to-left override
    ("line\u2028sep", "line\\u2028sep"),
])
def test_control_characters_become_visible_escapes(raw: str, shown: str) -> None:
    assert safe_text(raw) == shown
    assert "\n" not in safe_text(raw) and "\x1b" not in safe_text(raw)


@pytest.mark.parametrize("text", ["plain.png", "Überschrift ñ 中文 🐈.jpg", "C:\\data\\cat.png", "a b", ""])
def test_printable_text_is_unchanged(text: str) -> None:
    assert safe_text(text) == text


def test_undecodable_bytes_in_a_file_name_show_as_their_byte_and_print() -> None:
    name = os.fsdecode(b"cat\xff\xfe.png")  # a non-UTF-8 name as the OS hands it to Python
    assert safe_text(name) == "cat\\xff\\xfe.png"
    safe_text(name).encode("utf-8")  # a lone surrogate would raise UnicodeEncodeError here


def test_every_c0_c1_and_del_character_is_escaped() -> None:
    controls = [chr(c) for c in (*range(0x20), *range(0x7F, 0xA0))]
    out = safe_text("".join(controls))
    assert out.isprintable() and out.isascii()
    assert out.count("\\") == len(controls)
