"""Strings from the daemon made safe to print on a terminal (pure).

Everything the CLI shows that came from the daemon (job ids, statuses,
labels, ``fail_reason``, error details, event payloads: ultimately the
upstream API or whoever registered the job) goes through :func:`printable`
or, for JSON output, :func:`terminal_json`, so no such string can move the
cursor, clear the screen, set a hyperlink or title, or reorder what is shown.
"""

from __future__ import annotations

import re
from typing import Final

_BIDI_CONTROLS: Final = "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
"""Arabic letter mark, LRM/RLM, the embeddings/overrides and the isolates."""
_LINE_SEPARATORS: Final = "\u2028\u2029"

_UNSAFE: Final = re.compile(f"[\x00-\x1f\x7f-\x9f{_BIDI_CONTROLS}{_LINE_SEPARATORS}]")
"""C0 controls (ESC, BEL, CR, LF, TAB...), DEL, C1 controls (e.g. U+009B CSI,
U+009D OSC), bidi controls and the Unicode line separators."""

_UNSAFE_IN_JSON: Final = re.compile(f"[\x7f-\x9f{_BIDI_CONTROLS}{_LINE_SEPARATORS}]")
"""What JSON allows raw inside a string but a terminal may act on (C0 controls
are always escaped by the JSON encoder)."""


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(value: object) -> str:
    """``str(value)`` with every control character shown as an escape.

    C0 and C1 controls and DEL read ``\\xNN`` (``\\x1b`` for ESC), bidi
    controls and line separators ``\\uNNNN``; everything else, including
    non-ASCII letters, is kept. The result is one line that cannot drive a
    terminal. Markup such as ``[/]`` is not touched: show it with a renderer
    that does not interpret markup (``rich.text.Text``).
    """
    text = value if isinstance(value, str) else str(value)
    if text.isprintable():  # the usual case; every character escaped is unprintable
        return text
    return _UNSAFE.sub(_escape, text)


def terminal_json(encoded: str) -> str:
    """JSON text with DEL, C1, bidi controls and line separators inside its
    strings written as ``\\uNNNN`` escapes.

    Valid JSON in, valid JSON out, decoding to the same value: those characters
    can only occur inside strings, where an escape means the same character.
    """
    if encoded.isascii() and "\x7f" not in encoded:  # the usual case (isascii is O(1))
        return encoded
    return _UNSAFE_IN_JSON.sub(lambda match: f"\\u{ord(match.group()):04x}", encoded)
