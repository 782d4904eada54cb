"""Keystroke round trips: guests press one key at a time and time its echo.

A guest never presses a key before the echo of its previous one came back:
one key in flight per guest, so each echo is matched to its key without
doubt. Pauses between keys are 0.5-1.5 times `interval` at random, so that
keys of different guests meet at random rather than in lockstep.

Two ways to type:
- in turn: one key in flight in all, the guests taking turns; every key meets
  a quiet path, and the routes compared see the same machine, key by key;
- together: every guest types at its own pace, all at once.
"""

from __future__ import annotations

import random
import selectors
import string
import time
from dataclasses import dataclass, field

from .terminal import CONNECT_TIMEOUT, GuestTerminal, TerminalError

# Neither ssh's escape character (~) nor tmux's prefix (C-b) is among them.
KEYS = string.ascii_letters + string.digits
ECHO_TIMEOUT = 10.0


def alphabets(guests: int) -> list[str]:
    """Disjoint keys for each guest, so that one guest's echo is never taken for another's."""
    each = len(KEYS) // guests
    if each < 2:  # one key twice in a row would leave tmux nothing to redraw
        raise ValueError(f"at most {len(KEYS) // 2} guests")
    return [KEYS[i * each:(i + 1) * each] for i in range(guests)]


@dataclass
class Typist:
    terminal: GuestTerminal
    keys: str
    presses: int  # warm-up presses included
    warmup: int
    samples: list[float] = field(default_factory=list)  # milliseconds
    pressed: int = 0
    awaiting: int | None = None  # the key in flight
    sent_ns: int = 0
    next_at: float = 0.0  # time.perf_counter() of its next press

    @property
    def ready(self) -> bool:
        return self.awaiting is None and self.pressed < self.presses

    @property
    def done(self) -> bool:
        return self.awaiting is None and self.pressed == self.presses

    def press(self) -> None:
        self.awaiting = ord(self.keys[self.pressed % len(self.keys)])
        self.sent_ns = time.perf_counter_ns()
        self.terminal.write(bytes([self.awaiting]))
        self.pressed += 1

    def receive(self) -> bool:
        """Read what arrived; True if it holds the echo of the key in flight."""
        visible = self.terminal.read()
        arrived_ns = time.perf_counter_ns()
        if self.awaiting is None or self.awaiting not in visible:
            return False
        if self.pressed > self.warmup:
            self.samples.append(round((arrived_ns - self.sent_ns) / 1e6, 3))  # µs; finer is noise
        self.awaiting = None
        return True

    def check_timeout(self) -> None:
        if self.awaiting is not None and time.perf_counter_ns() - self.sent_ns > ECHO_TIMEOUT * 1e9:
            raise TerminalError(f"no echo of {chr(self.awaiting)!r} within {ECHO_TIMEOUT} s: "
                                f"{self.terminal.log_tail()}")


class Together:
    """Each guest presses its next key `interval` (on average) after its previous one, echo permitting."""

    def __init__(self, typists: list[Typist], interval: float, rng: random.Random) -> None:
        self.typists, self.interval, self.rng = typists, interval, rng
        start = time.perf_counter()
        for typist in typists:
            typist.next_at = start + interval * rng.random()

    def due(self, now: float) -> list[Typist]:
        return [t for t in self.typists if t.ready and t.next_at <= now]

    def echoed(self, typist: Typist) -> None:
        typist.next_at = typist.sent_ns / 1e9 + self.interval * self.rng.uniform(0.5, 1.5)

    def next_at(self) -> float | None:
        return min((t.next_at for t in self.typists if t.ready), default=None)


class InTurn:
    """The guests take turns, one key in flight in all, a pause of `interval` (on average) after each echo."""

    def __init__(self, typists: list[Typist], interval: float, rng: random.Random) -> None:
        self.typists, self.interval, self.rng = typists, interval, rng
        self.turn, self.at = 0, time.perf_counter()

    def due(self, now: float) -> list[Typist]:
        typist = self.typists[self.turn % len(self.typists)]
        return [typist] if typist.ready and self.at <= now else []

    def echoed(self, typist: Typist) -> None:
        self.turn += 1
        self.at = time.perf_counter() + self.interval * self.rng.uniform(0.5, 1.5)

    def next_at(self) -> float | None:
        return self.at if self.typists[self.turn % len(self.typists)].ready else None


def wait_attached(terminals: list[GuestTerminal]) -> None:
    """Return once every guest's screen has started to arrive: tmux has attached them."""
    waiting = {t.fd: t for t in terminals}
    deadline = time.monotonic() + CONNECT_TIMEOUT
    with selectors.DefaultSelector() as selector:
        for terminal in terminals:
            selector.register(terminal.fd, selectors.EVENT_READ)
        while waiting:
            ready = selector.select(deadline - time.monotonic())
            if not ready:
                raise TerminalError(f"no screen within {CONNECT_TIMEOUT} s: "
                                    + "; ".join(t.log_tail() for t in waiting.values()))
            for key, _ in ready:
                waiting.pop(key.fd, None)
                selector.unregister(key.fd)


def type_keys(terminals: list[GuestTerminal], keys: list[str], presses: int, interval: float, warmup: int,
              in_turn: bool, seed: int = 0) -> list[list[float]]:
    """Every terminal types `presses` timed keys after `warmup` untimed ones; their round trips in ms."""
    typists = [Typist(t, k, presses + warmup, warmup) for t, k in zip(terminals, keys)]
    pacer = (InTurn if in_turn else Together)(typists, interval, random.Random(seed))
    by_fd = {t.terminal.fd: t for t in typists}
    with selectors.DefaultSelector() as selector:
        for fd in by_fd:
            selector.register(fd, selectors.EVENT_READ)
        while not all(t.done for t in typists):
            for typist in pacer.due(time.perf_counter()):
                typist.press()
            for key, _ in selector.select(_wait(pacer)):
                typist = by_fd[key.fd]
                if typist.receive():
                    pacer.echoed(typist)
            for typist in typists:
                typist.check_timeout()
    return [t.samples for t in typists]


def _wait(pacer: Together | InTurn) -> float:
    """How long select may wait: until the next press is due, at most the echo timeout."""
    due = pacer.next_at()
    return ECHO_TIMEOUT if due is None else max(0.0, due - time.perf_counter())
