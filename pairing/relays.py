"""`pairing ls`: the relays in a backend, whose each is, where, and how long it has left.

A backend shared by a team (S3, Pulumi Cloud) holds one stack per host user and machine
(up_plan.default_stack). Each stack's outputs are read and checked like any others; a stack
whose outputs cannot be read (never deployed, destroyed, or its secrets under another
teammate's passphrase) is still listed, saying why.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Callable

from . import backend as backends
from .outputs import OutputsError, StackOutputs
from .sshkeys import shorten


@dataclass(frozen=True)
class Relay:
    stack: str
    region: str | None
    outputs: StackOutputs | None
    problem: str = ""  # why the outputs are missing


def time_left(ends: dt.datetime, now: dt.datetime) -> str:
    minutes = int((ends - now).total_seconds() // 60)
    return f"{minutes // 60} h {minutes % 60:02d} min left" if minutes > 0 else "ended: its TTL has passed"


def rows(relays: list[Relay], now: dt.datetime) -> list[str]:
    """One line a relay: stack, owner (the host account guests land in), region, address, time left."""
    table = [("STACK", "OWNER", "REGION", "ADDRESS", "ENDS")]
    for relay in relays:
        out = relay.outputs
        if out is None:
            table.append((relay.stack, "?", relay.region or "?", "-", shorten(relay.problem, 60)))
        else:
            table.append((relay.stack, out.host_user, relay.region or "?", out.relay_address,
                          f"{out.expires_at:%Y-%m-%d %H:%M}Z ({time_left(out.expires_at, now)})"))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]) - 1)]
    return ["  ".join([*(cell.ljust(width) for cell, width in zip(row, widths)), row[-1]]).rstrip() for row in table]


def list_relays(backend: backends.Backend, say: Callable[[str], None] = print) -> int:
    """Every stack of this project in the backend, through the Automation API."""
    from . import project
    from .up import require_pulumi, workspace_options

    require_pulumi()
    from pulumi import automation as auto

    backends.prepare(backend)
    workspace = auto.LocalWorkspace(work_dir=str(project.work_dir()), **workspace_options(backend))
    relays = []
    for summary in workspace.list_stacks(include_all=False):
        relays.append(_read(workspace, summary.name))
    if not relays:
        say(f"no relays in {backend.describe()}")
        return 0
    for line in rows(relays, dt.datetime.now(dt.timezone.utc)):
        say(line)
    return 0


def _read(workspace, name: str) -> Relay:
    from pulumi import automation as auto

    try:
        region = workspace.get_config(name, "aws:region").value
    except auto.CommandError:
        region = None
    try:
        data = {key: output.value for key, output in workspace.stack_outputs(name).items()}
    except auto.CommandError as exc:
        return Relay(name, region, None, str(exc).strip().splitlines()[-1] if str(exc).strip() else "unreadable")
    if not data:
        return Relay(name, region, None, "no relay (not deployed, or destroyed)")
    try:
        return Relay(name, region, StackOutputs.from_json(data, source=f"stack {name}"))
    except OutputsError as exc:
        return Relay(name, region, None, str(exc))


def cmd_ls(args) -> int:
    return list_relays(backends.choose(args.backend))
