"""Who is in: this run's guests by name, their gates and tmux clients, and what the host decided about them.

The control channel's requests land here (handle): a guest's gate asking to join, and the host's commands
(who, kick, watch, drive, allow, deny). A gate let in execs `tmux attach` with its own PID, so the tmux
client whose #{client_pid} is that PID is that guest; any other client (the host's own terminals) is
nobody's, never listed nor counted. The hook's loop calls tick() each second with tmux's clients: joins
and leaves by name, and a kicked guest's or a mode's drift set right. Everything shown goes to the Console.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

from ..names import NamedKey
from ..tmux import Client, Snapshot, Tmux
from .console import Console
from .prompt import allow_option

ASK_FOR = 60.0  # s a joining guest waits for the host's yes (--ask)
FORGET_UNSEEN = 15.0  # s: a gate let in whose tmux client never showed (no terminal, say) is forgotten
POLL = 0.5  # s between looks at the tmux prompt's yes (the terminal's and pairing allow's wake it at once)
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


@dataclass
class _Pending:
    name: str
    since: float
    decided: threading.Event = field(default_factory=threading.Event)
    verdict: str = "unanswered"  # allow, deny, kick


class Room:
    def __init__(self, roster: Sequence[NamedKey], tmux: Tmux, session: str, console: Console, ask: bool,
                 host: str) -> None:
        # The host's login name goes into lines guests see (and a farewell tmux echoes): plain, else "the host".
        host = host if re.fullmatch(r"[A-Za-z0-9._-]{1,32}", host) else "the host"
        self.tmux, self.session, self.console, self.ask, self.host = tmux, session, console, ask, host
        self.removed = f"pairing: {host} removed you from this session"
        self.typing = {k.name: k.typing for k in roster}  # what each is to be: the host may switch it
        self.banned: set[str] = set()
        self.gates: dict[int, _Gate] = {}  # by PID
        self.pending: list[_Pending] = []
        self.lock = threading.RLock()
        self.terminal = False  # whether a line typed in the hook's terminal answers (prompt.TerminalAnswers)

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
        if self.ask and name not in self.banned and not self._consent(name, reply, gone):
            return
        with self.lock:  # a kick is either before this, and refuses, or after, and finds the gate
            banned = name in self.banned
            if not banned:
                self.gates[pid] = _Gate(name, time.time())
            read_only = not self.typing[name]
        if banned:
            self.console.kept_out(name)
            reply({"answer": "out", "reason": self.removed.removeprefix("pairing: ")})
            return
        reply({"answer": "in", "read_only": read_only})

    def _consent(self, name: str, reply: Callable[[dict], None], gone: Callable[[], bool]) -> bool:
        """The host's yes within ASK_FOR s; else the guest is told why and let go (or gave up: gone())."""
        waiting = _Pending(name, time.time())
        with self.lock:
            self.pending.append(waiting)
        option, mode = allow_option(name), "typing" if self.typing[name] else "watching"
        self.tmux.unset(option)  # a yes from an earlier prompt is not this one's
        self.console.asks(name, self.typing[name], ASK_FOR, self.terminal)
        everywhere = self.tmux.snapshot(self.session).everywhere
        with self.lock:  # the gates after the look at tmux: a guest let in meanwhile is never asked
            hosts = tuple(c for c in everywhere if c.pid not in self.gates)
        self.tmux.confirm(hosts, f"pairing: let {name} in ({mode})? (y/n)", f"set-option -g {option} 1")
        reply({"answer": "wait", "host": self.host})
        deadline = time.monotonic() + ASK_FOR
        while not waiting.decided.wait(POLL) and time.monotonic() < deadline:
            if self.tmux.option(option) == "1":  # the host's y in the tmux prompt
                with self.lock:
                    waiting.verdict = "allow" if waiting.verdict == "unanswered" else waiting.verdict
                break
            if gone():
                with self.lock:
                    waiting.verdict = "gone" if waiting.verdict == "unanswered" else waiting.verdict
                break
        self.tmux.unset(option)
        with self.lock:
            self.pending.remove(waiting)
            verdict = waiting.verdict
        if verdict == "allow" and not gone():
            return True
        if verdict in ("allow", "gone"):
            self.console.gave_up(name)
            return False
        self.console.turned_away(name, verdict)
        reasons = {"deny": f"{self.host} did not let you in", "kick": self.removed.removeprefix("pairing: "),
                   "unanswered": f"{self.host} did not answer within {ASK_FOR:.0f} s"}
        reply({"answer": "out", "reason": reasons[verdict]})
        return False

    # --- the host's commands ---------------------------------------------------------

    def _command(self, op: str, name: str) -> dict:
        with self.lock:
            if name not in self.typing:
                return {"error": f"no guest is called {name!r}; {self._connected_text()}"}
            if op in ("allow", "deny"):
                waiting = [p for p in self.pending if p.name == name and not p.decided.is_set()]
                if op == "allow" and not waiting and name in self.banned:  # a kicked guest, let back
                    self.banned.discard(name)
                    self.console.said(f"{name} may join again")
                    return {"ok": f"{name} may join again"}
                if not waiting:
                    queue = sorted({p.name for p in self.pending})
                    return {"error": f"{name} is not waiting to join; "
                                     + (f"waiting: {', '.join(queue)}" if queue else "nobody is waiting")}
                for p in waiting:
                    p.verdict = op
                    p.decided.set()
                return {"ok": f"{'let' if op == 'allow' else 'turned'} {name} {'in' if op == 'allow' else 'away'}"}
            clients = self._clients_of(name)
            if op == "kick":
                self.banned.add(name)
                for p in self.pending:
                    if p.name == name:
                        p.verdict = "kick"
                        p.decided.set()
                for client in clients:
                    self.tmux.detach(client.tty, self.removed)
                self.console.kicked(name, len(clients))
                return {"ok": f"kicked {name} ({len(clients)} connection{'s' * (len(clients) != 1)} ended); "
                              f"kept out until pairing allow {name}"}
            typing = op == "drive"
            self.typing[name] = typing
            for client in clients:
                self.tmux.set_read_only(client, not typing)
            self.console.mode(name, typing)
            now = "typing" if typing else "watching"
            return {"ok": f"{name} is {now} now" if clients else f"{name} is not connected; will be {now} on joining"}

    def add(self, name: str, typing: bool) -> None:
        """A guest added while the room is open (`pairing add`): known by name from now on."""
        with self.lock:
            self.typing[name] = typing

    def answer_oldest(self, yes: bool) -> None:
        """The host's y or n in the hook's terminal: for the guest waiting longest."""
        with self.lock:
            waiting = [p for p in self.pending if not p.decided.is_set()]
            if not waiting:
                self.console.said("nobody is waiting to join")
                return
            waiting[0].verdict = "allow" if yes else "deny"
            waiting[0].decided.set()

    def _clients_of(self, name: str) -> list[Client]:
        """That guest's tmux clients now (a fresh look: a stale one could toggle a flag twice)."""
        pids = {pid for pid, gate in self.gates.items() if gate.name == name}
        return [c for c in self.tmux.snapshot(self.session).everywhere if c.pid in pids]

    def _connected_text(self) -> str:
        names = sorted({g.name for g in self.gates.values()} | {p.name for p in self.pending})
        return f"connected: {', '.join(names)}" if names else "nobody is connected"

    # --- what is shown ---------------------------------------------------------------

    def guests(self) -> list[Guest]:
        clients = {c.pid: c for c in self.tmux.snapshot(self.session).everywhere}
        now = time.time()
        with self.lock:
            rows = [Guest(g.name, "watching" if clients[pid].read_only else "typing", g.since,
                          max(0.0, now - clients[pid].activity))
                    for pid, g in self.gates.items() if pid in clients]
            rows += [Guest(p.name, "waiting", p.since) for p in self.pending]
        return sorted(rows, key=lambda g: (g.since, g.name))

    def tick(self, now_seen: Snapshot) -> tuple[Client, ...]:
        """What tmux has now: joins and leaves said, kicked guests' clients detached, a client whose
        read-only flag is not what the host chose set right. A guest is followed into whichever session
        (a watcher may switch: C-b ( and C-b )). Returns the guests' clients."""
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
