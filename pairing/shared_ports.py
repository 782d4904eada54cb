"""Ports the host shares with its guests: `--share-port PORT[:GUEST_PORT]` of `pairing host`, `up` and `direct`,
and `pairing share` / `unshare` while it runs (docs/shared-ports.md).

A shared port is a TCP port on the host's loopback that a guest may open, through their own end-to-end SSH
connection to the host's sshd, as GUEST_PORT on their machine's loopback (ssh's LocalForward). What lets them
is their authorized_keys line alone: `port-forwarding` and one `permitopen` per loopback spelling of each
shared port, and a `permitlisten` nobody can listen on (no -R). Nothing else is granted: no other host or
port, no agent, no X11; the relay forwards ciphertext to its one port, as before.

Values are parsed here once, into SharedPort, and every document is rendered from those.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Sequence

from .guest_flags import as_typed

FLAG = "--share-port"
LOW = 1024  # below this, binding a port needs root on the guest's machine
LOW_SHIFT = 8000  # so --share-port 80 opens as 8080 there
# How the guest's ssh may name the host's loopback (the invite writes localhost: sshd resolves it on the host,
# so a server on ::1 only, as Node's often is, is reached too); permitopen matches the name as sent.
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
# authorized_keys has no "none" for permitlisten: a name that never resolves (RFC 2606) and a privileged port
# (as the relay's lines: relay_documents.NOWHERE).
NOWHERE = "none.invalid:1"
_SHAPE = re.compile(r"([0-9]{1,6})(?::([0-9]{1,6}))?")


class ShareError(ValueError):
    """A shared port that cannot be; one line each, naming the flag or command as typed, and the fix."""


@dataclass(frozen=True, order=True)
class SharedPort:
    host: int  # on the host's loopback
    guest: int  # on the guest's loopback

    @property
    def spec(self) -> str:
        """As `--share-port` takes it back."""
        return str(self.host) if self.guest == self.host else f"{self.host}:{self.guest}"

    def said(self) -> str:
        """What the guest is told."""
        return f"http://localhost:{self.guest} on your machine opens the host's port {self.host}"


def parse(text: str, flag: str = FLAG) -> SharedPort:
    """`PORT` or `PORT:GUEST_PORT`. A PORT below 1024 without a GUEST_PORT opens as PORT+8000 on the guest's side."""
    shown = _shown(flag, text)
    found = _SHAPE.fullmatch(text.strip()) if text.isascii() else None
    if found is None:
        raise ShareError(f"{shown}: not PORT or PORT:GUEST_PORT; e.g. {flag} 3000, or {flag} 3000:3001 to open "
                         "it as 3001 on the guest's machine")
    host, guest = int(found[1]), None if found[2] is None else int(found[2])
    for port, whose in ((host, "the host's"), (guest, "the guest's")):
        if port is not None and not 0 < port <= 65535:
            raise ShareError(f"{shown}: {port} is not a TCP port ({whose}); use 1 to 65535, e.g. {flag} 3000")
    if guest is None:
        guest = host + LOW_SHIFT if host < LOW else host
    return SharedPort(host, guest)


def check(typed: Sequence[tuple[str, SharedPort]], reserved: dict[int, str], shared: Iterable[SharedPort] = (),
          flag: str = FLAG) -> list[str]:
    """The problems with adding `typed` ((as typed, parsed) pairs) to `shared`: a host port that is one of
    `reserved` (port -> what it is), a guest port given twice."""
    problems: list[str] = []
    taken = {p.guest: p.host for p in shared}
    for text, port in typed:
        shown = _shown(flag, text)
        if port.host in reserved:
            problems.append(f"{shown}: {port.host} is {reserved[port.host]}; share another port")
        elif port.guest in taken:
            free = next(n for n in range(port.guest + 1, port.guest + len(taken) + 2) if n not in taken)
            problems.append(f"{shown}: the guest's port {port.guest} is taken (by the host's port {taken[port.guest]}); "
                            f"give this one another: {flag} {port.host}:{free if free <= 65535 else 1024}")
        else:
            taken[port.guest] = port.host
    return problems


def _shown(flag: str, text: str) -> str:
    """The value as typed, after the flag (`--share-port 80`); after a command's own name, the value alone:
    its message is said as `pairing share: 80: ...`."""
    typed = as_typed(flag, text)
    return typed.removeprefix(flag + " ") if flag.startswith("pairing ") else typed


def from_flags(values: Sequence[str] | None, reserved: dict[int, str]) -> tuple[SharedPort, ...]:
    """Every --share-port value, checked together; ShareError says each problem on a line of its own."""
    problems: list[str] = []
    typed: list[tuple[str, SharedPort]] = []
    for text in values or ():
        try:
            typed.append((text, parse(text)))
        except ShareError as exc:
            problems.append(str(exc))
    problems += check(typed, reserved)
    if problems:
        raise ShareError("\n".join(problems))
    return tuple(port for _, port in typed)


def permit_options(shared: Sequence[SharedPort]) -> str:
    """The authorized_keys options that let a guest's connection open these host ports, and nothing else
    (`restrict` before them turned every forwarding off; this turns local forwarding back on for these)."""
    ports = sorted({p.host for p in shared})
    if not ports:
        return ""
    opens = ",".join(f'permitopen="{name}:{port}"' for port in ports for name in LOOPBACK_NAMES)
    return f'port-forwarding,{opens},permitlisten="{NOWHERE}",'


def local_forwards(shared: Sequence[SharedPort]) -> list[tuple[str, str]]:
    """The invite's LocalForward options."""
    return [("LocalForward", f"{p.guest} localhost:{p.host}") for p in shared]


def plink_forwards(shared: Sequence[SharedPort]) -> list[str]:
    """plink's -L options, the same forwards."""
    return [word for p in shared for word in ("-L", f"{p.guest}:localhost:{p.host}")]


def who(viewers: bool) -> str:
    return "every guest, viewers too" if viewers else "typing guests (not viewers)"


def header(shared: Sequence[SharedPort], viewers: bool, another: str) -> list[str]:
    """The invite's lines about the shared ports (none when nothing is shared); another: how to pick
    another port on the guest's machine (another_with_ssh, ANOTHER_WITH_PLINK)."""
    if not shared:
        return []
    return [
        f"Shared by the host with {who(viewers)}, while you are connected:",
        *(f"    {port.said()}" for port in shared),
        "A port already in use on your machine: your ssh warns (Address already in use) and goes on without it;",
        f"to use another, {another}",
    ]


def another_with_ssh(shared: Sequence[SharedPort], file_name: str) -> str:
    first = shared[0] if shared else SharedPort(3000, 3000)
    return f"add -L to your command, e.g.  ssh -F {file_name} -L {_other(first)}:localhost:{first.host} pairing"


ANOTHER_WITH_PLINK = "change the first number of its -L (GUEST_PORT:localhost:HOST_PORT) in the command below"


def _other(port: SharedPort) -> int:
    return port.guest + 1 if port.guest < 65535 else port.guest - 1


def listing(shared: Sequence[SharedPort], viewers: bool) -> str:
    """`pairing who`'s line."""
    if not shared:
        return "no port is shared (pairing share PORT shares one)"
    ports = ", ".join(f"{p.host} (their localhost:{p.guest})" for p in shared)
    return f"shared with {who(viewers)}: the host's port{'s' * (len(shared) > 1)} {ports}"

