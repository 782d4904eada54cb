"""`pairing status`: the relay, its time left, the tunnel as the running hook reports it, and the guests (its room's)."""

from __future__ import annotations

import datetime as dt

from . import backend as backends
from .control_cli import guests_line
from .hook import lock_path, read_state
from .stack_cli import read_outputs


def cmd_status(args) -> int:
    outputs = read_outputs(args.outputs, args.stack, backends.choose(args.backend).env)
    left = outputs.expires_at - dt.datetime.now(dt.timezone.utc)
    minutes = int(left.total_seconds() // 60)
    remaining = f"{minutes // 60} h {minutes % 60} min left" if minutes > 0 else "expired: the relay has ended itself"
    # The hook with its own sshd (locked on its folder), else one with --target (on authorized_keys).
    hook = read_state(lock_path(outputs.tmux_session, args.tmux_socket, make=False))
    if not hook.running:
        hook = read_state(args.authorized_keys)
    record = hook.record
    if not hook.running:
        tunnel = "not held: run pairing host"
    elif record is None or record.state is None:
        tunnel = f"held by a running `pairing host`{f' (pid {hook.pid})' if hook.pid else ''}"
    else:
        since = dt.datetime.fromtimestamp(record.since).strftime("%H:%M:%S")
        tunnel = f"{record.state.value} since {since} (pairing host --tunnel {record.tunnel}, pid {record.pid})"
    print(f"relay   {outputs.relay_address} ({outputs.relay_fingerprint}), instance {outputs.instance_id}")
    print(f"ends    {outputs.expires_at:%Y-%m-%dT%H:%M:%SZ} ({remaining})")
    print(f"tunnel  {tunnel}")
    # The running hook's guests, by name: the host's own tmux clients are nobody's.
    print(f"guests  {guests_line(outputs.tmux_session, args.tmux_socket)}")
    return 0
