"""The running hook's shared ports: which there are, which guest's line may open them, and `pairing share` /
`pairing unshare` through the control channel (pairing/shared_ports.py says what a shared port is).

A change rewrites the guests' key lines at once (sshd reads them at each login), so it holds from each
guest's next connection on; a connection already open keeps what its line said when it logged in. The
lines follow the room too: a guest kicked, or switched to watching, loses the ports on their next
connection (viewers get them only with --share-port-viewers). With the own sshd, a kick also ends every
connection of the guest's key, those without a terminal (ssh -N, a forward alone) too: connections.py.
"""

from __future__ import annotations

import threading
from dataclasses import asdict
from typing import Callable, Sequence

from ..names import NamedKey
from ..shared_ports import ShareError, SharedPort, check, listing, parse
from .connections import end_connections
from .control import Handler
from .guests import SharedWith
from .room import Room
from .sshd import PrivateSshd

NEXT = "from each guest's next connection on (one already open keeps what it had)"


class Shares:
    """`apply(shared_with)` writes every guest's line again, asking shared_with(guest) for its ports;
    `invite(shared)`, when the run knows the invite's path, writes it again."""

    def __init__(self, shared: Sequence[SharedPort], viewers: bool, reserved: dict[int, str], room: Room,
                 invite: Callable[[tuple[SharedPort, ...]], None] | None = None) -> None:
        self.shared, self.viewers, self.reserved, self.room, self.invite = tuple(shared), viewers, reserved, room, invite
        self.apply: Callable[[SharedWith], None] | None = None
        self.sshd: PrivateSshd | None = None  # the own sshd, whose connections a kick ends
        self.roster: Callable[[], Sequence[NamedKey]] = lambda: ()  # the run's guests now (`pairing add` adds)
        self.lock = threading.Lock()

    def shared_with(self, guest: NamedKey) -> tuple[SharedPort, ...]:
        """The ports this guest's line grants now: typing guests (as the host set them), viewers with
        --share-port-viewers; a kicked guest none."""
        room = self.room
        typing = room.typing.get(guest.name, guest.typing)
        if guest.name in room.banned or not (typing or self.viewers):
            return ()
        return self.shared

    def reserve(self, port: int, what: str) -> None:
        """A port known once running (the own sshd's): `pairing share` refuses it from then on."""
        self.reserved[port] = what

    def handler(self, inner: Handler) -> Handler:
        """The room's handler, with share/unshare answered here, `who` told what is shared, and the lines
        written again after a kick, watch or drive."""
        def handle(request: dict, pid: int, reply: Callable[[dict], None], gone: Callable[[], bool]) -> None:
            op = request.get("op")
            if op in ("share", "unshare"):
                reply(self._change(op, request.get("port")))
            elif op == "who":
                inner(request, pid, lambda answer: reply({**answer, **self.said()}), gone)
            else:
                inner(request, pid, reply, gone)
                if op in ("kick", "watch", "drive"):
                    self._rewrite()
                if op == "kick":
                    self._end_connections(request.get("name"))
        return handle

    def own_sshd(self, sshd: PrivateSshd, roster: Callable[[], Sequence[NamedKey]],
                 lines: Callable[[SharedWith], list[str]]) -> None:
        """The guests' lines (lines(shared_with)) go to this sshd, and a kick ends that guest's connections to it
        (roster(): the run's guests now); from its start on, when its port is known (and refused to `pairing share`)."""
        self.sshd, self.roster = sshd, roster
        self.reserve(sshd.port, "your own sshd's port")
        self.apply = lambda shared_with: sshd.set_guests(lines(shared_with))

    def _end_connections(self, name: object) -> None:
        sshd, keys = self.sshd, {g.key.fingerprint for g in self.roster() if g.name == name}
        if sshd is None or sshd.process is None or not keys or name not in self.room.banned:
            return
        ended = end_connections(sshd.process.pid, sshd.port, sshd.log, keys)
        if ended:
            self.room.console.said(f"ended {ended} connection{'s' * (ended != 1)} of {name}'s key to your sshd "
                                   "(forwards too)")

    def said(self) -> dict:
        return {"shared": [asdict(p) for p in self.shared], "shared_viewers": self.viewers,
                "shared_line": listing(self.shared, self.viewers)}

    def _change(self, op: str, text: object) -> dict:
        if not isinstance(text, str) or len(text) > 32:
            return {"error": "no port given; e.g. pairing share 3000"}
        try:
            port = parse(text, f"pairing {op}")
        except ShareError as exc:
            return {"error": str(exc)}
        with self.lock:
            if op == "share":
                problems = check([(text, port)], self.reserved, self.shared, f"pairing {op}")
                if problems:
                    return {"error": problems[0]}
                self.shared = tuple(sorted(self.shared + (port,)))
                done = f"shared: {port.said()}"
            else:
                gone = tuple(p for p in self.shared if p.host == port.host)
                if not gone:
                    return {"error": f"the host's port {port.host} is not shared; {listing(self.shared, self.viewers)}"}
                self.shared = tuple(p for p in self.shared if p.host != port.host)
                done = f"no longer shared: the host's port {port.host}"
        self._rewrite()
        if self.invite:
            self.invite(self.shared)
        self.room.console.said(f"{done} (pairing {op}), {NEXT}")
        again = "" if self.invite else "; `pairing invite` writes the guests' invite with it"
        return {"ok": f"{done}, {NEXT}{again}"}

    def _rewrite(self) -> None:
        if self.apply:
            with self.lock:
                self.apply(self.shared_with)
