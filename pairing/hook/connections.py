"""Ending a kicked guest's connections to the own sshd, those with no terminal too.

A kick detaches the guest's tmux client, which ends a connection that has a session. One made with
`ssh -N` (a shared port's forward alone: shared_ports.py) has no session, no gate and no tmux client, and
would keep its forward until it closed. So the hook finds every connection that guest's key logged in on
(the sshd's log, LogLevel VERBOSE: "Accepted publickey for USER from ADDR port PORT ssh2: TYPE SHA256:..."),
the sshd processes holding those TCP connections (their sockets in /proc/net/tcp{,6}), and ends them.

Linux only (/proc), and the own sshd only: its processes are the hook user's. The log is the sshd's own,
in the hook's private folder; a connection is matched by both ends, the sshd's port and the peer's
address and port, so no other process's socket is taken for it.
"""

from __future__ import annotations

import ipaddress
import os
import re
import signal
from pathlib import Path
from typing import Iterable

_LOGIN = re.compile(r"Accepted publickey for \S+ from (\S+) port (\d+) ssh2: \S+ (SHA256:[A-Za-z0-9+/]{43})")
Peer = tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]


def logins(log: str, fingerprints: set[str]) -> set[Peer]:
    """The peers (address, port) each login of one of these keys came from."""
    found: set[Peer] = set()
    for m in _LOGIN.finditer(log):
        if m.group(3) in fingerprints:
            try:
                found.add((_plain(ipaddress.ip_address(m.group(1))), int(m.group(2))))
            except ValueError:
                continue
    return found


def end_connections(root: int, port: int, log: Path, fingerprints: set[str]) -> int:
    """SIGTERM to each process under `root` (the sshd's watcher) holding a connection to local `port` from a
    peer these keys logged in from. Returns how many connections were ended."""
    try:
        peers = logins(log.read_text(errors="replace"), fingerprints)
    except OSError:
        return 0
    sockets = {inode: peer for inode, (local, peer) in _tcp().items() if local == port and peer in peers}
    ended: set[Peer] = set()
    for pid in _descendants(root):
        held = [sockets[inode] for inode in _socket_inodes(pid) if inode in sockets]
        if held:
            try:
                os.kill(pid, signal.SIGTERM)
                ended.update(held)
            except OSError:
                pass  # gone meanwhile
    return len(ended)


def _plain(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return getattr(address, "ipv4_mapped", None) or address


def _tcp() -> dict[int, tuple[int, Peer]]:
    """Every TCP socket of this network namespace: inode -> (local port, (remote address, remote port))."""
    table: dict[int, tuple[int, Peer]] = {}
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(name).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            try:
                local, remote, inode = fields[1], fields[2], int(fields[9])
                table[inode] = (int(local.rpartition(":")[2], 16), _peer(remote))
            except (IndexError, ValueError):
                continue
    return table


def _peer(text: str) -> Peer:
    """/proc/net/tcp's ADDRESS:PORT: the address in hex, 32-bit words in the host's byte order (little-endian)."""
    hexaddr, _, hexport = text.partition(":")
    raw = b"".join(bytes.fromhex(hexaddr[i:i + 8])[::-1] for i in range(0, len(hexaddr), 8))
    return _plain(ipaddress.ip_address(raw)), int(hexport, 16)


def _socket_inodes(pid: int) -> Iterable[int]:
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return []
    inodes = []
    for name in names:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{name}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.append(int(target[8:-1]))
    return inodes


def _descendants(root: int) -> list[int]:
    """Every process below `root` (by parent PID, read once from /proc)."""
    parents: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                parents[int(name)] = int(Path(f"/proc/{name}/stat").read_text().rpartition(")")[2].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    found, frontier = [], [root]
    while frontier:
        at = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == at and pid not in found]
        found += children
        frontier += children
    return found
