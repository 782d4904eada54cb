"""The own sshd's log, capped: sshd writes to a pipe (`-e`: its stderr), a thread of the hook's writes the file.

At LogLevel VERBOSE every connection is a few lines, and a flood of them grew the file without bound (611 KB
in one test). Here sshd.log never passes CAP bytes: when the next piece would take it past, the file becomes
sshd.log.1 (replacing the one before) and a new one begins, so at most 2 x CAP is kept, the newest lines
always. sshd never holds the file, so nothing it does can grow it behind the hook's back.

And what its lines say: which keys logged in, why it did not start, and the connections it turned away before
login (MaxStartups, PerSourceMaxStartups), which the host is told in one line, at most once per REPORT_EVERY.
"""

from __future__ import annotations

import collections
import ipaddress
import os
import re
import select
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable

CAP = 256 * 1024  # bytes in sshd.log; one more file of as much in sshd.log.1
CHUNK = 16 * 1024
KEEP_LINES = 200  # this run's last lines, for the one line that says why sshd did not start
REPORT_EVERY = 60.0  # seconds between two lines about connections turned away
_DROPPED = re.compile(r"drop connection #\d+ from \[([^\]]+)\]:\d+ on \S+ past MaxStartups")
_ACCEPTED = re.compile(r"Accepted publickey for (\S+) from \S+ port \d+ ssh2: \S+ (SHA256:[A-Za-z0-9+/]{43})")


class SshdLog:
    """One sshd run's log: start() gives the fd its stderr goes to; the file is written until sshd and every
    process of it have ended (the pipe's end)."""

    def __init__(self, path: Path, warn: Callable[[str], None] | None = None) -> None:
        """warn: told of connections sshd turned away (None: not told)."""
        self.path, self.previous = path, path.with_name(path.name + ".1")
        self.lines: collections.deque[str] = collections.deque(maxlen=KEEP_LINES)
        self.thread: threading.Thread | None = None
        self.turned_away = TurnedAway(warn) if warn else None

    def start(self) -> int:
        """The pipe's write end, for the child's stdout and stderr; the caller closes it once the child has it."""
        read, write = os.pipe()
        self.thread = threading.Thread(target=self._copy, args=(read,), name="pairing-sshd-log", daemon=True)
        self.thread.start()
        return write

    def text(self, wait: float = 2.0) -> str:
        """What this run logged (its last lines), once the pipe has ended or `wait` s have passed."""
        if self.thread is not None:
            self.thread.join(wait)
        return "\n".join(self.lines)

    def _copy(self, read: int) -> None:
        partial, out = b"", None
        try:
            while True:  # read to the end whatever happens to the file: sshd must never block
                if not select.select([read], [], [], self.turned_away and self.turned_away.due())[0]:
                    self.turned_away.say()  # due, and no line came meanwhile
                    continue
                chunk = os.read(read, CHUNK)
                if not chunk:
                    break
                partial += chunk
                *whole, partial = partial.split(b"\n")
                for line in whole:
                    self.lines.append(line.decode(errors="replace"))
                    if self.turned_away:
                        self.turned_away.heard(self.lines[-1])
                out = self._write(out, chunk)
                if self.turned_away and self.turned_away.due() == 0:
                    self.turned_away.say()
        finally:
            if partial:
                self.lines.append(partial.decode(errors="replace"))
            os.close(read)
            if out is not None:
                out.close()

    def _write(self, out, chunk: bytes):
        """Append `chunk`, first moving a file it would take past CAP aside; the file, or None if it cannot be."""
        try:
            if out is None:
                out = os.fdopen(os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600), "ab")
                out.seek(0, os.SEEK_END)
            if out.tell() + len(chunk) > CAP:
                out.close()
                os.replace(self.path, self.previous)
                out = os.fdopen(os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600), "ab")
            out.write(chunk)
            out.flush()
            return out
        except OSError:  # e.g. a full disk: this piece is lost, the next is tried again
            if out is not None:
                out.close()
            return None


class TurnedAway:
    """Connections sshd dropped before login, by address; said in one line, the first at once."""

    def __init__(self, warn: Callable[[str], None], every: float = REPORT_EVERY) -> None:
        self.warn, self.every = warn, every
        self.counts: collections.Counter[str] = collections.Counter()
        self.said_at = -every

    def heard(self, line: str) -> None:
        dropped = _DROPPED.search(line)
        if dropped:
            try:  # sshd's words: only an address parsed as one reaches the terminal
                self.counts[str(ipaddress.ip_address(dropped.group(1)))] += 1
            except ValueError:
                self.counts["an address"] += 1

    def due(self) -> float | None:
        """Seconds until a line is due; None: nothing to say."""
        return max(0.0, self.said_at + self.every - time.monotonic()) if self.counts else None

    def say(self) -> None:
        if self.due() != 0:
            return
        try:
            self._warn_now()
        except Exception:  # on the thread that drains sshd's pipe, which nothing may end: this line is lost
            pass
        finally:
            self.counts.clear()
            self.said_at = time.monotonic()

    def _warn_now(self) -> None:
        total, most = sum(self.counts.values()), [address for address, _ in self.counts.most_common(3)]
        others = len(self.counts) - len(most)
        self.warn(f"your sshd turned away {total} connection{'s' if total > 1 else ''} that had not logged in: too "
                  f"many at once from {', '.join(most)}{f' and {others} more' if others else ''} (its MaxStartups "
                  "limits, as on the relay)")


def accepted_fingerprints(log: str, user: str | None = None) -> list[str]:
    """The key fingerprint (SHA256:...) of each publickey login in an sshd log (LogLevel VERBOSE), in order."""
    return [m.group(2) for m in _ACCEPTED.finditer(log) if user is None or m.group(1) == user]


def why_it_stopped(log: str) -> str:
    """The line of sshd's log that says why it stopped: a failed bind's own words (the address or port),
    which its last line ("Cannot bind any address.") leaves out; else that last line."""
    lines = log.strip().splitlines() or ["it logged nothing"]
    return next((line for line in lines if "Bind to port" in line), lines[-1])


def too_old(sshd: Path, said: str) -> str:
    if "Bad configuration option" not in said and "Unsupported option" not in said:
        return ""
    version = subprocess.run([str(sshd), "-V"], capture_output=True, text=True).stderr.split(",")[0].strip()
    return f"; {sshd} is {version or 'an unknown version'}, too old for it: pairing host needs a newer OpenSSH (9.2 and 10.0 work)"
