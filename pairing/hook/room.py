"""Who is in: this run's guests by name, their gates and tmux clients, and what the host decided about them.

The control channel's requests land here (handle): a guest's gate asking to join, and the host's commands
(who, kick, watch, drive, allow, deny). A gate let in execs `tmux attach` with its own PID, so the tmux
client whose #{client_pid} is that PID is that guest; any other client (the host's own terminals) is
nobody's, never listed nor counted. The hook's loop calls tick() each second with tmux's clients: joins
and leaves by name, and a kicked guest's or a mode's drift set right. Everything shown goes to the Console;
what a guest is told (switched, removed, the session ended) goes to their own tmux client. With --ask each
join waits for the host's answer about that guest by name (consent.py).
"""

from __future__ import annotations

import re
import subprocess
import threading
import time
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

from ..names import NamedKey
from ..text import did_you_mean
from ..tmux import Client, Snapshot, Tmux
from .consent import ASK_FOR, Consent, Question
from .console import Console
from .lock import alive

FORGET_UNSEEN = 15.0  # s: a gate let in whose tmux client never showed (no terminal, say) is forgotten
TOLD_MS = 10000  # how long a line to a guest stays on their tmux status line
FAREWELL_WAIT = 3.0  # s the host's stop waits for its guests' connections to close, their last line sent
COMMANDS = ("kick", "watch", "drive", "allow", "deny")


@dataclass(frozen=True)
class Guest:
    """One line of `pairing who`."""

    name: str
    state: str  # typing, watching, waiting
    since: float
    idle: float | None = None  # s since their last key; None while waiting


@dataclass
class _Gate:
    name: str
    since: float
    client: Client | None = None  # once tmux lists it


