"""This run's guests as they change while it runs, and the relay's end: `pairing add`, the relay's side of
`pairing kick` and `allow`, `pairing extend`, and the end `pairing status` shows.

The control channel's requests come here first (handle); the room (room.py) answers the rest. Whoever is let
in is written in three places, each whole or not at all: the guests' sshd's keys (the own sshd's file, or the
block in --authorized-keys), the room's roster, and the relay's live list (relay_guests.py; `pairing direct`
has no relay). A kicked guest leaves the relay's list, so the relay refuses their key; `pairing allow` puts
it back.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import threading
from dataclasses import replace
from pathlib import Path
from typing import Callable, Sequence

from ..names import GuestNameError, NamedKey, check_name, unique
from ..outputs import StackOutputs
from ..relay_guests import OldRelay, RelayEnd, RelayError, RelayGuests
from ..sshkeys import InvalidKey, PublicKey, parse_public_key
from .console import Console
from .own_sshd import private_folder, state_base
from .room import Room

MAX_EXTEND = 7 * 24 * 3600  # s; the relay caps it at its own latest end anyway
INVITE_NAME = "pairing-{name}.conf"  # `pairing add`'s invite, without --invite


class LiveGuests:
    def __init__(self, room: Room, guests: Sequence[NamedKey], host_key: PublicKey, console: Console,
                 lines: Callable[[Sequence[NamedKey]], list[str]],
                 invite: Callable[[Sequence[NamedKey], NamedKey, Path], str],
                 relay: RelayGuests | None = None, moved: Callable[[RelayEnd], None] = lambda _: None) -> None:
        """lines: the guests' sshd's key lines for these guests; invite: writes one guest's invite file (the
        guests, that one, where) and says what to tell them; moved: told the relay's new end."""
        self.room, self.host_key, self.console, self.relay = room, host_key, console, relay
        self.lines, self.invite, self.moved = lines, invite, moved
        # Each key carries its name as its comment, so an invite's roster names each as the room does.
        self.guests = [NamedKey(g.name, PublicKey(g.key.kind, g.key.blob, g.name), g.typing) for g in guests]
        self.install: Callable[[list[str]], None] | None = None  # once the guests' sshd keys exist
        self.asked: Callable[[dt.datetime], None] = lambda _: None  # told an end the host asked for
        self.ends: RelayEnd | None = None
        self.fixed: str | None = None  # why the relay's guests cannot change (one made before the live list)
        self.changing = threading.Lock()  # one change at a time, each written everywhere before the next

    def start(self) -> None:
        """At the run's start: the relay lets on this run's guests (and the host's key), and says its end."""
        if self.relay:
            with self.changing:
                self.relay.set_guests(self.admitted(), self.host_key)
                self.ends = self.relay.end()

    def admitted(self) -> list[NamedKey]:
        """The guests the relay lets on: every one but the kicked."""
        with self.room.lock:
            banned = set(self.room.banned)
        return [g for g in self.guests if g.name not in banned]

    def handle(self, request: dict, pid: int, reply: Callable[[dict], None],
               gone: Callable[[], bool] = lambda: False) -> None:
        op = request.get("op")
        if op == "add":
            reply(self._add(request))
        elif op == "extend":
            reply(self._extend(request.get("seconds")))
        elif op == "ends":
            reply(self._ends())
        elif op in ("kick", "allow"):
            answers: list[dict] = []
            self.room.handle(request, pid, answers.append, gone)
            answer = answers[0] if answers else {"error": "the room gave no answer"}
            if "ok" in answer and self.relay:
                answer = self._relay_follows(answer)
            reply(answer)
        else:
            self.room.handle(request, pid, reply, gone)

    def _relay_follows(self, answer: dict) -> dict:
        """After a kick or an allow: the relay's list as the room now has it."""
        try:
            with self.changing:
                self.relay.set_guests(self.admitted(), self.host_key)
        except RelayError as exc:
            self.console.warning(f"the relay's guest list was not changed: {exc}")
            return {"ok": f"{answer['ok']}; but the relay's guest list was not changed: {exc}"}
        return answer

    def _add(self, request: dict) -> dict:
        try:
            key = parse_public_key(request.get("key") if isinstance(request.get("key"), str) else "")
            name = check_name(key.comment)
        except (InvalidKey, GuestNameError) as exc:
            return {"error": f"not a guest's key line: {exc}"}
        if self.fixed:
            return {"error": self.fixed}
        typing, given, where = request.get("typing"), request.get("given"), request.get("invite")
        if not isinstance(typing, bool) or not isinstance(given, bool) or not isinstance(where, str) \
                or not Path(where).is_absolute():
            return {"error": "a malformed add request"}
        with self.changing:
            for g in self.guests:
                if g.key.blob == key.blob:
                    return {"error": f"that key is already {g.name}'s"}
            if key.blob == self.host_key.blob:
                return {"error": "that key is the host's own (hostPublicKey); a guest needs a key of their own"}
            taken = {g.name for g in self.guests}
            if given and name in taken:
                return {"error": f"a guest is already called {name}; pick another name: NAME=SOURCE"}
            name = unique(name, taken) if not given else name
            if name is None:
                return {"error": f"no free name from {key.comment!r}; give one: NAME=SOURCE"}
            if not request.get("named"):  # the name the file was to have may have been made unique
                where = str(Path(where).parent / INVITE_NAME.format(name=name))
            added = NamedKey(name, PublicKey(key.kind, key.blob, name), typing)
            after = [*self.guests, added]
            try:
                if self.relay:  # first: a relay that refuses leaves everything as it was
                    with self.room.lock:
                        banned = set(self.room.banned)
                    self.relay.set_guests([g for g in after if g.name not in banned], self.host_key)
                if self.install:
                    self.install(self.lines(after))
            except (RelayError, OSError) as exc:
                return {"error": f"{name} was not added: {exc}"}
            self.guests = after
            self.room.add(name, typing)
        self.console.said(f"added {name} ({'typing' if typing else 'watching'}); they can join now")
        try:
            told = self.invite(after, added, Path(where))
        except (OSError, ValueError) as exc:
            return {"ok": f"added {name}, who can join now; but their invite was not written: {exc}"}
        return {"ok": f"added {name} ({'typing' if typing else 'watching'}), who can join now", "invite": told}

    def _extend(self, seconds: object) -> dict:
        if not self.relay:
            return {"error": "there is no relay to extend: pairing direct ends when you stop it"}
        if isinstance(seconds, bool) or not isinstance(seconds, int) or not 0 < seconds <= MAX_EXTEND:
            return {"error": "a malformed extend request"}
        try:
            with self.changing:
                current = self.ends or self.relay.end()
                wanted = max(current.ends, dt.datetime.now(dt.timezone.utc)) + dt.timedelta(seconds=seconds)
                self.ends = self.relay.move_end(wanted)
                self.asked(wanted)
        except (RelayError, OSError) as exc:
            return {"error": f"the relay's end was not moved: {exc}"}
        self.moved(self.ends)
        said = f"the relay now ends at {self.ends.ends:%Y-%m-%dT%H:%M:%SZ}"
        if self.ends.ends < wanted:
            said += f", its latest (maxTtlMinutes); asked {wanted:%Y-%m-%dT%H:%M:%SZ}"
        self.console.said(said)
        return {"ok": said}

    def _ends(self) -> dict:
        if self.ends is None:
            return {"error": "this run knows no relay end"}
        return {"ends": self.ends.ends.timestamp(), "latest": self.ends.latest.timestamp()}


