"""What the hook puts in authorized_keys for the guests, and what it tells the host to send them.

Each guest key is forced to `tmux attach` (viewers read-only); behind a loopback
target, only from loopback.
"""

from __future__ import annotations

import ipaddress
import shutil
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from .. import guest_documents
from ..forced_command import gate_command, guest_line
from ..names import NamedKey, roster
from ..outputs import StackOutputs
from ..shared_ports import SharedPort
from .control import socket_path
from .own_sshd import lock_path
from .tmux_server import server_socket

if TYPE_CHECKING:
    from . import HostOptions


GATE = Path(__file__).resolve().parent.parent / "gate.py"


SharedWith = Callable[[NamedKey], Sequence[SharedPort]]  # the ports a guest's connection may open now


def _none(_: NamedKey) -> Sequence[SharedPort]:
    return ()


def guest_lines(options: HostOptions, shared_with: SharedWith = _none) -> list[str]:
    """Each key forced to its gate, which asks the hook (by the guest's name) before it becomes
    `tmux attach`, read-only or not as the hook says."""
    return lines_for(options)(roster(options.outputs.guest_keys, options.outputs.viewer_keys), shared_with)


def lines_for(options: HostOptions) -> Callable[[Sequence[NamedKey], SharedWith], list[str]]:
    """guest_lines for any guests (the run's, as `pairing add` changes them) and ports (`pairing share`)."""
    outputs = options.outputs
    tmux_socket = server_socket(outputs.tmux_session, options.tmux_socket)
    control = str(control_socket(options))
    # Guests reach a loopback sshd only through the tunnel, whose connections
    # the hook opens from this machine: their keys then work from nowhere else
    # (not from the LAN your sshd may also listen on).
    # The own sshd (no --target) listens on 127.0.0.1 only.
    sources = LOOPBACK_SOURCES if options.target is None or _is_loopback(options.target[0]) else ()
    return lambda guests, shared_with=_none: gated_lines(guests, control, outputs.tmux_session, tmux_socket, sources,
                                                         shared_with)


def gated_lines(guests: Sequence[NamedKey], control: str, session: str, tmux_socket: str,
                sources: tuple[str, ...] = (), shared_with: SharedWith = _none) -> list[str]:
    """`pairing host`'s and `pairing direct`'s: each guest's key forced to its gate, by name (and the
    host's loopback ports it may open: pairing/shared_ports.py)."""
    tmux = shutil.which("tmux") or "tmux"  # by its path: sshd's sessions have sshd's PATH, no startup file's
    return [guest_line(k.key, gate_command(sys.executable, str(GATE), control, k.name, session, tmux_socket, tmux),
                       sources, shared_with(k)) for k in guests]


LOOPBACK_SOURCES = ("127.0.0.1", "::1")


def control_socket(options: HostOptions) -> Path:
    """The hook's control socket, one per lock (own sshd's folder, or authorized_keys), as hooks are."""
    own = options.target is None
    session = options.outputs.tmux_session
    if not own:
        return socket_path(options.authorized_keys)
    return socket_path(lock_path(session, server_socket(session, options.tmux_socket)))


def _is_loopback(host: str) -> bool:
    """Whether every address the hook may connect to for `host` is this machine's loopback
    (localhost, LOCALHOST, 127.1, ::1, ::ffff:127.0.0.1 ...): then so is every guest's source."""
    try:
        found = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return False  # preflight's probe of the target says why
    addresses = [ipaddress.ip_address(info[4][0].partition("%")[0]) for info in found]
    return bool(addresses) and all(_loopback_address(a) for a in addresses)


def _loopback_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    mapped = getattr(address, "ipv4_mapped", None)  # sshd sees ::ffff:127.0.0.1 as 127.0.0.1
    return (mapped or address).is_loopback


def instructions(outputs: StackOutputs, invite: Path | None = None, attach: str = "") -> str:
    sent = f"Send them {invite}" if invite else "Send them the file from `pairing invite`"
    return (
        f"ready: guests can join now. {sent} and have them run\n"
        f"    ssh -F {invite.name if invite else 'pairing.conf'} pairing\n"
        "or this one command (needs OpenSSH 8.5+):\n"
        f"    {guest_documents.command(outputs.guest_route)}\n"
        f"relay {outputs.relay_address} ({outputs.relay_fingerprint}), ends {outputs.expires_at:%Y-%m-%dT%H:%M:%SZ}. "
        "Ctrl-C to stop."
        + (f"\nyou join the pair session with: {attach}" if attach else "")
    )
