"""One hook per authorized_keys file, and the record it keeps for `pairing status`.

The lock (SingleHook) is a flock on the real authorized_keys file's folder; the
state record (HookRecord) is a small JSON file beside the user's other state,
written whole, believed only while its pid holds the lock.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..authorized_keys import AuthorizedKeysFile
from ..tunnel import CARRIERS, State
from .preflight import PreflightError


@dataclass
class TunnelStatus:
    """What the status line shows, updated from the tunnel's thread."""

    state: State = State.CONNECTING
    since: float = field(default_factory=time.time)
    ready_once: bool = False


def state_file(authorized_keys: Path) -> Path:
    """Where a running hook says how it is, for `pairing status` and a second run: one per real
    authorized_keys file (a symlink and its target are one file)."""
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    digest = hashlib.sha256(os.path.realpath(authorized_keys).encode("utf-8", "surrogateescape")).hexdigest()[:12]
    return base / "pairing" / f"host-{digest}.json"


@dataclass(frozen=True)
class HookRecord:
    """What a running hook wrote about itself, parsed; believed only while its pid holds the lock."""

    pid: int
    started: float
    command: str  # "host", "up", "down" or "direct": what the user ran
    tunnel: str | None = None
    state: State | None = None  # None: no tunnel state yet
    since: float | None = None

    @classmethod
    def parse(cls, text: str) -> "HookRecord | None":
        try:
            data = json.loads(text)
            record = cls(int(data["pid"]), float(data["started"]), str(data["command"]),
                         data.get("tunnel"), State(data["state"]) if data.get("state") else None,
                         float(data["since"]) if data.get("since") is not None else None)
        except (ValueError, TypeError, KeyError, AttributeError):
            return None
        ok = (record.pid > 0 and record.command in ("host", "up", "down", "direct") and record.tunnel in (None, *CARRIERS)
              and (record.state is None) == (record.since is None))
        return record if ok else None

    def render(self) -> str:
        return json.dumps({"pid": self.pid, "started": self.started, "command": self.command, "tunnel": self.tunnel,
                           "state": self.state.value if self.state else None, "since": self.since})


@dataclass(frozen=True)
class HookStatus:
    """Whether a hook runs for an authorized_keys file, and what it says (when it is surely its word)."""

    running: bool
    pid: int | None = None  # the lock holder's, when the system tells (Linux) or its record is believed
    record: HookRecord | None = None

    def describe(self, real: Path) -> str:
        """The one line a second run refuses with."""
        what = f"`pairing {self.record.command}`" if self.record else "`pairing host`"
        since = f", since {dt.datetime.fromtimestamp(self.record.started):%Y-%m-%d %H:%M:%S}" if self.record else ""
        pid = f" (pid {self.pid}{since})" if self.pid else ""
        stop = f"Ctrl-C in its terminal, or kill {self.pid}" if self.pid else "Ctrl-C in its terminal"
        return f"another {what} is already running for {real}{pid}; stop it first: {stop}"


def publish_state(path: Path, record: HookRecord) -> None:
    """Atomically, so `pairing status` never reads half a file; best effort: only status would miss it."""
    temp = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        temp.write_text(record.render())
        os.replace(temp, path)
    except OSError:
        with contextlib.suppress(OSError):
            temp.unlink()


def read_state(authorized_keys: Path) -> HookStatus:
    """Is a hook running for this file, and what does it say? A record left by a killed hook
    (or not yet rewritten by a new one) is not believed: its pid must be the lock's holder."""
    folder = Path(os.path.realpath(authorized_keys)).parent
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return HookStatus(False)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pass
        else:
            return HookStatus(False)  # (closing fd releases it)
        holder = _lock_holder(os.fstat(fd))
    finally:
        os.close(fd)
    try:
        record = HookRecord.parse(state_file(authorized_keys).read_text())
    except OSError:
        record = None
    if record and not (record.pid == holder if holder else alive(record.pid)):
        record = None
    return HookStatus(True, holder or (record.pid if record else None), record)


def _lock_holder(folder: os.stat_result) -> int | None:
    """The pid holding a flock on this folder, from Linux's /proc/locks; None where it cannot tell."""
    inode = f"{os.major(folder.st_dev):02x}:{os.minor(folder.st_dev):02x}:{folder.st_ino}"
    try:
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return None
    for line in lines:  # "1: FLOCK  ADVISORY  WRITE 1234 fe:00:260072 0 EOF"
        fields = line.split()
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == inode and fields[4].isdigit():
            return int(fields[4])
    return None


def alive(pid: int) -> bool:
    """Whether a process of that pid exists, ours or another uid's (the system sshd's: a PermissionError)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class SingleHook:
    """One hook per authorized_keys file (the real one: through a symlink or not), else they
    would fight over the block. The lock is a flock on the real file's folder, whose inode
    stays while the file is replaced; the kernel drops it when the holder dies, however."""

    def __init__(self, authorized_keys: Path, command: str = "host") -> None:
        real = Path(os.path.realpath(authorized_keys))
        real.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.fd: int | None = os.open(real.parent, os.O_RDONLY)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.release()
            raise PreflightError(read_state(real).describe(real)) from None
        self.state = state_file(real)
        self.started = time.time()
        self.command = command
        # A SIGKILLed holder left these; with the lock ours, none is being written.
        AuthorizedKeysFile(real).clean_leftovers()
        for leftover in self.state.parent.glob(f".{self.state.name}.*"):
            with contextlib.suppress(OSError):
                leftover.unlink()
        self.publish(None, None)

    def publish(self, state: TunnelStatus | None, tunnel: str | None) -> None:
        publish_state(self.state, HookRecord(os.getpid(), self.started, self.command, tunnel,
                                             state.state if state else None, state.since if state else None))

    def release(self) -> None:
        if self.fd is None:
            return
        if hasattr(self, "state"):
            with contextlib.suppress(OSError):
                self.state.unlink()
        os.close(self.fd)
        self.fd = None
