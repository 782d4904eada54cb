"""ReverseTunnel: what every tunnel does whatever carries it.

Log in with the relay's key pinned, listen, prove the guests' path (the
self-test), watch, and start again on any failure, waiting out a port the
relay still holds. A carrier (via_paramiko, via_openssh) supplies the
connection. Reconnects are retried at most RETRY_CAP seconds apart, so the
tunnel is back within about two seconds of the network.

The self-test after each (re)connect is an sshtunnel local forward, opening
the tunnel port through the relay exactly as a guest's ProxyJump does.
"""

from __future__ import annotations

import logging
import socket
import threading
import time

import paramiko
import sshtunnel

from .pinning import HANDSHAKE_TIMEOUT, as_paramiko_key
from .spec import State, TunnelEvents, TunnelFatal, TunnelLost, TunnelSpec, reason
from .waiting import Waiting

RETRY_FIRST, RETRY_CAP = 0.25, 1.0  # capped backoff between attempts
# How often to ask again for a port the relay still holds. After an outage the relay
# lets go of it at its next ClientAlive probe of the dead connection (the host's
# kernel answers it with a reset), within a second or two of the network's
# return; asking often turns that into a tunnel back within about 2 s, not 3.
PORT_HELD_RETRY = 0.25
# The relay drops a silent connection within 14 s (see relay_documents.CLIENT_ALIVE_*),
# freeing its port. Held much longer, the port is a live connection's: another hook's.
PORT_HELD_GIVE_UP = 30.0
# What the self-test says first: the carriers connect a channel to the host's sshd only once it has spoken
# (waiting.py), as every SSH client does at once.
SELF_TEST_HELLO = b"SSH-2.0-pairing_selftest\r\n"


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
        logger=logging.getLogger("pairing.selftest"),  # sshtunnel's own chatter; nothing of ours goes there
    ) as forwarder:
        with socket.create_connection(("127.0.0.1", forwarder.local_bind_port), timeout=HANDSHAKE_TIMEOUT) as sock:
            sock.sendall(SELF_TEST_HELLO)
            banner = sock.makefile("rb").readline(256).decode("ascii", "replace").strip()
    if not banner:
        raise paramiko.SSHException(f"your sshd at {spec.target[0]}:{spec.target[1]} does not answer through the tunnel")
    if not banner.startswith("SSH-"):
        raise paramiko.SSHException(f"the tunnel answered {banner!r}, not the host's sshd")
    return banner


class ReverseTunnel:
    """Holds the reverse forward until stopped; reports each state change to `events`.

    The retry loop, the TTL and the wait for a port the relay still holds are
    the same whatever carries the connection; a carrier supplies _open (log in
    and listen on the relay), _watch (return when the connection is lost) and
    _close.
    """

    name = ""
    port_held_retry = PORT_HELD_RETRY

    def __init__(self, spec: TunnelSpec, events: TunnelEvents, give_up_at: float | None = None) -> None:
        self.spec = spec
        self.events = events
        self.give_up_at = give_up_at
        self.stopping = threading.Event()
        self.target_down = False  # the host's sshd refused the last connection
        self.waiting: Waiting | None = None  # forwarded connections that have not spoken yet; while run() runs

    def stop(self) -> None:
        self.stopping.set()
        self._close()

    def run(self) -> None:
        """Connect, forward, self-test, watch; again on any failure, until stop() or a fatal error."""
        self.waiting = Waiting(self.events.warning)
        try:
            self._run()
        finally:
            self.waiting.stop()

    def _run(self) -> None:
        delay = 0.0
        while not self.stopping.is_set():
            self._check_ttl(connected=False)
            self.events.tunnel_state(State.CONNECTING if delay == 0 else State.RECONNECTING, "")
            began = time.monotonic()
            try:
                self._open()
                banner = self_test(self.spec)
                self.events.tunnel_state(State.UP, banner)
                delay = 0.0
                self._watch()
            except paramiko.AuthenticationException:
                raise TunnelFatal(
                    f"the relay refused the key {self.spec.identity.fingerprint} for {self.spec.relay.user}; "
                    "pass --identity with the private key of pairing:hostPublicKey"
                ) from None
            except (TunnelLost, OSError, EOFError, paramiko.SSHException, sshtunnel.BaseSSHTunnelForwarderError) as exc:
                if not self.stopping.is_set():
                    self.events.tunnel_state(State.RECONNECTING, reason(exc))
            finally:
                self._close()
            delay = min(max(delay * 2, RETRY_FIRST), RETRY_CAP)
            # An attempt that timed out has waited already: with the network gone, one
            # attempt follows the other, so the first after its return is at most
            # CONNECT_TIMEOUT away.
            self.stopping.wait(max(0.0, delay - (time.monotonic() - began)))
        self.events.tunnel_state(State.STOPPED, "")

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
            self.events.tunnel_state(
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
            self.events.warning(
                f"a guest could not be connected: your sshd at {host}:{port} does not answer ({why}); start it "
                "(Debian/Ubuntu: sudo systemctl start ssh; macOS: enable Remote Login). The tunnel stays up."
            )

    def _target_answered(self) -> None:
        if self.target_down:
            self.target_down = False
            host, port = self.spec.target
            self.events.warning(f"your sshd at {host}:{port} answers again; guests can join")

    def _open(self) -> None:
        raise NotImplementedError

    def _watch(self) -> None:
        raise NotImplementedError

    def _close(self) -> None:
        raise NotImplementedError
