"""The one check every renderer makes: no character a terminal, a parser or a line split acts on.

Documents pairing writes (authorized_keys lines, ssh configs, known_hosts lines, command
strings) are rendered from validated values only; each renderer also calls printable() on what
it emits, so a caller that skipped validation still cannot smuggle in a second line.
"""

from __future__ import annotations

import difflib
import unicodedata
from typing import Iterable

# Control characters (C0, DEL, C1: terminals act on them), format characters (U+202E turns
# text around, U+200B and the BOM hide in it), line and paragraph separators (Python splits
# lines on them) and lone surrogates (no encoding can write them).
UNPRINTABLE = ("Cc", "Cf", "Zl", "Zp", "Cs")


class UnsafeText(ValueError):
    """A value holds a character no rendered document may contain."""


def unprintable(text: str) -> str | None:
    """The first character of `text` that no document may hold, or None."""
    return next((c for c in text if unicodedata.category(c) in UNPRINTABLE), None)


def printable(text: str, what: str) -> str:
    """`text` itself, or UnsafeText naming `what` and the character."""
    bad = unprintable(text)
    if bad is not None:
        raise UnsafeText(f"{what} holds the control or format character U+{ord(bad):04X}; refusing to write it")
    return text


def did_you_mean(typed: str, known: Iterable[str]) -> str:
    """` (did you mean NAME?)` for the one of `known` nearest to what was typed (difflib's ratio, case aside),
    else "": for a mistyped command, flag, guest name or region."""
    by_lower = {name.lower(): name for name in known}
    near = difflib.get_close_matches(typed.lower(), list(by_lower), n=1, cutoff=0.6)
    return f" (did you mean {by_lower[near[0]]}?)" if near and by_lower[near[0]] != typed else ""
