"""The tunnel carried by paramiko, in this process: the default, nothing else needed.

paramiko is the SSH stack under sshtunnel; sshtunnel only does local forwards,
so the reverse forward is paramiko's request_port_forward.
"""

from __future__ import annotations

import select
import socket
import threading

import paramiko

from .loop import ReverseTunnel
from .pinning import CONNECT_TIMEOUT, KEEPALIVE_INTERVAL, alive, connect
from .spec import TunnelEvents, TunnelLost, TunnelSpec, reason

BUFFER = 64 * 1024


def pump(channel: paramiko.Channel, sock: socket.socket) -> None:
    """Copy bytes both ways until either side closes."""
    try:
        while True:
            readable, _, _ = select.select([channel, sock], [], [])
            if sock in readable:
                data = sock.recv(BUFFER)
                if not data:
                    break
                channel.sendall(data)
            if channel in readable:
                data = channel.recv(BUFFER)
                if not data:
                    break
                sock.sendall(data)
    except (OSError, EOFError, paramiko.SSHException):
        pass
    finally:
        try:
            channel.close()  # tells the relay, over a connection that may be gone
        except (OSError, EOFError, paramiko.SSHException):
            pass
        sock.close()


class ParamikoTunnel(ReverseTunnel):
    """The reverse forward over paramiko: one Python process, no other program needed."""

    name = "paramiko"

    def __init__(self, spec: TunnelSpec, events: TunnelEvents, give_up_at: float | None = None) -> None:
        super().__init__(spec, events, give_up_at)
        self.transport: paramiko.Transport | None = None

    def _open(self) -> None:
        self.transport = connect(self.spec.relay, self.spec.identity)
        self._forward(self.transport)

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def _watch(self) -> None:
        """Return when the connection ends or stops answering (or on stop())."""
        transport = self.transport
        while not self.stopping.is_set():
            transport.join(KEEPALIVE_INTERVAL)  # returns at once when the connection closes
            if self.stopping.is_set():
                return
            self._check_ttl(connected=True)
            if not transport.is_active():
                raise TunnelLost("the relay closed the connection")
            if not alive(transport):
                raise TunnelLost("the relay stopped answering")

    def _forward(self, transport: paramiko.Transport) -> None:
        """Listen on the relay; a port still held by our own dead connection is asked for again until freed."""
        waited_since = None
        while not self.stopping.is_set():
            try:
                transport.request_port_forward("localhost", self.spec.tunnel_port, handler=self._accept)
                return
            except paramiko.SSHException:
                if not transport.is_active():
                    raise
                waited_since = self._port_held(waited_since)

    def _accept(self, channel: paramiko.Channel, origin: tuple, server: tuple) -> None:
        """Called on paramiko's thread: connect to the host's sshd and pump elsewhere."""
        threading.Thread(target=self._serve, args=(channel,), name="pairing-forward", daemon=True).start()

    def _serve(self, channel: paramiko.Channel) -> None:
        try:
            sock = socket.create_connection(self.spec.target, timeout=CONNECT_TIMEOUT)
        except OSError as exc:
            self._target_refused(reason(exc))
            channel.close()
            return
        self._target_answered()
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pump(channel, sock)