class Room:
    def __init__(self, roster: Sequence[NamedKey], tmux: Tmux, session: str, console: Console, ask: bool,
                 host: str) -> None:
        # The host's login name goes into lines guests see (and a farewell tmux echoes): plain, else "the host".
        host = host if re.fullmatch(r"[A-Za-z0-9._-]{1,32}", host) else "the host"
        self.tmux, self.session, self.console, self.host = tmux, session, console, host
        self.removed = f"pairing: {host} removed you from this session"
        self.ended = f"pairing: {host} ended the session"
        self.typing = {k.name: k.typing for k in roster}  # what each is to be: the host may switch it
        self.banned: set[str] = set()
        self.gates: dict[int, _Gate] = {}  # by PID
        self.joining = 0  # gates being answered now
        self.closing = False  # the host is stopping (farewell): nobody is let in any more
        self.lock = threading.RLock()
        self.consent = Consent(tmux, console, self.lock) if ask else None  # --ask's questions

    def handle(self, request: dict, pid: int, reply: Callable[[dict], None],
               gone: Callable[[], bool] = lambda: False) -> None:
        op, name = request.get("op"), request.get("name")
        if op == "hello":
            reply({"session": self.session, "tmux_socket": self.tmux.socket})
        elif op == "join" and isinstance(name, str):
            self._join(name, pid, reply, gone)
        elif op == "who":
            reply({"session": self.session, "guests": [asdict(g) for g in self.guests()]})
        elif op in COMMANDS and isinstance(name, str):
            reply(self._command(op, name))
        else:
            reply({"error": f"unknown request {op!r}"})

    # --- a guest's gate --------------------------------------------------------------

    def _join(self, name: str, pid: int, reply: Callable[[dict], None], gone: Callable[[], bool]) -> None:
        if name not in self.typing:
            reply({"answer": "out", "reason": "this key's name is not one of this session's guests"})
            return
        with self.lock:
            self.joining += 1
        try:
            self._answer(name, pid, reply, gone)
        finally:
            with self.lock:
                self.joining -= 1

    def _answer(self, name: str, pid: int, reply: Callable[[dict], None], gone: Callable[[], bool]) -> None:
        if self.consent and name not in self.banned and not self.closing:
            verdict = self.consent.ask(name, self.typing[name], self._host_clients,
                                       lambda: reply({"answer": "wait", "host": self.host}), gone)
            if verdict == "gone" or (verdict == "allow" and gone()):
                return
            if verdict != "allow":
                reasons = {"deny": f"{self.host} did not let you in", "kick": self.removed.removeprefix("pairing: "),
                           "unanswered": f"{self.host} did not answer within {ASK_FOR:.0f} s",
                           "ended": self.ended.removeprefix("pairing: ")}
                reply({"answer": "out", "reason": reasons[verdict]})
                return
        with self.lock:  # a kick or the stop is either before this, and refuses, or after, and finds the gate
            banned, closing = name in self.banned, self.closing
            if not (banned or closing):
                self.gates[pid] = _Gate(name, time.time())
            read_only = not self.typing[name]
        if closing:
            reply({"answer": "out", "reason": self.ended.removeprefix("pairing: ")})
            return
        if banned:
            self.console.kept_out(name)
            reply({"answer": "out", "reason": self.removed.removeprefix("pairing: ")})
            return
        reply({"answer": "in", "read_only": read_only})

    def _host_clients(self) -> tuple[Client, ...]:
        """The host's own tmux clients: every client of the server but the guests' (gates read after tmux:
        a guest let in meanwhile is never counted as the host)."""
        everywhere = self.tmux.snapshot(self.session).everywhere
        with self.lock:
            return tuple(c for c in everywhere if c.pid not in self.gates)

    # --- the host's commands ---------------------------------------------------------

    def _command(self, op: str, name: str) -> dict:
        with self.lock:
            if name not in self.typing:
                near = did_you_mean(name, self.typing)
                return {"error": f"no guest is called {name!r}{near}; {self._connected_text()}"}
            if op == "allow" and name in self.banned:  # a kicked guest let back, for this run
                self.banned.discard(name)
                self.console.let_back(name)
                asked = "; you will be asked when they do (--ask)" if self.consent else ""
                return {"ok": f"{name} is no longer kept out; they may join again{asked}"}
            if op in ("allow", "deny"):
                if not (self.consent and self.consent.decide(name, op)):
                    queue = sorted(q.name for q in self._asked())
                    return {"error": f"{name} is not waiting to join; "
                                     + (f"waiting: {', '.join(queue)}" if queue else "nobody is waiting")}
                return {"ok": f"{'let' if op == 'allow' else 'turned'} {name} {'in' if op == 'allow' else 'away'}"}
            clients = self._clients_of(name)
            if op == "kick":
                self.banned.add(name)
                if self.consent:
                    self.consent.decide(name, "kick")
                for client in clients:
                    self.tmux.detach(client.tty, self.removed)
                self.console.kicked(name, len(clients))
                return {"ok": f"kicked {name} ({len(clients)} connection{'s' * (len(clients) != 1)} ended); "
                              f"kept out until pairing allow {name}"}
            typing = op == "drive"
            self.typing[name] = typing
            for client in clients:
                self.tmux.set_read_only(client, not typing)
            now = "typing" if typing else "watching"
            self.tmux.tell(tuple(clients), f"pairing: {self.host} switched you to {now}", TOLD_MS)
            self.console.mode(name, typing)
            return {"ok": f"{name} is {now} now" if clients else f"{name} is not connected; will be {now} on joining"}

    def add(self, name: str, typing: bool) -> None:
        """A guest added while the room is open (`pairing add`): known by name from now on."""
        with self.lock:
            self.typing[name] = typing

    def farewell(self) -> None:
        """The host is stopping: waiting guests are told so, each guest's tmux client ends with that line last
        on their screen. Returns once their connections have closed (FAREWELL_WAIT s at most), so that the line
        has gone out before the way in (tunnel, sshd) does."""
        with self.lock:
            self.closing = True
            pids = set(self.gates)
        if self.consent:
            self.consent.end()
        clients = [c for c in self.tmux.snapshot(self.session).everywhere if c.pid in pids]
        sessions = {_parent(c.pid) for c in clients} - {None, 0, 1}  # each guest's sshd session process
        for client in clients:
            self.tmux.detach(client.tty, self.ended)
        going = {c.pid for c in clients} | sessions
        deadline = time.monotonic() + FAREWELL_WAIT
        while time.monotonic() < deadline and (self.joining or any(alive(pid) for pid in going)):
            time.sleep(0.05)  # processes of others' (sshd's) making: nothing to wait on but a look
        if clients:
            self.console.farewell(len(clients))

    def _clients_of(self, name: str) -> list[Client]:
        """That guest's tmux clients now (a fresh look: a stale one could toggle a flag twice)."""
        pids = {pid for pid, gate in self.gates.items() if gate.name == name}
        return [c for c in self.tmux.snapshot(self.session).everywhere if c.pid in pids]

    def _asked(self) -> list[Question]:
        """The guests waiting for the host's answer (--ask)."""
        return self.consent.waiting() if self.consent else []

    def _connected_text(self) -> str:
        names = sorted({g.name for g in self.gates.values()} | {q.name for q in self._asked()})
        return f"connected: {', '.join(names)}" if names else "nobody is connected"

    # --- what is shown ---------------------------------------------------------------

    def guests(self) -> list[Guest]:
        clients = {c.pid: c for c in self.tmux.snapshot(self.session).everywhere}
        now = time.time()
        with self.lock:
            rows = [Guest(g.name, "watching" if clients[pid].read_only else "typing", g.since,
                          max(0.0, now - clients[pid].activity))
                    for pid, g in self.gates.items() if pid in clients]
            rows += [Guest(q.name, "waiting", q.since) for q in self._asked()]
        return sorted(rows, key=lambda g: (g.since, g.name))

    def tick(self, now_seen: Snapshot) -> tuple[Client, ...]:
        """What tmux has now: joins and leaves said, kicked guests' clients detached, a client whose
        read-only flag is not what the host chose set right. A guest is followed into whichever session
        (a watcher may switch: C-b ( and C-b )). Returns the guests' clients."""
        if self.consent:
            self.consent.tick()
        clients = now_seen.clients
        by_pid = {c.pid: c for c in now_seen.everywhere}
        now = time.time()
        joined: list[tuple[str, bool]] = []
        left: list[str] = []
        with self.lock:
            for pid, gate in list(self.gates.items()):
                client = by_pid.get(pid)
                if client is None:
                    if gate.client is not None or now - gate.since > FORGET_UNSEEN:
                        del self.gates[pid]
                        if gate.client is not None:
                            left.append(gate.name)
                    continue
                if gate.client is None:
                    joined.append((gate.name, self.typing[gate.name]))
                gate.client = client
                if gate.name in self.banned:
                    self.tmux.detach(client.tty, self.removed)
                elif client.read_only == self.typing[gate.name]:
                    for c in [c for c in self._clients_of(gate.name) if c.pid == pid and c.read_only == client.read_only]:
                        if not c.read_only:  # a binding of the host's to switch-client -r, pressed by a watcher
                            self.console.warning(f"{gate.name} made their tmux client typing (a key bound to "
                                                 "switch-client -r?); set back to watching")
                        self.tmux.set_read_only(c, not self.typing[gate.name])
            ours = tuple(c for c in now_seen.everywhere if c.pid in self.gates)
        for name, typing in joined:
            self.console.guest_joined(name, typing)
            self.tmux.tell(clients, f"pairing: {name} joined ({'typing' if typing else 'watching'})")
        for name in left:
            self.console.guest_left(name)
            self.tmux.tell(clients, f"pairing: {name} left")
        return ours


def _parent(pid: int) -> int | None:
    """pid's parent process (Linux's /proc; elsewhere ps), None if gone or unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return int(stat.read().rpartition(b")")[2].split()[1])
    except (OSError, ValueError, IndexError):
        pass
    try:
        found = subprocess.run(["ps", "-o", "ppid=", "-p", str(pid)], capture_output=True, text=True, timeout=5)
        return int(found.stdout.strip())
    except (OSError, ValueError, subprocess.SubprocessError):
        return None
