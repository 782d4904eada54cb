"""The own sshd's log, capped: sshd writes to a pipe (`-e`: its stderr), a thread of the hook's writes the file.

At LogLevel VERBOSE every connection is a few lines, and a flood of them grew the file without bound (611 KB
in one test). Here sshd.log never passes CAP bytes: when the next piece would take it past, the file becomes
sshd.log.1 (replacing the one before) and a new one begins, so at most 2 x CAP is kept, the newest lines
always. sshd never holds the file, so nothing it does can grow it behind the hook's back.

And what its lines say: which keys logged in, why it did not start.
"""

from __future__ import annotations

import collections
import os
import re
import subprocess
import threading
from pathlib import Path

CAP = 256 * 1024  # bytes in sshd.log; one more file of as much in sshd.log.1
CHUNK = 16 * 1024
KEEP_LINES = 200  # this run's last lines, for the one line that says why sshd did not start
_ACCEPTED = re.compile(r"Accepted publickey for (\S+) from \S+ port \d+ ssh2: \S+ (SHA256:[A-Za-z0-9+/]{43})")


class SshdLog:
    """One sshd run's log: start() gives the fd its stderr goes to; the file is written until sshd and every
    process of it have ended (the pipe's end)."""

    def __init__(self, path: Path) -> None:
        self.path, self.previous = path, path.with_name(path.name + ".1")
        self.lines: collections.deque[str] = collections.deque(maxlen=KEEP_LINES)
        self.thread: threading.Thread | None = None

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
            while chunk := os.read(read, CHUNK):  # read to the end whatever happens to the file: sshd must never block
                partial += chunk
                *whole, partial = partial.split(b"\n")
                self.lines.extend(line.decode(errors="replace") for line in whole)
                out = self._write(out, chunk)
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