def start_live(live: LiveGuests, outputs: StackOutputs, console: Console) -> StackOutputs:
    """The relay's guest list set and its end read; the outputs with the end this run holds the tunnel until
    (trusted_end). A relay from before the live list keeps the guests it was made with: said, the run goes on."""
    try:
        live.start()
    except OldRelay as exc:
        console.warning(str(exc))
        live.relay, live.fixed = None, f"no guest can be added: {exc}"
        return outputs
    return replace(outputs, expires_at=trusted_end(outputs, live.ends.ends)) if live.ends else outputs


def trusted_end(outputs: StackOutputs, claimed: dt.datetime) -> dt.datetime:
    """The relay's end as the host may believe it: what the relay claims, but never later than the latest end
    the host itself knows of, the outputs' (its launch and TTL) or one it asked for (asked_ends). A relay that
    claims to live on (a compromised one can) is still left then: the tunnel gives up past it."""
    return min(claimed, max(outputs.expires_at, asked_end(outputs) or outputs.expires_at))


def _asked_path(outputs: StackOutputs) -> Path:
    digest = hashlib.sha256(f"{outputs.instance_id}\0{outputs.relay_host_keys[0].bare}".encode()).hexdigest()[:16]
    return state_base() / "relays" / f"asked-{digest}"


def remember_asked(outputs: StackOutputs, when: dt.datetime) -> None:
    """An end this host asked the relay for (pairing extend, a reused relay): the hook may believe it later."""
    path = _asked_path(outputs)
    private_folder(path.parent)
    temp = path.with_suffix(".tmp")
    temp.write_text(f"{int(when.timestamp())}\n")
    os.replace(temp, path)


def asked_end(outputs: StackOutputs) -> dt.datetime | None:
    try:
        return dt.datetime.fromtimestamp(int(_asked_path(outputs).read_text().strip()), dt.timezone.utc)
    except (OSError, ValueError, OverflowError):
        return None


def invite_for(outputs: StackOutputs, live: LiveGuests, guests, added, path: Path, shared=None) -> str:
    """`pairing add`'s invite: as `pairing invite --for NAME` writes it, from the outputs with this run's guests
    (and shared: the ports the run shares now, and whether viewers get them)."""
    from ..invite import write_invite

    now = replace(outputs, guest_keys=tuple(g.key for g in guests if g.typing),
                  viewer_keys=tuple(g.key for g in guests if not g.typing),
                  expires_at=live.ends.ends if live.ends else outputs.expires_at)
    return write_invite(now, path, for_name=added.name, shared=shared)
