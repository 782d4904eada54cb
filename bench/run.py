"""python -m bench [--quick]: the whole pairing path, our tunnel against OpenSSH's, in one run.

Boots two real relays (our user data through cloud-init, tests/harness/),
the host's private sshd and tmux; holds the tunnel with `pairing host` on one
relay and with OpenSSH's `ssh -N -R` on the other; then times keystrokes (also
straight to the host's sshd, the floor), bulk transfers, the hook at rest and
through relay outages; and a bare echo (no tmux) through each tunnel. Prints the table of ratios and goals and writes the raw
numbers as JSON. Needs root (namespaces); see bench/README.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import os
import signal
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from pairing.tunnel import CARRIERS, default_carrier
from tests.harness import SUITES, Hook, client_env

from . import plot, report
from .bulk import download
from .keystrokes import type_keys, wait_attached
from .process import cpu_times, peak_rss_mb
from .recovery import outage
from .terminal import GuestTerminal
from .time_to_pair import add_guest, start_hook
from .world import BASELINE, ROUTES, World

FULL = dict(keys=1000, warmup=20, interval_ms=30.0, guests=8, payload_mb=64.0, transfers=3, idle=60.0, outages=3,
            relay_suite="trixie", tunnel=default_carrier())
QUICK = {**FULL, "keys": 30, "warmup": 5, "payload_mb": 4.0, "transfers": 1, "idle": 3.0, "outages": 0}


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: few keys, a small payload, a 3 s idle window, no outages")
    parser.add_argument("--keys", type=int, help=f"timed keys per guest (default {FULL['keys']})")
    parser.add_argument("--guests", type=int, help=f"guests typing at once (default {FULL['guests']})")
    parser.add_argument("--outages", type=int, help=f"network outages of the relay (default {FULL['outages']})")
    parser.add_argument("--idle", type=float, help=f"seconds of the idle CPU window (default {FULL['idle']:g})")
    parser.add_argument("--relay-suite", choices=SUITES,
                        help="the relay's Debian release, which decides its OpenSSH (default trixie, what EC2 runs)")
    parser.add_argument("--tunnel", choices=CARRIERS,
                        help="what carries `pairing host`'s tunnel, as its own --tunnel (default: pairing's own, "
                             f"here {default_carrier()})")
    parser.add_argument("--baseline", type=Path, metavar="DIR",
                        help="also time a second pairing host run from the source tree DIR (e.g. an older commit's "
                             "`git archive`), on a third relay: an A/B of two versions in one run")
    parser.add_argument("--out", type=Path, help="the JSON file (default bench/results/<date>-<host>.json)")
    args = parser.parse_args(argv)
    for name, value in (QUICK if args.quick else FULL).items():
        if getattr(args, name, None) is None:
            setattr(args, name, value)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop everything as on Ctrl-C
    options = {name: getattr(args, name) for name in FULL}
    if args.baseline:
        options["baseline"] = str(args.baseline)
    results = {"date": dt.datetime.now().isoformat(timespec="seconds"), "machine": report.machine(),
               "options": options}
    try:
        results.update(measure(args))
    except KeyboardInterrupt:
        print("interrupted; everything the bench started is stopped", file=sys.stderr)
        return 130
    print(report.render(results))
    path = args.out or report.default_path(results, args.quick)
    report.save(results, path)
    picture = plot.draw(results, path.with_suffix(".png"))
    print(f"\nraw numbers: {path}\ndistributions: {picture}")
    return 0


def measure(args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory(prefix="pairing-bench-") as folder, ExitStack() as stack:
        say(f"booting two relays ({args.relay_suite}), the host's sshd and tmux")
        world = World(Path(folder), stack, args.guests, int(args.payload_mb * 1e6), args.relay_suite, args.baseline)
        say(f"time to pair: starting pairing host (--tunnel {args.tunnel}) on one relay, to a guest's first echoed key")
        hook, to_pair = start_hook(stack, world, args.tunnel)
        say("time to pair: pairing add, to the new guest's first echoed key")
        with ExitStack() as added:
            add_to_pair = add_guest(added, world)
        say("ssh -N -R on the other relay")
        if args.baseline:
            say(f"starting the baseline's pairing host (from {args.baseline}) on a third relay")
            stack.enter_context(world.hook(args.tunnel, BASELINE))
        stack.enter_context(world.openssh_tunnel())
        say(f"one guest per route, taking turns: {args.keys} keys each")
        alone = type_alone(world, args)
        say(f"a bare echo (no tmux) through each tunnel, taking turns: {args.keys} keys each")
        bare = type_bare(world, args)
        group = {}
        for route in ("pairing", "openssh", *routes(world)[len(ROUTES):]):
            say(f"{args.guests} guests typing at once through {route}")
            group[route] = type_together(world, args, route)
        say(f"bulk: {args.transfers} x {args.payload_mb:g} MB per tunnel, alternating")
        bulk = bulk_rates(world, args.transfers)
        say(f"the hook idle for {args.idle:g} s")
        hook_numbers = idle(world, hook, args.idle)
        outages = [relay_outage(world, hook, number, args.outages) for number in range(1, args.outages + 1)]
        hook_numbers["peak_rss_mb"] = peak_rss_mb(hook.process.pid)
        relay_openssh = world.pairing.relay.run(["sshd", "-V"], check=False).stderr.split(",")[0].strip()
    say("done")
    return {"relay_openssh": relay_openssh, "time_to_pair_s": {**dataclasses.asdict(to_pair), "total": to_pair.total},
            "add_to_pair_s": {**dataclasses.asdict(add_to_pair), "total": add_to_pair.total},
            "keystrokes_ms": alone, "bare_keystrokes_ms": bare,
            "group_keystrokes_ms": group, "bulk_mb_s": bulk, "outages": outages, "hook": hook_numbers,
            "load": LOAD}


# The machine's load average (1, 5, 15 min) as each phase began: the bench shares 2 cores with
# whatever else runs, which weighs on absolute figures far more than on the ratios.
LOAD: list[dict] = []


def say(text: str) -> None:
    LOAD.append({"phase": text, "loadavg": [round(x, 2) for x in os.getloadavg()]})
    print(f"[{dt.datetime.now():%H:%M:%S}] {text} (load {LOAD[-1]['loadavg'][0]:.2f})", file=sys.stderr, flush=True)


def routes(world: World) -> tuple[str, ...]:
    return (*ROUTES, BASELINE) if world.baseline else ROUTES


def type_alone(world: World, args: argparse.Namespace) -> dict[str, list[float]]:
    """Each route's lone guest in its own session; one key in flight in all, the routes taking turns."""
    with ExitStack() as stack:
        terminals = [guest(stack, world, route, shared=False) for route in routes(world)]
        samples = type_keys(terminals, world.alphabets[:1] * len(terminals), args.keys, args.interval_ms / 1000,
                            args.warmup, in_turn=True)
    return dict(zip(routes(world), samples))


