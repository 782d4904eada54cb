"""With --ask, the host's yes or no in the hook's own terminal: each line typed there is handed on
(consent.Consent.answer: y or yes lets in the guest that terminal's bottom line asks about, anything else,
Enter too, turns that one away).

The terminal is read only while the hook runs (select with a timeout, not a blocking read), so that
`pairing up`'s question after the hook stops gets its own answer.
"""

from __future__ import annotations

import os
import select
import threading
from typing import TextIO


class TerminalAnswers:
    """Lines typed on the hook's terminal, handed to answer(line) until stop()."""

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
                self.answer(line.decode(errors="replace"))

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(1)


def on_terminal(stream: TextIO, answer) -> TerminalAnswers | None:
    """Answers from `stream` if it is a terminal (a hook run by a service or a test has none)."""
    try:
        return TerminalAnswers(stream, answer) if stream.isatty() else None
    except (OSError, ValueError):
        return None

