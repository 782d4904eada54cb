"""A guest's OpenSSH client on a terminal the bench owns (a pty), and what it shows."""

from __future__ import annotations

import fcntl
import os
import re
import signal
import struct
import subprocess
import termios
import tty
from pathlib import Path

ROWS, COLUMNS = 24, 80
CONNECT_TIMEOUT = 30.0


class TerminalError(RuntimeError):
    pass


class VisibleText:
    """The printable text of a terminal byte stream, with escape sequences and controls removed.

    tmux draws an echoed key with cursor movements around it; keys are looked
    for in what is left, so a digit or letter inside a sequence never counts.
    A sequence split across reads is held back until it is complete.
    """

    _SEQUENCE = re.compile(
        rb"\x1b(?:\[[0-?]*[ -/]*[@-~]"  # CSI: cursor moves, colours, modes
        rb"|[\]P^_X][^\x07\x1b]*(?:\x07|\x1b\\)"  # OSC, DCS and kin, up to BEL or ST
        rb"|[ -/]*[0-~])"  # two-byte escapes and character set choices
        rb"|[\x00-\x1f\x7f]"
    )
    _UNFINISHED = re.compile(rb"\x1b(?:\[[0-?]*[ -/]*|[\]P^_X][^\x07\x1b]*\x1b?|[ -/]*)\Z")

    def __init__(self) -> None:
        self.pending = b""

    def feed(self, data: bytes) -> bytes:
        data = self.pending + data
        unfinished = self._UNFINISHED.search(data)
        cut = unfinished.start() if unfinished else len(data)
        data, self.pending = data[:cut], data[cut:]
        return self._SEQUENCE.sub(b"", data)


class GuestTerminal:
    """`argv` (an ssh command line) on a pty of ROWS x COLUMNS, read and written by the bench."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self.fd, client_side = os.openpty()
        fcntl.ioctl(client_side, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
        # Raw from the start: before ssh takes the terminal over (raw too), a
        # cooked pty would echo the bench's keys itself.
        tty.setraw(client_side)
        try:
            # Its own session, so stop() reaches the ProxyJump ssh it starts as well.
            self.process = subprocess.Popen(argv, stdin=client_side, stdout=client_side, stderr=client_side,
                                            env=env, start_new_session=True)
        except BaseException:
            os.close(self.fd)
            raise
        finally:
            os.close(client_side)
        self.text = VisibleText()
        self.last = b""  # the latest visible text, for the error if ssh exits

    def read(self) -> bytes:
        """What arrived, as visible text (blocks until something does)."""
        try:
            data = os.read(self.fd, 65536)
        except OSError:  # EIO: ssh has exited and closed the terminal
            data = b""
        if not data:
            raise TerminalError(f"ssh exited ({self.process.wait()}): {self.log_tail()}; "
                                f"its terminal last showed {self.last[-200:]!r}")
        visible = self.text.feed(data)
        self.last = (self.last + visible)[-200:]
        return visible

    def write(self, data: bytes) -> None:
        os.write(self.fd, data)

    def log_tail(self) -> str:
        lines = self.log.read_text(errors="replace").splitlines() if self.log.exists() else []
        return " | ".join(lines[-5:]) or "no log"

    def stop(self) -> None:
        stop_session(self.process)
        os.close(self.fd)


def stop_session(process: subprocess.Popen) -> None:
    """Stop an ssh started in a session of its own, with the ProxyJump ssh it started."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
