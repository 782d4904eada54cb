"""The one check every renderer makes: no character a terminal, a parser or a line split acts on.

Documents pairing writes (authorized_keys lines, ssh configs, known_hosts lines, command
strings) are rendered from validated values only; each renderer also calls printable() on what
it emits, so a caller that skipped validation still cannot smuggle in a second line.

Text from outside that is only shown (an SSH banner inside an exception, tmux's or ssh's words, a
peer's answer) goes through shown() on its way to a terminal or a log: the console, the CLI's error
lines, doctor's and status's lines. It is escaped there, never refused: the host must still read what
failed.
"""

from __future__ import annotations

import difflib
import logging
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


def shown(text: object) -> str:
    """`text` made safe to show on a terminal or in a log, as one line: each character printable() would
    refuse written as its escape (ESC as \\x1b, U+202E as \\u202e), so an SSH banner, an exception's
    message, tmux's or a peer's words say what they say and do nothing. Idempotent: what it writes holds
    nothing it would escape again. Bytes are read as UTF-8, anything else undecodable escaped too."""
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode("utf-8", "backslashreplace")
    text = str(text)
    if unprintable(text) is None:
        return text
    return "".join(_escape(c) if unicodedata.category(c) in UNPRINTABLE else c for c in text)


def shown_lines(text: object) -> str:
    """shown() for each line of a text whose line breaks (\\n only) are meant: the rest escaped."""
    return "\n".join(shown(line) for line in str(text).split("\n"))


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


# Libraries' logs never reach the terminal: unconfigured, Python's last-resort handler printed paramiko's
# tracebacks to stderr, a server's banner in them raw. What failed is said once, by pairing, through shown().
LIBRARY_LOGGERS = ("paramiko", "sshtunnel", "pairing")  # pairing.selftest: sshtunnel's, in tunnel/loop.py


def quiet_library_logs() -> None:
    """Called first by the CLI: each library's logger gets a handler that drops everything, and stops there."""
    for name in LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        logger.addHandler(logging.NullHandler())
        logger.propagate = False
