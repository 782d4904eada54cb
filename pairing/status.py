"""`pairing status`: a running `pairing direct` (where it listens, its guests); else the relay, its time left, the
tunnel as the running hook reports it, and the guests, by name (the room's).

A running `pairing direct` is found in this user's state folder (direct_state), no Pulumi asked. Its exit
status says which of the states holds (EXIT_STATUS, shown by `pairing status --help`), so a
script can wait for a session; bad or unreadable outputs are 2, like every command's bad input.
"""

from __future__ import annotations

import datetime as dt
import shlex
import shutil

from . import backend as backends
from .control_cli import Refused, find_hook, guests_line
from .direct_state import RunningDirect, running
from .live_cli import hook_ends
from .hook import lock_path, read_state
from .hook.tmux_server import attach_command, server_socket
from .outputs import StackOutputs
from .stack_cli import NoStack, read_outputs_json
from .text import shown
from .up_plan import default_stack

HELD, NOT_HELD, EXPIRED, NO_RELAY, DIRECT = 0, 3, 4, 5, 6  # 1 is left to Python's own crash, 2 to bad input
EXIT_STATUS = f"""exit status:
  {HELD}  a relay is up and a running `pairing host` holds its tunnel
  2  the outputs could not be read (a bad --outputs file, the Pulumi CLI missing or failing)
  {NOT_HELD}  a relay is up, but no `pairing host` holds its tunnel
  {EXPIRED}  the relay is past its end (expiresAt): it has ended itself
  {NO_RELAY}  no relay: no such stack, or one with no outputs (never deployed, or destroyed)
  {DIRECT}  a `pairing direct` runs: its address, port and guests are shown (a relay is read only with --outputs)"""


def no_relay(args) -> str | None:
    """Why there is no relay, if there is none; None when there is something to read (or only the CLI can tell)."""
    if args.outputs is not None:
        return None
    backend = backends.choose(args.backend)
    # Without the Pulumi CLI a file backend's state can still be looked at: no state, no relay.
    if shutil.which("pulumi") is None and backends.has_stack(backend, args.stack) is False:
        return f"no stack {args.stack!r} in {backend.describe()}"
    return None


def read_relay(args) -> StackOutputs | str:
    """The relay's outputs, or why there is no relay."""
    missing = no_relay(args)
    if missing:
        return missing
    try:
        data = read_outputs_json(args.outputs, args.stack, backends.choose(args.backend).env)
    except NoStack:
        return f"no stack {args.stack!r} in {backends.choose(args.backend).describe()}"
    source = str(args.outputs) if args.outputs is not None else f"stack {args.stack}"
    if data == {}:  # what `pulumi stack output --json` prints for a stack with no relay
        return f"{source} has no outputs (never deployed, or destroyed)"
    return StackOutputs.from_json(data, source=source)


def running_hook(session: str, tmux_socket: str | None):
    """The control socket of the hook serving this session, if one runs."""
    try:
        return find_hook(session, tmux_socket)
    except Refused:
        return None


def hold_command(args) -> str:
    """`pairing host` for the relay this status read: the same outputs (or stack), backend and tmux socket."""
    words = ["pairing", "host"]
    if args.outputs is not None:
        words += ["--outputs", str(args.outputs)]
    elif args.stack != default_stack():
        words += ["--stack", args.stack]
    if args.backend:
        words += ["--backend", args.backend]
    if args.tmux_socket:
        words += ["--tmux-socket", args.tmux_socket]
    return shlex.join(words)


def direct_lines(found: list[RunningDirect]) -> list[str]:
    """Each running `pairing direct`: where guests reach it, since when, and who is in."""
    lines = []
    for run in found:
        record, hook = run.record, run.hook
        since = f", since {dt.datetime.fromtimestamp(hook.record.started):%H:%M:%S}" if hook.record else ""
        pid = f", pid {hook.pid}" if hook.pid else ""
        lines.append(f"direct  listening on {record.endpoint} (pairing direct --session {record.session}{pid}{since}); "
                     "no relay")
        lines.append(f"guests  {guests_line(record.session, record.tmux_socket)}")
    return lines


def cmd_status(args) -> int:
    found = running()
    if found:
        print("\n".join(direct_lines(found)))
        if args.outputs is None:  # a direct host asks no Pulumi
            return DIRECT
    outputs = read_relay(args)
    if isinstance(outputs, str):
        print(shown(f"relay   none: {outputs}; start one: pairing up --guest SOURCE"))
        return NO_RELAY
    print(f"relay   {outputs.relay_address} ({outputs.relay_fingerprint}), instance {outputs.instance_id}")
    # A running hook knows the relay's end as it is now (pairing extend moves it), the outputs as it was made.
    when = hook_ends(running_hook(outputs.tmux_session, args.tmux_socket)) or outputs.expires_at
    ends = f"{when:%Y-%m-%dT%H:%M:%SZ}"
    left = when - dt.datetime.now(dt.timezone.utc)
    if left.total_seconds() <= 0:  # gone, whatever a hook still says: nothing to hold
        print(f"ends    {ends} (expired: the relay has ended itself; a new one: pairing up --guest SOURCE)")
        return EXPIRED
    minutes = int(left.total_seconds() // 60)
    # The hook with its own sshd (locked on its folder), else one with --target (on authorized_keys).
    socket = server_socket(outputs.tmux_session, args.tmux_socket)
    hook = read_state(lock_path(outputs.tmux_session, socket, make=False))
    if not hook.running:
        hook = read_state(args.authorized_keys)
    record = hook.record
    if not hook.running:
        tunnel = f"not held: run {hold_command(args)}"
    elif record is None or record.state is None:
        tunnel = f"held by a running `pairing host`{f' (pid {hook.pid})' if hook.pid else ''}"
    else:
        since = dt.datetime.fromtimestamp(record.since).strftime("%H:%M:%S")
        tunnel = f"{record.state.value} since {since} (pairing host --tunnel {record.tunnel}, pid {record.pid})"
    print(f"ends    {ends} ({minutes // 60} h {minutes % 60} min left)")
    print(f"tunnel  {tunnel}")
    # The running hook's guests, by name: the host's own tmux clients are nobody's.
    print(shown(f"guests  {guests_line(outputs.tmux_session, args.tmux_socket)}"))  # tmux's words
    print(shown(f"attach  {attach_command(socket, outputs.tmux_session)}"))
    return HELD if hook.running else NOT_HELD
