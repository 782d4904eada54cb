"""Time to pair: from starting `pairing host` (the relay already up) to a guest's first echoed key.

What a person waits for when a relay is alive (kept with --keep, or reused by `pairing up`): the
hook starts (Python, its preflight: the identity, the relay's pinned key, its own self-test), says
"ready", the guest runs the invite's ssh (two pinned hops and the gate), tmux draws the screen, and
the guest's first key comes back. Each part is kept, so that the sum says where the time goes.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from dataclasses import dataclass

from .keystrokes import type_keys, wait_attached


@dataclass(frozen=True)
class TimeToPair:
    ready: float  # s from starting the hook until it said "ready"
    attached: float  # s from "ready" until the guest's screen began to arrive (ssh, both hops, the gate, tmux)
    first_key: float  # s for the guest's first key to come back, once attached

    @property
    def total(self) -> float:
        return self.ready + self.attached + self.first_key


def first_echo(stack: ExitStack, world, route: str, started: float) -> tuple[float, float]:
    """A new guest on `route`'s shared session from now on: (s until attached since `started`, s for one key)."""
    terminal = world.terminal(route, shared=True)
    stack.callback(terminal.stop)
    wait_attached([terminal])
    attached = time.perf_counter() - started
    [[echo_ms]] = type_keys([terminal], world.alphabets[:1], 1, 0.0, 0, in_turn=True)
    return attached, echo_ms / 1000


def start_hook(stack: ExitStack, world, tunnel: str) -> tuple[object, TimeToPair]:
    """`pairing host` started and timed up to the first guest's echoed key; the hook stays up in `stack`."""
    started = time.perf_counter()
    hook = stack.enter_context(world.hook(tunnel))
    ready = time.perf_counter() - started
    with ExitStack() as guest:
        attached, first_key = first_echo(guest, world, "pairing", time.perf_counter())
    return hook, TimeToPair(ready, attached, first_key)