def type_bare(world: World, args: argparse.Namespace) -> dict[str, list[float]]:
    """`cat` on the host's sshd, over each tunnel from inside its relay, and straight; the routes taking turns."""
    with ExitStack() as stack:
        terminals = [world.bare_terminal(route) for route in routes(world)]
        for terminal in terminals:
            stack.callback(terminal.stop)
        # Nothing is drawn before the first key: the untimed first keys wait for the connections.
        samples = type_keys(terminals, world.alphabets[:1] * len(terminals), args.keys, args.interval_ms / 1000,
                            args.warmup, in_turn=True)
    return dict(zip(routes(world), samples))


def type_together(world: World, args: argparse.Namespace, route: str) -> list[list[float]]:
    """All guests in the shared session through `route`, each at its own pace, all at once."""
    with ExitStack() as stack:
        terminals = [guest(stack, world, route, shared=True) for _ in range(args.guests)]
        return type_keys(terminals, world.alphabets, args.keys, args.interval_ms / 1000, args.warmup,
                         in_turn=False)


def bulk_rates(world: World, transfers: int) -> dict[str, list[float]]:
    rates = {route: [] for route in routes(world) if route != "direct"}
    for _ in range(transfers):
        for route, measured in rates.items():
            measured.append(download(*world.bulk_argv(route), client_env(), world.payload.stat().st_size))
    return rates


def relay_outage(world: World, hook: Hook, number: int, outages: int) -> dict:
    say(f"relay outage {number} of {outages}")
    return dataclasses.asdict(outage(world, hook))


def guest(stack: ExitStack, world: World, route: str, shared: bool) -> GuestTerminal:
    """A guest whose screen has begun to arrive (tmux attached it), stopped when `stack` closes."""
    terminal = world.terminal(route, shared)
    stack.callback(terminal.stop)
    wait_attached([terminal])
    return terminal


def idle(world: World, hook: Hook, seconds: float) -> dict:
    """The hook's CPU while one guest is attached and nobody types."""
    seen = len(hook.text)
    with ExitStack() as stack:
        guest(stack, world, "pairing", shared=True)
        hook.wait_for("1 typing, 0 watching", after=seen)  # its status line has caught up
        before = cpu_times(hook.process.pid)
        time.sleep(seconds)  # the measuring window itself
        after = cpu_times(hook.process.pid)
    return {"idle_seconds": seconds, "idle_cpu_s": after.own - before.own,
            "idle_children_cpu_s": after.children - before.children}
