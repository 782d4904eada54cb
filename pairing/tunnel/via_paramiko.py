"""The tunnel carried by paramiko, in this process: the default, nothing else needed.

paramiko is the SSH stack under sshtunnel; sshtunnel only does local forwards,
so the reverse forward is paramiko's request_port_forward.

A key from a guest is decrypted on paramiko's transport thread. paramiko would
put it in the channel's buffer and wake another thread to write it on, a thread
hand-off per key (2-5 % of a keystroke's round trip, bench/README.md); here the
transport thread writes it to the host sshd's socket itself whenever that can
be done at once (Forward.deliver), and the forward's own thread only takes
what the socket could not. What is left of the carrier's cost per key is
paramiko's own Python per packet.

A channel gets that thread, and a connection to the host's sshd, only once it
has sent its first bytes; until then it waits in waiting.Waiting, with every
other silent one, on one thread.
"""

from __future__ import annotations

import select
import socket
import sys
import threading

import paramiko
from paramiko.common import MSG_CHANNEL_DATA

from .loop import ReverseTunnel
from .pinning import CONNECT_TIMEOUT, KEEPALIVE_INTERVAL, alive, connect
from .spec import TunnelEvents, TunnelLost, TunnelSpec, reason

BUFFER = 64 * 1024
# How long a thread may keep the GIL while another waits for it (Python's default: 5 ms): with
# 8 guests, a forward's thread woken by an echo may wait on another's. Their keys' p99 was 0.79
# and 0.81 x what it is with the default, in two A/B runs (bench/README.md); one guest: the same.
SWITCH_INTERVAL = 0.0005


class Forward:
    """One guest's connection: a channel from the relay, a socket to the host's sshd.

    Bytes from the relay reach the socket by one of two ways, never both at
    once (`writing`), so they keep their order: deliver(), on paramiko's
    thread, when the channel's buffer is empty and the socket takes them
    without waiting; else the buffer, which pump() drains with blocking
    writes. paramiko's thread carries every guest and the keepalives, so it
    never waits on a socket.
    """

    def __init__(self, channel: paramiko.Channel, sock: socket.socket) -> None:
        self.channel, self.sock = channel, sock
        self.writing = threading.Lock()

    def deliver(self, data: bytes) -> bool:
        """On paramiko's thread: write `data` on at once if that can be done; False: buffer it instead."""
        channel = self.channel
        if not self.writing.acquire(blocking=False):
            return False  # pump() is writing what came before
        try:
            with channel.lock:  # the window the relay may fill is re-opened by recv() (pump) alone
                if len(channel.in_buffer) or channel.in_window_sofar + len(data) > channel.in_window_threshold:
                    return False
            try:
                sent = self.sock.send(data, socket.MSG_DONTWAIT)
            except BlockingIOError:
                sent = 0
            except OSError:
                return False  # the socket is gone: pump() finds out and closes the channel
            with channel.lock:
                channel.in_window_sofar += sent
            if sent < len(data):
                channel.in_buffer.feed(data[sent:])  # still holding `writing`: it goes before anything later
            return True
        finally:
            self.writing.release()

    def pump(self) -> None:
        """Copy bytes both ways until either side closes."""
        channel, sock = self.channel, self.sock
        try:
            while True:
                readable, _, _ = select.select([channel, sock], [], [])
                if sock in readable:
                    data = sock.recv(BUFFER)
                    if not data:
                        break
                    channel.sendall(data)
                if channel in readable:
                    with self.writing:
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
            with self.writing:  # not while deliver() writes to it
                sock.close()


def deliver_directly(transport: paramiko.Transport, forwards: dict[paramiko.Channel, Forward]) -> None:
    """Have `transport` hand a forwarded channel's data to its Forward rather than to the channel's buffer.

    paramiko has no public hook for it: this replaces, on this transport only,
    the handler its thread calls for each channel's data (Channel._feed).
    """
    table = dict(transport._channel_handler_table)
    feed = table[MSG_CHANNEL_DATA]

    def data(channel: paramiko.Channel, message: paramiko.Message) -> None:
        forward = forwards.get(channel)
        if forward is None:
            feed(channel, message)
            return
        payload = message.get_binary()
        if not forward.deliver(payload):
            channel.in_buffer.feed(payload)

    table[MSG_CHANNEL_DATA] = data
    transport._channel_handler_table = table


class ParamikoTunnel(ReverseTunnel):
    """The reverse forward over paramiko: one Python process, no other program needed."""

    name = "paramiko"

    def __init__(self, spec: TunnelSpec, events: TunnelEvents, give_up_at: float | None = None) -> None:
        super().__init__(spec, events, give_up_at)
        sys.setswitchinterval(SWITCH_INTERVAL)  # the whole process's: the hook's other threads are idle
        self.transport: paramiko.Transport | None = None
        # By channel object, not id: a new connection numbers its channels from 0 again, while an old
        # connection's pump() may not have ended yet.
        self.forwards: dict[paramiko.Channel, Forward] = {}  # for deliver_directly

    def _open(self) -> None:
        self.transport = connect(self.spec.relay, self.spec.identity)
        deliver_directly(self.transport, self.forwards)
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
        """Called on paramiko's thread: the channel waits, on no thread of its own, until it speaks."""
        self.waiting.add(channel, lambda: self._spoke(channel), channel.close)

    def _spoke(self, channel: paramiko.Channel) -> None:
        """Called on Waiting's thread: bytes (or the relay's close) arrived."""
        if not channel.recv_ready():  # closed before a byte
            channel.close()
            return
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
        forward = Forward(channel, sock)
        self.forwards[channel] = forward  # what came before is in the buffer: pump() sends it first
        try:
            forward.pump()
        finally:
            self.forwards.pop(channel, None)
