"""SSH connections to a server that must show a pinned key, and keeping them honest.

OpenSSH's defaults never notice a dead peer; here an unanswered keepalive
ends the connection within KEEPALIVE_INTERVAL + KEEPALIVE_TIMEOUT seconds.
"""

from __future__ import annotations

import base64
import socket
import threading

import paramiko

from ..sshkeys import PublicKey, host_key_algorithms, is_key, public_key_of
from .spec import Endpoint, HostKeyMismatch

KEEPALIVE_INTERVAL = 3.0  # seconds between liveness probes
KEEPALIVE_TIMEOUT = 9.0  # an unanswered probe after this long means the relay is gone
CONNECT_TIMEOUT = 1.5  # short, so a retry soon follows a network's return
HANDSHAKE_TIMEOUT = 10.0
# AES-GCM before paramiko's default AES-CTR + HMAC: one AEAD call per packet
# instead of a cipher and a fresh HMAC, some 5 % off a keystroke's round trip
# through the whole path (bench/README.md). Every OpenSSH since 6.2 has both.
PREFERRED_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")


def as_paramiko_key(key: PublicKey) -> paramiko.PKey:
    """A pinned key as paramiko's, for sshtunnel: paramiko then offers its signature algorithms itself."""
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
