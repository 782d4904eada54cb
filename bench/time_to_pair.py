"""Time to pair: from starting `pairing host` (the relay already up) to a guest's first echoed key.

What a person waits for when a relay is alive (kept with --keep, or reused by `pairing up`): the
hook starts (Python, its preflight: the identity, the relay's pinned key, its own self-test), says
"ready", the guest runs the invite's ssh (two pinned hops and the gate), tmux draws the screen, and
the guest's first key comes back. Each part is kept, so that the sum says where the time goes.
"""

from __future__ import annotations

import subprocess
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass

from tests.harness import PROJECT, Guest, client_env, hook_env, make_key

from .keystrokes import type_keys, wait_attached
from .terminal import GuestTerminal


@dataclass(frozen=True)
class AddToPair:
    answered: float  # s from starting `pairing add` until it said the guest may join (relay list set, keys written)
    attached: float  # s from then until the new guest's screen began to arrive, with the invite add wrote
    first_key: float  # s for their first key to come back

    @property
    def total(self) -> float:
        return self.answered + self.attached + self.first_key


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


def add_guest(stack: ExitStack, world) -> AddToPair:
    """`pairing add` on the running hook, as the host types it in another terminal, then the new guest with the
    invite it wrote, timed to their first echoed key. Their key is new to the relay and to the host's sshd."""
    key = make_key(world.folder / "keys", "late")
    invite = world.folder / "late.conf"
    started = time.perf_counter()
    added = subprocess.run([sys.executable, "-m", "pairing", "add", "--guest", f"late={key.path}.pub", "--invite",
                            str(invite), "--tmux-socket", str(world.tmux.socket)], cwd=PROJECT,
                           env=hook_env(world.folder / "home"), capture_output=True, text=True, timeout=30,
                           stdin=subprocess.DEVNULL)
    answered = time.perf_counter() - started
    if added.returncode:
        raise RuntimeError(f"pairing add failed: {added.stdout}{added.stderr}")
    guest = Guest(world.folder / "guests", "late", key, invite)
    terminal = GuestTerminal(guest.command(), {**client_env(), "TERM": "xterm"}, guest.log)
    stack.callback(terminal.stop)
    wait_attached([terminal])
    attached = time.perf_counter() - started - answered
    [[echo_ms]] = type_keys([terminal], world.alphabets[:1], 1, 0.0, 0, in_turn=True)
    return AddToPair(answered, attached, echo_ms / 1000)
