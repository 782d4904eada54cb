"""The one check every renderer makes: no character a terminal, a parser or a line split acts on.

Documents pairing writes (authorized_keys lines, ssh configs, known_hosts lines, command
strings) are rendered from validated values only; each renderer also calls printable() on what
it emits, so a caller that skipped validation still cannot smuggle in a second line.
"""

from __future__ import annotations

import unicodedata

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


def shown(text: str) -> str:
    """Text from outside (a file, a link's target, a peer's words) as a message may show it: each character
    a terminal would act on (unprintable()'s) as ?."""
    return "".join("?" if unprintable(c) is not None else c for c in text)
