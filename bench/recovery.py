"""A relay whose network dies and comes back, as the hook lives through it.

One outage: the relay's link goes down (packets vanish, nothing resets). We
time until the hook says it noticed; until the relay's sshd drops the dead
connection and frees the tunnel port (ClientAlive); then, the network back,
until the tunnel answers again. "Answers" is checked on the relay itself: a
connection to the tunnel port there that speaks first, as an SSH client does
(the hook connects no silent one: pairing/tunnel/waiting.py), gets the host
sshd's banner, which is what a guest's jump reaches.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from tests.harness import Hook, wait_until

from .world import World

NOTICED = "the relay stopped answering"
BACK = "tunnel back up"
FREE_TIMEOUT, BACK_TIMEOUT = 60.0, 30.0
POLL = 0.02  # seconds between checks of a wait-for-condition

# Runs inside the relay: waits until the tunnel port gives the host sshd's
# banner and prints when (CLOCK_MONOTONIC: the same clock as the bench's).
PROBE = f"""
import pathlib, socket, sys, time
port, marker = int(sys.argv[1]), pathlib.Path(sys.argv[2])
marker.touch()
deadline = time.monotonic() + {BACK_TIMEOUT}
while time.monotonic() < deadline:
    try:
        with socket.create_connection(("localhost", port), timeout=0.5) as sock:
            sock.sendall(b"SSH-2.0-pairing_bench\\r\\n")
            if sock.recv(4) == b"SSH-":
                print(time.monotonic())
                break
    except OSError:
        pass
    time.sleep({POLL})
"""


@dataclass(frozen=True)
class Outage:
    detected: float  # seconds from the cut until the hook said so
    port_freed: float  # seconds from the cut until the relay let go of the tunnel port
    back: float  # seconds from the network's return until the tunnel answered


def outage(world: World, hook: Hook) -> Outage:
    relay = world.pairing.relay
    seen = len(hook.text)
    cut = time.monotonic()
    relay.cut_network()
    try:
        detected, port_freed = _while_cut(world, hook, seen, cut)
        probe = _start_probe(world)
    finally:
        restored = time.monotonic()
        relay.restore_network()
    answered = probe.result()
    hook.wait_for(BACK, timeout=BACK_TIMEOUT, after=seen)  # its self-test done: a calm start for what follows
    return Outage(detected, port_freed, answered - restored)


def _while_cut(world: World, hook: Hook, seen: int, cut: float) -> tuple[float, float]:
    """Seconds from the cut until the hook noticed, and until the relay freed the port: whichever comes first."""
    noticed = freed = None
    while noticed is None or freed is None:
        now = time.monotonic() - cut
        if now > FREE_TIMEOUT:
            raise RuntimeError(f"after {FREE_TIMEOUT} s: the hook noticed {noticed}, the port freed {freed}")
        if noticed is None and NOTICED in hook.text[seen:]:
            noticed = now
        if freed is None and not world.listening("pairing"):  # asked inside the relay: the cut link does not matter
            freed = now
        time.sleep(POLL)  # poll interval of this wait-for-condition
    return noticed, freed


class _Probe(threading.Thread):
    def __init__(self, world: World) -> None:
        super().__init__(name="bench-probe", daemon=True)
        self.world = world
        self.marker = world.pairing.relay.root / "tmp" / "bench-probe-started"
        self.output = ""

    def run(self) -> None:
        argv = ["python3", "-c", PROBE, str(self.world.tunnel_port), "/tmp/" + self.marker.name]
        self.output = self.world.pairing.relay.run(argv, timeout=BACK_TIMEOUT + 30).stdout

    def result(self) -> float:
        self.join()
        if not self.output.strip():
            raise RuntimeError(f"the tunnel did not answer within {BACK_TIMEOUT} s of the network's return")
        return float(self.output)


def _start_probe(world: World) -> _Probe:
    probe = _Probe(world)
    probe.marker.unlink(missing_ok=True)
    probe.start()
    wait_until(probe.marker.exists, 30, "the probe to start on the relay", interval=POLL)
    return probe
