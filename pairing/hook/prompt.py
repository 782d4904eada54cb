"""With --ask, the host's yes or no where they already look: a line typed in the hook's own terminal
(y lets the longest-waiting guest in; anything else, Enter too, turns them away), and a tmux prompt
(confirm-before) on the host's own tmux clients, whose yes sets a server option the room reads.

The terminal is read only while the hook runs (select with a timeout, not a blocking read), so that
`pairing up`'s question after the hook stops gets its own answer.
"""

from __future__ import annotations

import os
import select
import threading
from typing import TextIO


class TerminalAnswers:
    """Lines typed on the hook's terminal, handed to answer(yes) until stop()."""

    def __init__(self, stream: TextIO, answer) -> None:
        self.fd, self.answer = stream.fileno(), answer
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._read, name="pairing-prompt", daemon=True)
        self.thread.start()

    def _read(self) -> None:
        pending = b""
        while not self.stopped.is_set():
            try:
                if not select.select([self.fd], [], [], 0.2)[0]:
                    continue
                chunk = os.read(self.fd, 1024)
            except OSError:
                return
            if not chunk:
                return  # the terminal went away
            pending += chunk
            while b"\n" in pending:
                line, _, pending = pending.partition(b"\n")
                self.answer(line.strip().lower() in (b"y", b"yes"))

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(1)


def on_terminal(stream: TextIO, answer) -> TerminalAnswers | None:
    """Answers from `stream` if it is a terminal (a hook run by a service or a test has none)."""
    try:
        return TerminalAnswers(stream, answer) if stream.isatty() else None
    except (OSError, ValueError):
        return None


def allow_option(name: str) -> str:
    """The tmux server option the host's yes in a tmux prompt sets (a name is [a-z0-9._-]: a valid option)."""
    return f"@pairing-allow-{name}"
