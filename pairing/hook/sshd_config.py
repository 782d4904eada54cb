"""The own sshd's configuration, rendered only from checked values: the relay's algorithms and pre-auth
limits, publickey only, no forwarding but the ports a host shares, no startup file of the user's."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

from ..relay_documents import preauth_limits
from ..text import printable
from .startup import quiet_environment


class SshdError(RuntimeError):
    """The private sshd cannot run; the message is one line saying why and what to do."""


# The relay's algorithm lines (cloud-init/sshd_config.d/10-pairing.conf; why: docs/SECURITY.md).
KEX = "-ecdh-sha2-*,diffie-hellman-*,curve25519-sha256"
MACS = "-*-sha1*,umac-64*,hmac-sha2-256,hmac-sha2-512,umac-128@openssh.com"

# Each said `no`: what a reader checks for is there.
_OFF = ("PasswordAuthentication", "KbdInteractiveAuthentication", "PermitRootLogin", "PermitEmptyPasswords", "UsePAM",
        "PermitUserEnvironment", "PermitUserRC", "AllowStreamLocalForwarding",
        "AllowAgentForwarding", "X11Forwarding", "PermitTunnel", "GatewayPorts")


def _word(value: str, what: str) -> str:
    """One sshd_config argument. Quoted for spaces; `"`, `\\` and `%` (sshd's tokens) are refused, not escaped."""
    printable(value, what)
    if not value or any(c in value for c in '"\\%'):
        raise SshdError(f"{what} {value!r} has a quote, backslash or % that sshd_config would read otherwise; use another path")
    return f'"{value}"' if any(c.isspace() for c in value) else value


def render_config(user: str, port: int, folder: Path, host_key_file: Path, address: str = "127.0.0.1",
                  nonce: str | None = None, tunneled: bool = True, penalties: bool = False) -> str:
    """The sshd_config of the private sshd (every file it names is in `folder` but the host key). nonce: this
    run's word at the end of sshd's banner (VersionAddendum), by which the start proves the sshd answering is its own.

    tunneled: every guest comes through the tunnel, from 127.0.0.1 (`pairing host`); else each from their own
    address (`pairing direct`). penalties: this sshd knows PerSourcePenalties (OpenSSH 9.8+)."""
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\$?", user):  # AllowUsers reads * ? ! , @ as patterns
        raise SshdError(f"the user name {user!r} cannot be written into AllowUsers; run pairing host as another user")
    if not 0 < port < 65536:
        raise SshdError(f"port {port} is not a TCP port")
    lines = [
        "# pairing: the host's own sshd for `pairing host`'s guests (run with -f: nothing of /etc/ssh is read).",
        # 127.0.0.1: only the tunnel reaches it; `pairing direct`: the one address the host chose.
        f"ListenAddress {sshd_address(address)}",
        f"Port {port}",
        f"HostKey {_word(str(host_key_file), 'the host key path')}",
        f"PidFile {_word(str(folder / 'sshd.pid'), 'the sshd folder')}",
        f"AuthorizedKeysFile {_word(str(folder / 'authorized_keys'), 'the sshd folder')}",
        f"AllowUsers {user}",
        "AuthenticationMethods publickey",
        "PubkeyAuthentication yes",
        # UsePAM: PAM needs root; without it sshd checks the account itself.
        *(f"{name} no" for name in _OFF),
        # StrictModes: the file and each folder up to the home (or /) owned by the user or root and
        # writable by no one else; PrivateSshd checks the same before starting, to say it clearly.
        "StrictModes yes",
        "PermitTTY yes",  # tmux attach needs a terminal; each key line says `pty` after `restrict`
        # TCP forwarding: local only (never -R), to this machine's loopback only, and only for a key line that
        # says `port-forwarding` and a `permitopen` (a port the host shares: shared_ports.py). Every guest line
        # starts with `restrict`, which turns it off otherwise; agent, X11, tunnels, Unix sockets stay off above.
        "AllowTcpForwarding local",
        "PermitOpen localhost:* 127.0.0.1:* [::1]:*",
        "PermitListen none",
        "LoginGraceTime 15",  # a pre-auth slot held by a client that never logs in is free again this soon
        *_preauth_limits(tunneled, penalties),
        "MaxAuthTries 10",  # a guest's agent offers its other keys first (as on the relay)
        "LogLevel VERBOSE",  # "Accepted publickey ... SHA256:...": which guest's key logged in
        # No startup file of the user's runs before a guest's gate (startup.py says how, and proves it).
        "SetEnv " + " ".join(_word(f"{k}={v}", "the sshd folder") for k, v in quiet_environment(folder).items()),
        f"KexAlgorithms {KEX}",
        f"MACs {MACS}",
        # Another sshd of the same host key (a second `pairing direct` on a held port) answers alike but for this.
        *([f"VersionAddendum {_nonce(nonce)}"] if nonce else []),
        "",  # no Subsystem: no sftp, nothing but the forced command
    ]
    return "\n".join(printable(line, "a line of the sshd config") for line in lines)


def _nonce(nonce: str) -> str:
    if not re.fullmatch(r"[a-z0-9-]{1,64}", nonce):
        raise SshdError(f"{nonce!r} is not a banner word")
    return nonce


def _preauth_limits(tunneled: bool, penalties: bool) -> list[str]:
    """The relay's limits on connections not logged in (docs/SECURITY.md). Through the tunnel every guest comes from
    127.0.0.1: a per-address limit would be everyone's, so only the total holds (and tunnel/waiting.py)."""
    relay = preauth_limits()
    if tunneled:
        return [relay["MaxStartups"], *(["PerSourcePenalties no"] if penalties else [])]
    return [relay["MaxStartups"], relay["PerSourceMaxStartups"], *([relay["PerSourcePenalties"]] if penalties else [])]


def sshd_address(address: str) -> str:
    """ListenAddress's argument: an IP address only (parsed, so nothing else rides along)."""
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        raise SshdError(f"{address!r} is not an IP address sshd could listen on") from None
