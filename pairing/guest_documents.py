"""Relay facts -> what a guest's OpenSSH needs: known_hosts lines, an ssh
config, and the one command. Pure functions, no I/O.

Both hops are pinned. Known keys are given inline with KnownHostsCommand
(OpenSSH 8.5+) and the user's own known_hosts files are not read: relay
addresses are recycled cloud IPs, and a stale entry there must neither block
nor vouch for anything. For older clients, the same config can name a
known_hosts file of its own instead (`pairing invite --known-hosts`).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Sequence

from .accounts import GUEST_USER
from .shared_ports import SharedPort, local_forwards
from .sshkeys import PublicKey
from .text import UnsafeText, printable

RELAY_ALIAS = "pairing-relay"
HOST_ALIAS = "pairing-host"
GUEST_HOST = "pairing"  # what the guest types: ssh -F FILE pairing
ECHO = "/bin/echo"  # KnownHostsCommand needs an absolute path; this one is on Linux and macOS
CONNECT = "pairing: connect with  ssh -F THIS_FILE pairing"
# -F skips the guest's own ~/.ssh/config, and with it a key kept elsewhere and named there (IdentityFile,
# IdentityAgent): read it after the invite's own lines. ssh takes each option's first value, so the pins,
# addresses and users above win; what it adds is what the guest's plain `ssh` would use anyway. The
# jump host's ssh gets the same -F, so the relay hop sees it too. A missing file is no error.
OWN_CONFIG = ("# Then your own ssh config: your keys and agent (the lines above win).", "Host *",
              "    Include ~/.ssh/config")
# Guests notice a dead path within 15 s instead of hanging on a frozen screen.
SERVER_ALIVE = (("ServerAliveInterval", "5"), ("ServerAliveCountMax", "3"))


@dataclass(frozen=True)
class GuestRoute:
    relay_address: str
    relay_port: int
    relay_host_key: PublicKey
    tunnel_port: int
    host_user: str
    host_sshd_key: PublicKey
    shared: tuple[SharedPort, ...] = ()  # the host's ports this guest may open (LocalForward)


@dataclass(frozen=True)
class DirectRoute:
    """`pairing direct`: the host's own sshd, reached straight (a LAN or VPN address), no relay."""

    address: str  # an IP address (pairing.direct parsed it)
    port: int
    host_user: str
    host_sshd_key: PublicKey
    shared: tuple[SharedPort, ...] = ()


def known_hosts_pattern(address: str, port: int) -> str:
    """How OpenSSH and paramiko file a server's key in known_hosts."""
    return address if port == 22 else f"[{address}]:{port}"


def known_hosts_line(pattern: str, key: PublicKey) -> str:
    return printable(f"{pattern} {key.bare}", "a known_hosts line")


def _pinning(alias: str, key: PublicKey, known_hosts: str | None) -> list[tuple[str, str]]:
    """known_hosts: a file of known_hosts_file()'s lines, for OpenSSH before 8.5; None: the key inline."""
    inline = [("UserKnownHostsFile", "/dev/null"), ("KnownHostsCommand", f"{ECHO} {known_hosts_line(alias, key)}"),
              ("GlobalKnownHostsFile", "/dev/null")]
    # The file variant names no path but its own, so it means the same on Windows (no /bin/echo, no /dev/null).
    in_file = [("UserKnownHostsFile", known_hosts), ("GlobalKnownHostsFile", known_hosts)]
    return [
        ("HostKeyAlias", alias),
        *(inline if known_hosts is None else in_file),
        ("StrictHostKeyChecking", "yes"),
        ("UpdateHostKeys", "no"),
    ]


def known_hosts_file(route: GuestRoute | DirectRoute) -> str:
    """Each hop's key under its alias (a direct route has one hop): the file an older guest's config names."""
    hops = [] if isinstance(route, DirectRoute) else [(RELAY_ALIAS, route.relay_host_key)]
    return "".join(known_hosts_line(alias, key) + "\n" for alias, key in [*hops, (HOST_ALIAS, route.host_sshd_key)])


def _relay_hop(route: GuestRoute, known_hosts: str | None = None) -> list[tuple[str, str]]:
    return [
        ("HostName", route.relay_address),
        ("Port", str(route.relay_port)),
        ("User", GUEST_USER),
        *_pinning(RELAY_ALIAS, route.relay_host_key, known_hosts),
        *SERVER_ALIVE,
    ]


