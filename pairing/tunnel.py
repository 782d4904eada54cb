"""The reverse tunnel: relay localhost:<port> -> the host's sshd, kept up.

ReverseTunnel is what every tunnel does whatever carries it: log in with the
relay's key pinned, listen, prove the guests' path (the self-test), watch,
and start again on any failure, waiting out a port the relay still holds.
ParamikoTunnel, the default, carries it on paramiko, the SSH stack under
sshtunnel: sshtunnel only does local forwards, so the reverse forward is
paramiko's request_port_forward, and the self-test after each (re)connect is
an sshtunnel local forward, opening the tunnel port through the relay exactly
as a guest's ProxyJump does. (openssh_tunnel.OpenSSHTunnel carries it on
OpenSSH's `ssh -N -R`.)

OpenSSH's defaults never notice a dead peer; here an unanswered keepalive
ends the connection within KEEPALIVE_INTERVAL + KEEPALIVE_TIMEOUT seconds,
and reconnects are retried at most RETRY_CAP seconds apart, so the tunnel is
back within about two seconds of the network.
"""

from __future__ import annotations

import logging
import select
import socket
import threading
import time
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Callable

import paramiko
import sshtunnel

from .sshkeys import PublicKey, host_key_algorithms, is_key, public_key_of

KEEPALIVE_INTERVAL = 3.0  # seconds between liveness probes
KEEPALIVE_TIMEOUT = 9.0  # an unanswered probe after this long means the relay is gone
CONNECT_TIMEOUT = 1.5  # short, so a retry soon follows a network's return
HANDSHAKE_TIMEOUT = 10.0
RETRY_FIRST, RETRY_CAP = 0.25, 1.0  # capped backoff between attempts
# How often to ask again for a port the relay still holds. After an outage the relay
# lets go of it at its next ClientAlive probe of the dead connection (the host's
# kernel answers it with a reset), within a second or two of the network's
# return; asking often turns that into a tunnel back within about 2 s, not 3.
PORT_HELD_RETRY = 0.25
# The relay drops a silent connection within 14 s (see relay_documents.CLIENT_ALIVE_*),
# freeing its port. Held much longer, the port is a live connection's: another hook's.
PORT_HELD_GIVE_UP = 30.0
BUFFER = 64 * 1024
# AES-GCM before paramiko's default AES-CTR + HMAC: one AEAD call per packet
# instead of a cipher and a fresh HMAC, some 5 % off a keystroke's round trip
# through the whole path (bench/README.md). Every OpenSSH since 6.2 has both.
PREFERRED_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")

log = logging.getLogger("pairing.tunnel")


class State(Enum):
    CONNECTING = "connecting"
    WAITING_FOR_PORT = "waiting for the relay to free the port"
    UP = "up"
    RECONNECTING = "reconnecting"
    STOPPED = "stopped"


class TunnelFatal(Exception):
    """Retrying cannot help (wrong relay key, key refused): stop and say why."""


class HostKeyMismatch(TunnelFatal):
    pass


class PortHeld(Exception):
    pass


@dataclass(frozen=True)
class Endpoint:
    """An SSH server we log in to, and the keys it must present."""

    address: str
    port: int
    user: str
    pinned: tuple[PublicKey, ...]


@dataclass(frozen=True)
class TunnelSpec:
    relay: Endpoint  # as the tunnel account
    probe: Endpoint  # the same relay as the guests' account, for the self-test
    tunnel_port: int  # listened on at localhost on the relay
    target: tuple[str, int]  # the host's sshd
    identity: paramiko.PKey
    identity_file: Path | None = None  # where `identity` was read from; None: the ssh agent holds it


Notify = Callable[[State, str], None]


def as_paramiko_key(key: PublicKey) -> paramiko.PKey:
    """A pinned key as paramiko's, for sshtunnel: paramiko then offers its signature algorithms itself."""
    import base64

    return paramiko.PKey.from_type_string(key.kind, base64.b64decode(key.blob))


