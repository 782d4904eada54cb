"""The hook's local control channel: a Unix socket, mode 600 in a folder of mode 700 in the user's state
folder, one JSON object a line each way. The guests' gates (pairing/gate.py) and the commands (`pairing who`,
`kick`, `watch`, `drive`, `allow`, `deny`: control_cli.py) talk to the running hook through it.

Only the hook's own user is served: the folder's mode keeps others out, and each connection's peer is
checked by the kernel's word (SO_PEERCRED on Linux, LOCAL_PEERCRED on macOS), which root does not bypass.
What a request means is the handler's (room.Room); this is the transport only.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import select
import socket
import struct
import sys
import threading
from pathlib import Path
from typing import Callable

from .own_sshd import private_folder, state_base

Reply = Callable[[dict], None]
Handler = Callable[[dict, int, Reply, Callable[[], bool]], None]  # (request, the peer's PID, reply, gone)
MAX_REQUEST = 4096
UNIX_PATH_MAX = 104  # macOS's sun_path; Linux's is 108


def control_folder() -> Path:
    return state_base() / "control"


def socket_path(locked: Path) -> Path:
    """One per hook: per what its lock is on (the own sshd's folder, or --authorized-keys: lock.SingleHook).
    The commands find it by asking each socket here which tmux session it serves (control_cli.find_hook)."""
    digest = hashlib.sha256(os.path.realpath(locked).encode("utf-8", "surrogateescape")).hexdigest()[:16]
    return control_folder() / f"hook-{digest}.sock"


class ControlError(RuntimeError):
    pass


def peer(sock: socket.socket) -> tuple[int, int]:
    """(pid, uid) of the process at the other end, as the kernel says."""
    if sys.platform.startswith("linux"):
        pid, uid, _ = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
        return pid, uid
    # macOS (untested here): LOCAL_PEERCRED gives a struct xucred (version, uid, ...), LOCAL_PEERPID the pid.
    SOL_LOCAL, LOCAL_PEERCRED, LOCAL_PEERPID = 0, 0x001, 0x002
    _, uid = struct.unpack("Ii", sock.getsockopt(SOL_LOCAL, LOCAL_PEERCRED, 76)[:8])
    (pid,) = struct.unpack("i", sock.getsockopt(SOL_LOCAL, LOCAL_PEERPID, 4))
    return pid, uid


class ControlServer:
    """Listens until close(); each connection on a thread of its own (a gate may wait a minute for consent)."""

    def __init__(self, path: Path, handler: Handler, refused: Callable[[int], None]) -> None:
        """refused(uid): told when another user's process connected (and was sent away)."""
        self.path, self.handler, self.refused = path, handler, refused
        if len(os.fsencode(path)) >= UNIX_PATH_MAX:
            raise ControlError(f"the control socket's path {path} is too long for a Unix socket; "
                               "set XDG_STATE_HOME to a shorter folder")
        private_folder(path.parent).chmod(0o700)  # an existing one too: the socket's first guard
        if path.exists():
            try:
                ask(path, {"op": "hello"}, timeout=2)
            except ControlError:
                path.unlink()  # a killed hook's
            else:
                raise ControlError(f"another pairing hook answers on its control socket {path}; stop it first")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)  # born mode 600: no moment with a wider one
        try:
            self.sock.bind(str(path))
        finally:
            os.umask(old)
        self.sock.listen(16)
        self.thread = threading.Thread(target=self._accept, name="pairing-control", daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._serve, args=(conn,), name="pairing-control-peer", daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            try:
                pid, uid = peer(conn)
                conn.settimeout(5)
                line = conn.makefile("rb").readline(MAX_REQUEST)  # read first: unread data would close with a reset
                conn.settimeout(None)
                if uid != os.geteuid():
                    conn.sendall(_line({"error": f"refused: uid {uid} is not the hook's user"}))
                    self.refused(uid)
                    return
                request = json.loads(line)
                if not isinstance(request, dict):
                    raise ValueError("not an object")
                self.handler(request, pid, lambda answer: conn.sendall(_line(answer)), lambda: _gone(conn))
            except (OSError, ValueError):
                return  # a peer that went away or spoke nonsense: nothing to answer

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()
        with contextlib.suppress(OSError):
            self.path.unlink()
        with contextlib.suppress(OSError):
            self.path.parent.rmdir()  # if no other hook's socket is in it: nothing left behind


def _gone(conn: socket.socket) -> bool:
    """Whether the peer hung up (a waiting guest who gave up): readable, yet nothing to read."""
    try:
        return bool(select.select([conn], [], [], 0)[0]) and conn.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


def _line(answer: dict) -> bytes:
    return json.dumps(answer).encode() + b"\n"


def ask(path: Path, request: dict, timeout: float = 10) -> dict:
    """One request to a running hook, its one answer. ControlError when none answers there."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
            sock.sendall(_line(request))
            line = sock.makefile("rb").readline(1 << 20)
        except OSError as exc:
            raise ControlError(str(exc)) from None
    try:
        answer = json.loads(line)
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        raise ControlError("the hook closed the connection without an answer")
    return answer