def _host_hop(route: GuestRoute | DirectRoute, known_hosts: str | None = None) -> list[tuple[str, str]]:
    """The hop to the host's sshd: through the relay's tunnel (GuestRoute) or straight (DirectRoute)."""
    where = (route.address, route.port) if isinstance(route, DirectRoute) else ("localhost", route.tunnel_port)
    return [
        ("HostName", where[0]),
        ("Port", str(where[1])),
        ("User", route.host_user),
        *_pinning(HOST_ALIAS, route.host_sshd_key, known_hosts),
        ("RequestTTY", "yes"),
        # The host gets the guest's keystrokes, never the guest's agent or display.
        ("ForwardAgent", "no"),
        ("ForwardX11", "no"),
        *local_forwards(route.shared),  # only the host's shared ports, to its loopback (its sshd allows no other)
        *SERVER_ALIVE,
    ]


def ssh_config(route: GuestRoute, known_hosts: str | None = None, notes: Sequence[str] = (CONNECT,)) -> str:
    """An ssh_config for `ssh -F FILE pairing`: ProxyJump through the relay.

    -J cannot carry the relay hop's options; a config file can. known_hosts: the
    path of known_hosts_file() for Windows and clients before OpenSSH 8.5 (relative
    to where the guest runs ssh); None pins both keys inline. notes: the header's
    lines (invitation.notes), each written as a comment.
    """
    lines = [*_comments(notes), f"Host {GUEST_HOST}"]
    lines += [_option_line(k, v) for k, v in _host_hop(route, known_hosts)]
    lines += [f"    ProxyJump {RELAY_ALIAS}", "", f"Host {RELAY_ALIAS}"]
    lines += [_option_line(k, v) for k, v in _relay_hop(route, known_hosts)]
    return "\n".join(lines + ["", *OWN_CONFIG]) + "\n"


def _comments(notes: Sequence[str]) -> list[str]:
    return [printable(f"# {note}".rstrip(), "the invite's header") for note in notes]


def direct_config(route: DirectRoute, notes: Sequence[str] = (CONNECT,), known_hosts: str | None = None) -> str:
    """An ssh_config for `ssh -F FILE pairing` straight to the host's sshd, its key pinned inline (known_hosts:
    in that file, known_hosts_file()'s, for Windows and OpenSSH before 8.5); notes: the header's lines
    (invitation.notes), each written as a comment."""
    lines = [*_comments(notes), f"Host {GUEST_HOST}"]
    lines += [_option_line(k, v) for k, v in _host_hop(route, known_hosts)]
    return "\n".join(lines + ["", *OWN_CONFIG]) + "\n"


def _option_line(key: str, value: str) -> str:
    """One ssh_config line. ssh_config has no quoting that would make a second line or a
    `Match exec` harmless, so a value that could carry one is refused, not escaped."""
    printable(value, f"the guest's ssh option {key}")
    if value.startswith("-") or '"' in value:
        raise UnsafeText(f"the guest's ssh option {key} would be {value!r}; refusing to write it")
    return f"    {key} {value}"


def _options(pairs: list[tuple[str, str]]) -> list[str]:
    return [f"-o{k}={v}" for k, v in pairs if k not in ("HostName", "Port", "User")]


def command(route: GuestRoute) -> str:
    """One self-contained OpenSSH command line (POSIX shell), no files needed."""
    jump = ["ssh", *_options(_relay_hop(route)), "-p", str(route.relay_port), "-W", f"localhost:{route.tunnel_port}",
            f"{GUEST_USER}@{route.relay_address}"]
    argv = ["ssh", *_options(_host_hop(route)), f"-oProxyCommand={shlex.join(jump)}",
            "-p", str(route.tunnel_port), f"{route.host_user}@localhost"]
    return printable(shlex.join(argv), "the guest's ssh command")


def direct_command(route: DirectRoute) -> str:
    """The one command (OpenSSH 8.5+) straight to the host's sshd."""
    argv = ["ssh", *_options(_host_hop(route)), "-p", str(route.port), f"{route.host_user}@{route.address}"]
    return printable(shlex.join(argv), "the guest's ssh command")