def handshake(endpoint: Endpoint, connect_timeout: float = CONNECT_TIMEOUT) -> paramiko.Transport:
    """A transport to a server that has shown one of the pinned keys; not yet logged in."""
    sock = socket.create_connection((endpoint.address, endpoint.port), timeout=connect_timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # keystrokes, not bulk
    sock.settimeout(None)
    transport = paramiko.Transport(sock)
    try:
        options = transport.get_security_options()
        # Offer only the pinned keys' algorithms, so the server shows the key we can check.
        options.key_types = host_key_algorithms(endpoint.pinned)
        options.ciphers = PREFERRED_CIPHERS + tuple(c for c in options.ciphers if c not in PREFERRED_CIPHERS)
        transport.start_client(timeout=HANDSHAKE_TIMEOUT)
        check_host_key(endpoint, transport.get_remote_server_key())
    except BaseException:
        transport.close()
        raise
    return transport


def connect(endpoint: Endpoint, identity: paramiko.PKey) -> paramiko.Transport:
    """An authenticated transport to a server whose key is one of the pinned ones."""
    transport = handshake(endpoint)
    try:
        transport.auth_publickey(endpoint.user, identity)
    except BaseException:
        transport.close()
        raise
    return transport


def check_host_key(endpoint: Endpoint, presented: paramiko.PKey) -> None:
    if any(is_key(presented, k) for k in endpoint.pinned):
        return
    raise host_key_mismatch(endpoint, public_key_of(presented).fingerprint)


def host_key_mismatch(endpoint: Endpoint, shown: str) -> HostKeyMismatch:
    return HostKeyMismatch(
        f"the relay at {endpoint.address}:{endpoint.port} presented host key {shown}, but the stack "
        f"pinned {', '.join(k.fingerprint for k in endpoint.pinned)}. This may be an attack (someone between you and "
        "the relay); refusing to connect. If the relay was replaced, read the outputs again (pulumi stack output)."
    )


def alive(transport: paramiko.Transport, timeout: float = KEEPALIVE_TIMEOUT) -> bool:
    """Ask the relay for an answer; a dead peer gives none (OpenSSH answers this with a failure, which is fine)."""
    answered = threading.Event()

    def ask() -> None:
        try:
            transport.global_request("keepalive@openssh.com", wait=True)
        except (OSError, EOFError, paramiko.SSHException):
            pass  # the connection is gone: no answer, which is the answer
        finally:
            answered.set()

    threading.Thread(target=ask, name="pairing-keepalive", daemon=True).start()
    if not (answered.wait(timeout) and transport.is_active()):
        return False
    acknowledge_now(transport)
    return True


def acknowledge_now(transport: paramiko.Transport) -> None:
    """Acknowledge what the relay sent at once, not up to 40 ms later (Linux's delayed ACK).

    The relay's sshd holds a small write back while its last one is unacknowledged
    (Nagle: it sets no TCP_NODELAY on a connection without a terminal), so a keystroke
    that follows the keepalive's answer would wait for that ACK: measured, about one
    keystroke in a hundred took 20-45 ms instead of 2 (bench/README.md).
    """
    if hasattr(socket, "TCP_QUICKACK"):  # Linux only; elsewhere the stack decides
        try:
            transport.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        except OSError:
            pass  # the connection has just gone; the next probe says so


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


def self_test(spec: TunnelSpec) -> str:
    """Open localhost:<port> through the relay as a guest would; return the host sshd's banner."""
    with sshtunnel.SSHTunnelForwarder(
        (spec.probe.address, spec.probe.port),
        ssh_username=spec.probe.user,
        ssh_pkey=spec.identity,
        ssh_host_key=as_paramiko_key(spec.probe.pinned[0]),
        ssh_config_file=None,
        allow_agent=False,
        host_pkey_directories=[],
        remote_bind_address=("localhost", spec.tunnel_port),
        local_bind_address=("127.0.0.1", 0),
        set_keepalive=0,
        logger=logging.getLogger("pairing.selftest"),
    ) as forwarder:
        with socket.create_connection(("127.0.0.1", forwarder.local_bind_port), timeout=HANDSHAKE_TIMEOUT) as sock:
            banner = sock.makefile("rb").readline(256).decode("ascii", "replace").strip()
    if not banner:
        raise paramiko.SSHException(f"your sshd at {spec.target[0]}:{spec.target[1]} does not answer through the tunnel")
    if not banner.startswith("SSH-"):
        raise paramiko.SSHException(f"the tunnel answered {banner!r}, not the host's sshd")
    return banner


class TunnelLost(Exception):
    """The connection ended or stopped answering; retried."""


class ReverseTunnel:
    """Holds the reverse forward until stopped; reports each state change.

    The retry loop, the TTL and the wait for a port the relay still holds are
    the same whatever carries the connection; a backend supplies _open (log in
    and listen on the relay), _watch (return when the connection is lost) and
    _close.
    """

    name = ""
    port_held_retry = PORT_HELD_RETRY

    def __init__(self, spec: TunnelSpec, notify: Notify, give_up_at: float | None = None) -> None:
        self.spec = spec
        self.notify = notify
        self.give_up_at = give_up_at
        self.stopping = threading.Event()
        self.target_down = False  # the host's sshd refused the last connection

    def stop(self) -> None:
        self.stopping.set()
        self._close()

    def run(self) -> None:
        """Connect, forward, self-test, watch; again on any failure, until stop() or a fatal error."""
        delay = 0.0
        while not self.stopping.is_set():
            self._check_ttl(connected=False)
            self.notify(State.CONNECTING if delay == 0 else State.RECONNECTING, "")
            began = time.monotonic()
            try:
                self._open()
                banner = self_test(self.spec)
                self.notify(State.UP, banner)
                delay = 0.0
                self._watch()
            except paramiko.AuthenticationException:
                raise TunnelFatal(
                    f"the relay refused the key {self.spec.identity.fingerprint} for {self.spec.relay.user}; "
                    "pass --identity with the private key of pairing:hostPublicKey"
                ) from None
            except (TunnelLost, OSError, EOFError, paramiko.SSHException, sshtunnel.BaseSSHTunnelForwarderError) as exc:
                if not self.stopping.is_set():
                    self.notify(State.RECONNECTING, _reason(exc))
            finally:
                self._close()
            delay = min(max(delay * 2, RETRY_FIRST), RETRY_CAP)
            # An attempt that timed out has waited already: with the network gone, one
            # attempt follows the other, so the first after its return is at most
            # CONNECT_TIMEOUT away.
            self.stopping.wait(max(0.0, delay - (time.monotonic() - began)))
        self.notify(State.STOPPED, "")

    def _check_ttl(self, connected: bool) -> None:
        if self.give_up_at is None or time.time() <= self.give_up_at:
            return
        if connected:
            # Its own timer should have ended it: a relay that outlives it is not one to trust.
            raise TunnelFatal(
                "the relay is still up after its TTL (expiresAt), though it powers itself off by then; "
                "stopping. Run `pulumi up` for a new one"
            )
        raise TunnelFatal("the relay's TTL has passed, so it is gone; run `pulumi up` for a new one")

    def _port_held(self, waited_since: float | None) -> float:
        """The relay refused the listen: say so once, give up when it is clearly someone else's; then wait."""
        if waited_since is None:
            waited_since = time.monotonic()
            self.notify(
                State.WAITING_FOR_PORT,
                f"port {self.spec.tunnel_port} on the relay is still held by the previous connection; "
                "asking again until the relay frees it (within 14 s)",
            )
        elif time.monotonic() - waited_since > PORT_HELD_GIVE_UP:
            raise TunnelFatal(
                f"port {self.spec.tunnel_port} on the relay is still taken after {PORT_HELD_GIVE_UP:.0f} s, so "
                "a live connection holds it: another `pairing host` for this relay is running (on this machine "
                "or another); stop it first"
            )
        self.stopping.wait(self.port_held_retry)
        return waited_since

    def _target_refused(self, why: str) -> None:
        if not self.target_down:  # once per outage, not once per attempt
            self.target_down = True
            host, port = self.spec.target
            log.warning(
                "a guest could not be connected: your sshd at %s:%s does not answer (%s); start it "
                "(Debian/Ubuntu: sudo systemctl start ssh; macOS: enable Remote Login). The tunnel stays up.",
                host, port, why,
            )

    def _target_answered(self) -> None:
        if self.target_down:
            self.target_down = False
            log.warning("your sshd at %s:%s answers again; guests can join", *self.spec.target)

    def _open(self) -> None:
        raise NotImplementedError

    def _watch(self) -> None:
        raise NotImplementedError

    def _close(self) -> None:
        raise NotImplementedError


class ParamikoTunnel(ReverseTunnel):
    """The reverse forward over paramiko: one Python process, no other program needed."""

    name = "paramiko"

    def __init__(self, spec: TunnelSpec, notify: Notify, give_up_at: float | None = None) -> None:
        super().__init__(spec, notify, give_up_at)
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
            self._target_refused(getattr(exc, "strerror", None) or str(exc))
            channel.close()
            return
        self._target_answered()
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pump(channel, sock)


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0]
