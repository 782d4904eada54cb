"""--ask: a joining guest waits for the host's answer about them, by name; nothing here takes a key meant
for the pane.

One question per guest: every connection of that guest while it is open (a reconnect loop too) waits on
the same question, raised once. It is answered by `pairing allow NAME` / `pairing deny NAME` (the control
channel), or by a line typed in the hook's own terminal, which answers the question that terminal shows on
its bottom line (one at a time, oldest first) and no other. The host's own tmux clients get a notice
(display-message: it takes no keys; a key press only clears it and still reaches the pane) naming the
commands. Why not a tmux prompt: docs/SECURITY.md ("Consent").

A verdict holds while the guest's connections wait and LINGER s after the last one went: a reconnect
within it gets the same answer without a new question. Unanswered for ASK_FOR s: turned away.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from ..tmux import Client, Tmux
from .console import Console

ASK_FOR = 60.0  # s a question waits for the host's answer
LINGER = 10.0  # s a question outlives its guest's last waiting connection: a reconnect rejoins it
SETTLE = 1.0  # s the hook's terminal shows a question before a typed line may answer it
POLL = 0.5  # s between looks at whether a waiting guest hung up
NOTICE_MS = 15000  # how long the notice stays on the host's tmux status line (a key press clears it sooner)


@dataclass
class Question:
    name: str
    typing: bool
    since: float  # time.time(): `pairing who`'s since
    deadline: float  # time.monotonic()
    waiting: int = 0  # connections waiting on it now
    left_at: float = 0.0  # monotonic, when the last of them went
    verdict: str = ""  # allow, deny, kick, unanswered, ended; "" while undecided
    decided: threading.Event = field(default_factory=threading.Event)


class Consent:
    """The questions open now, by guest name. Called from the control channel's threads, the hook's terminal
    reader and the hook's loop (tick); every change under one lock, the caller's (the room's)."""

    def __init__(self, tmux: Tmux, console: Console, lock: threading.RLock) -> None:
        self.tmux, self.console, self.lock = tmux, console, lock
        self.questions: dict[str, Question] = {}
        self.terminal = False  # whether the hook's terminal answers (prompt.TerminalAnswers); set by the run
        self.shown: Question | None = None  # the question on the hook's terminal
        self.shown_at = 0.0

    def ask(self, name: str, typing: bool, hosts: Callable[[], tuple[Client, ...]], told_to_wait: Callable[[], None],
            gone: Callable[[], bool]) -> str:
        """This connection's verdict: allow, deny, kick, unanswered, ended, or gone (it hung up first).
        hosts(): the host's own tmux clients, read only for a new question; told_to_wait(): before waiting."""
        with self.lock:
            question = self.questions.get(name)
            # Only the host's allow or deny holds for a reconnect; after no answer (or a kick undone) ask anew.
            new = question is None or question.verdict not in ("", "allow", "deny")
            if new:
                question = self.questions[name] = Question(name, typing, time.time(), time.monotonic() + ASK_FOR)
            question.waiting += 1
        if new:
            self.console.asks(name, typing, ASK_FOR)
            mode = "typing" if typing else "watching"
            notice = f"pairing: {name} wants to join ({mode}): pairing allow {name} / pairing deny {name}"
            self.tmux.tell(hosts(), notice, NOTICE_MS)
            with self.lock:
                self._show()
        if not question.decided.is_set():
            told_to_wait()
        while not question.decided.wait(POLL):
            if time.monotonic() >= question.deadline:
                with self.lock:
                    self._decide(question, "unanswered")
            elif gone():
                break
        with self.lock:
            question.waiting -= 1
            if not question.waiting:
                question.left_at = time.monotonic()
            return question.verdict or "gone"

    def decide(self, name: str, verdict: str) -> bool:
        """`pairing allow|deny NAME`, or a kick: False if no question about NAME is open."""
        with self.lock:
            question = self.questions.get(name)
            if question is None or question.verdict:
                return False
            self._decide(question, verdict)
            return True

    def answer(self, line: str) -> None:
        """A line typed in the hook's terminal: y or yes lets in the guest its bottom line asks about; anything
        else (Enter too) turns that guest away. A line that came before the question stood SETTLE s is not
        applied: the host may have typed it for the one before."""
        with self.lock:
            question = self.shown
            if question is None:
                self.console.said("nobody is waiting to join")
            elif time.monotonic() - self.shown_at < SETTLE:
                self.console.said(f"not answered: the question changed as you typed; it is now about {question.name}")
                self.console.pose(question.name, question.typing)
            else:
                self._decide(question, "allow" if line.strip().lower() in ("y", "yes") else "deny")

    def waiting(self) -> list[Question]:
        with self.lock:
            return [q for q in self.questions.values() if not q.verdict]

    def tick(self) -> None:
        """Each second: a question unanswered past its time decided; one whose guest stopped waiting
        LINGER s ago closed."""
        now = time.monotonic()
        with self.lock:
            for question in list(self.questions.values()):
                if not question.verdict and now >= question.deadline:
                    self._decide(question, "unanswered")
                if not question.waiting and question.left_at and now - question.left_at >= LINGER:
                    del self.questions[question.name]
                    if not question.verdict:
                        self.console.gave_up(question.name)
                    self._show()

    def end(self) -> None:
        """The host is stopping: every open question answered "ended"."""
        with self.lock:
            for question in list(self.questions.values()):
                self._decide(question, "ended")

    def _decide(self, question: Question, verdict: str) -> None:
        if question.verdict:
            return
        question.verdict = verdict
        question.decided.set()
        if verdict not in ("allow", "ended"):
            self.console.turned_away(question.name, verdict)
        self._show()

    def _show(self) -> None:
        """The hook's terminal asks about the oldest undecided question, and keeps asking about it until it is
        decided or closed; then about the next."""
        if not self.terminal:
            return
        if self.shown is not None and not self.shown.verdict and self.questions.get(self.shown.name) is self.shown:
            return
        undecided = sorted((q for q in self.questions.values() if not q.verdict), key=lambda q: q.since)
        self.shown = undecided[0] if undecided else None
        self.shown_at = time.monotonic()
        if self.shown is None:
            self.console.pose(None, False)
        else:
            self.console.pose(self.shown.name, self.shown.typing)
