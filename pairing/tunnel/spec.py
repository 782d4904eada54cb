"""What a tunnel is asked to hold, the states it reports and the errors it ends with.

A tunnel reports through one TunnelEvents object given at construction: its
state changes and its warnings (your sshd is down, is back). Nothing goes
through logging, so whoever runs a tunnel decides what is shown, and how.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Protocol

import paramiko

from ..sshkeys import PublicKey
from ..text import shown


class State(Enum):
    CONNECTING = "connecting"
    WAITING_FOR_PORT = "waiting for the relay to free the port"
    UP = "up"
    RECONNECTING = "reconnecting"
    STOPPED = "stopped"


class TunnelEvents(Protocol):
    """What a tunnel tells whoever runs it; called from the tunnel's threads."""

    def tunnel_state(self, state: State, detail: str) -> None:
        """A state change (also RECONNECTING again with why the last attempt failed)."""

    def warning(self, text: str) -> None:
        """Something the host should act on while the tunnel itself stays up."""


class TunnelFatal(Exception):
    """Retrying cannot help (wrong relay key, key refused): stop and say why."""


class HostKeyMismatch(TunnelFatal):
    pass


class TunnelLost(Exception):
    """The connection ended or stopped answering; retried."""


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


def reason(exc: BaseException) -> str:
    """An error as a few words for one line: the system's words for an OSError ("Connection refused").
    Shown escaped: a server's banner reaches it through paramiko's message ("Incompatible version (...)")."""
    text = str(getattr(exc, "strerror", None) or exc) or type(exc).__name__
    return shown(text.splitlines()[0])
