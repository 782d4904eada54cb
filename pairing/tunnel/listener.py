"""What `ssh -R` forwards to in the OpenSSH carrier: a port on 127.0.0.1 of the hook's, not the host's sshd.

ssh connects each forwarded channel to its target itself, at once, so silent channels would each hold a
connection to the host's sshd (waiting.py says why that locks guests out). Here each connection waits in
Waiting until it has sent its first bytes, and only then is joined to the host's sshd, its bytes copied
both ways by a thread of its own (a guest's; the silent ones share Waiting's one thread). The first bytes
are not read while it waits, so sshd gets them as sent.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
from typing import Callable

from .pinning import CONNECT_TIMEOUT
from .spec import reason
from .waiting import Waiting

BUFFER = 64 * 1024


class WaitingListener:
    """Listens on 127.0.0.1 (a free port: `port`) until close(); joins each connection that speaks to `target`."""

    def __init__(self, target: tuple[str, int], waiting: Waiting, refused: Callable[[str], None],
                 answered: Callable[[], None]) -> None:
        self.target, self.waiting, self.refused, self.answered = target, waiting, refused, answered
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.open: set[socket.socket] = set()  # every connection of ours, closed by close()
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, name="pairing-listener", daemon=True).start()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes accept()
        self.sock.close()
        with self.lock:
            left, self.open = list(self.open), set()
        for sock in left:
            _close(sock)

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return  # closed
            if self._keep(conn):
                self.waiting.add(conn, lambda conn=conn: self._spoke(conn), lambda conn=conn: self._drop(conn))

    def _spoke(self, conn: socket.socket) -> None:
        threading.Thread(target=self._join, args=(conn,), name="pairing-forward", daemon=True).start()

    def _join(self, conn: socket.socket) -> None:
        try:
            sshd = socket.create_connection(self.target, timeout=CONNECT_TIMEOUT)
        except OSError as exc:
            self.refused(reason(exc))
            self._drop(conn)
            return
        self.answered()
        if not self._keep(sshd):  # closed meanwhile
            _close(sshd)
            return
        sshd.settimeout(None)
        for sock in (conn, sshd):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            _copy(conn, sshd)
        finally:
            self._drop(conn)
            self._drop(sshd)

    def _keep(self, sock: socket.socket) -> bool:
        with self.lock:
            if self.sock.fileno() < 0:
                _close(sock)
                return False
            self.open.add(sock)
            return True

    def _drop(self, sock: socket.socket) -> None:
        with self.lock:
            self.open.discard(sock)
        _close(sock)


def _copy(one: socket.socket, other: socket.socket) -> None:
    """Bytes both ways until either side closes."""
    peer = {one: other, other: one}
    try:
        while True:
            readable, _, _ = select.select([one, other], [], [])
            for sock in readable:
                data = sock.recv(BUFFER)
                if not data:
                    return
                peer[sock].sendall(data)
    except (OSError, ValueError):  # ValueError: closed by close() meanwhile
        return


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked on it
    sock.close()
