"""What a flag's value must be, as argparse types: each refuses in argparse's one line, naming the flag."""

from __future__ import annotations

import argparse

from .settings import _tmux_session
from .sshkeys import shorten
from .text import unprintable


def target(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if (not sep or not host or unprintable(host) is not None or " " in host or host.startswith("-")
            or not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536):
        raise argparse.ArgumentTypeError(f"{shorten(text)!r} is not HOST:PORT, e.g. localhost:22")
    return host, int(port)


def socket_path(text: str) -> str:
    """It goes into the guests' forced command: one printable path."""
    if not text or unprintable(text) is not None or "\\" in text:  # no shell reads a backslash alike (fish)
        raise argparse.ArgumentTypeError(f"{shorten(text)!r} is not a usable path (it holds control or format "
                                         "characters, or a backslash); leave --tmux-socket out (pairing runs a "
                                         "tmux server of its own), or give a socket in a folder only you can write")
    return text


def session_name(text: str) -> str:
    try:
        return _tmux_session(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
