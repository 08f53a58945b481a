"""Checks on the free text people type (names, descriptions): pure, no I/O.

A name is one line of printable text; a description may hold newlines and tabs. NUL and the other
control characters (C0, DEL, C1) are refused with a clear InvalidInput — PostgreSQL refuses NUL in
text with a raw driver error, and control characters would drive a terminal that prints them.
"""
from __future__ import annotations

from backend.core.errors import InvalidInput

_ALLOWED_IN_MULTILINE = "\n\t\r"


def control_characters(text: str, *, multiline: bool = False) -> list[str]:
    """The control characters in ``text`` (as ``\\x00``-style escapes, each once, in order)."""
    found: list[str] = []
    for ch in text:
        code = ord(ch)
        if (code < 0x20 or 0x7f <= code < 0xa0) and not (multiline and ch in _ALLOWED_IN_MULTILINE):
            shown = f"\\x{code:02x}"
            if shown not in found:
                found.append(shown)
    return found


def check_text(text: str, what: str, *, multiline: bool = False, code: str = "invalid_name") -> str:
    """``text`` unchanged, or InvalidInput (``code``) naming the control characters it holds.
    ``what`` is how the message names the field ("dataset name")."""
    bad = control_characters(text, multiline=multiline)
    if bad:
        allowed = " (newlines and tabs are fine)" if multiline else ""
        raise InvalidInput(f"{what} contains control characters ({', '.join(bad)}); use printable "
                           f"text{allowed}", code=code)
    return text
