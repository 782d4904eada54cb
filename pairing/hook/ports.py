"""The own sshd's port, looked at from outside: taken or not, and whether the sshd answering is this run's."""

from __future__ import annotations

import errno
import os
import socket


def endpoint(address: str, port: int | str) -> str:
    """address:port as a user types it, [v6]:port for IPv6 (port may be a placeholder: PORT)."""
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def family(address: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in address else socket.AF_INET


def port_taken(address: str, port: int) -> str | None:
    """The system's words when something listens on address:port (on it, or on every address), else None.
    Other failures (an address this machine lacks) are left to sshd, whose words name them."""
    try:
        with socket.create_server((address, port), family=family(address)):
            return None
    except OSError as exc:
        return os.strerror(exc.errno) if exc.errno == errno.EADDRINUSE else None


def answers(address: str, port: int, nonce: str) -> bool:
    """An SSH banner ending in this run's nonce (sshd's VersionAddendum): the sshd answering is the one just
    started, not another of the same host key that holds the port."""
    try:
        with socket.create_connection((address, port), timeout=1) as sock:
            banner = sock.makefile("rb").readline(256).decode("ascii", "replace").split()
            return bool(banner) and banner[0].startswith("SSH-") and banner[-1] == nonce
    except OSError:
        return False
