"""`pairing host`: the hook, the process on the host that lets guests in.

Checks everything it can before touching anything (preflight), then: the tmux
session exists, the guests' keys are in authorized_keys (forced to `tmux
attach`; guests), the reverse tunnel is held and proven end to end, and the
console shows the tunnel and who is attached. On exit, authorized_keys gets
back exactly what it had. One hook per authorized_keys file (lock).

Guests are known by name: each key's forced command is a gate that asks the
hook's control socket (control.py) before it becomes `tmux attach`; the room
(room.py) answers it and the host's commands (`pairing who`, `kick`, ...).

Without --target the guests' sshd is the hook's own (sshd.py, own_sshd.py): the
system's sshd binary run as the host user on 127.0.0.1, its guests' keys in a
private folder; ~/.ssh/authorized_keys is not touched, and the lock is on that folder.
"""

from __future__ import annotations

import dataclasses
import os
import pwd
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .. import backend as backends
from ..accounts import GUEST_USER, TUNNEL_USER
from ..authorized_keys import AuthorizedKeysError, AuthorizedKeysFile
from ..backend import data_dir
from ..names import roster
from ..outputs import StackOutputs
from ..relay_guests import RelayError, RelayGuests
from ..stack_cli import read_outputs
from ..tmux import Tmux, TmuxError
from ..tunnel import CARRIERS, State, TunnelFatal, TunnelSpec
from .console import Console, StatusLine, status_text
from .control import ControlError, ControlServer
from .guests import LOOPBACK_SOURCES, control_socket, guest_lines, instructions, lines_for
from .live import LiveGuests, invite_for, remember_asked, start_live, trusted_end
from .lock import HookRecord, HookStatus, SingleHook, TunnelStatus, read_state, state_file
from .own_sshd import lock_path, system_sshd
from .preflight import PreflightError, fido_refusal, preflight, probe_relay, probe_sshd, relay_endpoint
from .recording import RecordingError, check_target, start_recording
from .prompt import on_terminal
from .room import Room
from .sshd import PrivateSshd, SshdError, key_path

STATUS_EVERY = 1.0
GIVE_UP_GRACE = 120  # seconds past expiresAt before the relay is surely gone

__all__ = [
    "GIVE_UP_GRACE", "LOOPBACK_SOURCES", "Console", "HookRecord", "HookStatus", "HostOptions", "PreflightError",
    "SingleHook", "StatusLine", "cmd_host", "fido_refusal", "guest_lines", "instructions", "probe_relay",
    "lock_path", "probe_sshd", "read_state", "system_sshd", "relay_endpoint", "run", "state_file",
]


@dataclass(frozen=True)
class HostOptions:
    outputs: StackOutputs
    identity: Path | None
    target: tuple[str, int] | None  # None: the hook's own sshd
    authorized_keys: Path
    tmux_socket: str | None = None
    tunnel: str = "paramiko"  # a key of CARRIERS
    invite: Path | None = None  # the guest's ssh config, where `pairing up` wrote it
    record: Path | None = None  # --record FILE.cast (checked by recording.check_target)
    ask: bool = False  # each joining guest waits for the host's yes


class _Published:
    """The tunnel's events as the hook takes them: the state published for `pairing status`, then shown."""

    def __init__(self, console: Console, lock: SingleHook, options: HostOptions) -> None:
        self.console, self.lock, self.options = console, lock, options
        self.state = TunnelStatus()

    def tunnel_state(self, state: State, detail: str) -> None:
        if state is not self.state.state:
            self.state.state, self.state.since = state, time.time()
            self.lock.publish(self.state, self.options.tunnel)
        if state is State.UP and not self.state.ready_once:
            self.console.ready(instructions(self.options.outputs, self.options.invite))
            self.state.ready_once = True
        else:
            self.console.tunnel_state(state, detail)

    def warning(self, text: str) -> None:
        self.console.warning(text)


def run(options: HostOptions, console: Console | None = None, lock: SingleHook | None = None) -> int:
    """Preflight, then hold everything up until Ctrl-C/SIGTERM or a fatal error. Returns the exit code."""
    outputs = options.outputs
    own = options.target is None
    # A second run stops here, having touched nothing.
    lock = lock or SingleHook(lock_path(outputs.tmux_session, options.tmux_socket) if own else options.authorized_keys)
    keys_file = None if own else AuthorizedKeysFile(options.authorized_keys)
    try:
        if keys_file:
            keys_file.check_owner()
        identity = preflight(options)
    except BaseException:
        lock.release()
        raise
    console = console or Console(sys.stdout)
    tmux = Tmux(options.tmux_socket)
    events = _Published(console, lock, options)
    guests = roster(outputs.guest_keys, outputs.viewer_keys)
    room = Room(guests, tmux, outputs.tmux_session, console, options.ask, pwd.getpwuid(os.geteuid()).pw_name)
    live = LiveGuests(room, guests, outputs.host_public_key, console, lines_for(options),
                      lambda now, added, path: invite_for(outputs, live, now, added, path),
                      RelayGuests(relay_endpoint(outputs, TUNNEL_USER), identity.key))
    try:  # before the guests' keys: their gates connect to it
        control = ControlServer(control_socket(options), live.handle, console.control_refused)
    except (ControlError, OSError) as exc:
        console.error(f"the control channel: {exc}")
        console.close()
        lock.release()
        return 1
    sshd = None
    if own:  # before the tunnel: its target is this sshd's port
        sshd = PrivateSshd(lock_path(outputs.tmux_session, options.tmux_socket).parent, key_path(data_dir()),
                           guest_lines(options))
        try:
            sshd.start()
        except (SshdError, OSError) as exc:
            console.error(str(exc))
            control.close()
            console.close()
            lock.release()
            return 1
        console.said(f"your own sshd for guests listens on 127.0.0.1:{sshd.port} "
                     f"(host key {outputs.host_sshd_key.fingerprint}; log {sshd.log})")
    live.install = sshd.set_guests if sshd else keys_file.install
    try:  # the relay lets on this run's guests before the tunnel's self-test logs in as one
        outputs = start_live(live, outputs, console)
        options = events.options = dataclasses.replace(options, outputs=outputs)  # with the relay's own end
    except (RelayError, TunnelFatal) as exc:
        console.error(f"the relay's guest list: {exc}")
        end_session({}, control, None, sshd)
        console.close()
        lock.release()
        return 1
    spec = TunnelSpec(
        relay=relay_endpoint(outputs, TUNNEL_USER),
        probe=relay_endpoint(outputs, GUEST_USER),
        tunnel_port=outputs.tunnel_port,
        target=("127.0.0.1", sshd.port) if sshd else options.target,
        identity=identity.key,
        identity_file=identity.path,
    )
    tunnel = CARRIERS[options.tunnel](spec, events, give_up_at=outputs.expires_at.timestamp() + GIVE_UP_GRACE)
    # pairing extend: the tunnel holds on until the moved end (which the host asked for, so believes).
    live.asked = lambda when: remember_asked(outputs, when)
    live.moved = lambda ends: setattr(tunnel, "give_up_at", trusted_end(outputs, ends.ends).timestamp() + GIVE_UP_GRACE)
    failure: list[BaseException] = []
    recorder = answers = None

    def hold() -> None:
        try:
            tunnel.run()
        except BaseException as exc:  # reported by the main thread
            failure.append(exc)

    stop_signals = (signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.signal(sig, lambda *_: tunnel.stop()) for sig in stop_signals}
    try:
        # --ask's y/N reads the terminal only from here on: the finally below gives it back.
        answers = on_terminal(sys.stdin, room.answer_oldest) if options.ask else None
        room.terminal = answers is not None
        open_session(tmux, outputs.tmux_session, console)
        recorder = start_recording(options.record, tmux, outputs.tmux_session, console)  # before any guest is in
        if keys_file:
            keys_file.install(guest_lines(options))
        worker = threading.Thread(target=hold, name="pairing-tunnel", daemon=True)
        worker.start()
        watch(tmux, outputs.tmux_session, console, bool(outputs.viewer_keys), worker.is_alive, worker.join,
              tunnel.stop, lambda clients: status_text(events.state.state, events.state.since, clients), room)
    except (AuthorizedKeysError, TmuxError, RecordingError) as exc:
        tunnel.stop()
        console.error(str(exc))
        return 1
    finally:
        end_session(previous, control, recorder, sshd, answers)
        removed = _remove_block(keys_file, console) if keys_file else False
        console.close()
        lock.release()
    if failure:
        exc = failure[0]
        console.error(str(exc) if isinstance(exc, TunnelFatal) else f"the tunnel failed: {exc!r}")
        return 1
    if removed is None:  # said why; the guests' keys are still in the file
        return 1
    console.said("stopped; guest keys removed from " + str(options.authorized_keys) if removed else "stopped")
    return 0


def cmd_host(args) -> int:
    """`pairing host`: the stack's outputs (Pulumi CLI or --outputs FILE), then the hook until it stops."""
    check_target(args.record)
    target, authorized_keys = system_sshd(args.target, args.authorized_keys)
    outputs = read_outputs(args.outputs, args.stack, backends.choose(args.backend).env)
    return run(HostOptions(outputs, args.identity, target, authorized_keys, args.tmux_socket, args.tunnel,
                           record=args.record, ask=args.ask))


def open_session(tmux: Tmux, session: str, console: Console) -> None:
    """The session guests attach to: made if absent, else kept from closing with its last client."""
    if tmux.ensure_session(session):
        console.said(f"created tmux session {session!r} (attach yourself: tmux attach -t {session})")
    else:
        tmux.keep_clients_in(session)


def watch(tmux: Tmux, session: str, console: Console, viewers: bool, running: Callable[[], bool],
          wait: Callable[[float], object], stop: Callable[[], None], status: Callable[[tuple], str],
          room: Room) -> None:
    """The hook's loop (`pairing host` and `pairing direct`), while running(): each STATUS_EVERY s (wait), the
    session made again if gone, viewers' way to other sessions warned about, joins and leaves said by name
    (the room's), the status line (status(the guests' clients)) redrawn. A Ctrl-C calls stop(), which ends running()."""
    warned: set[str] = set()
    while running():
        try:
            wait(STATUS_EVERY)
            now = tmux.snapshot(session)
            if not now.exists and tmux.ensure_session(session):
                console.said(f"tmux session {session!r} was gone; created a new one for guests to attach to")
            if viewers:
                warned = _warn_about_other_sessions(now.others, warned, console)
            console.status(status(room.tick(now)))  # guests by name; the host's own clients are nobody's
        except KeyboardInterrupt:
            stop()


def _warn_about_other_sessions(sessions: list[str], warned: set[str], console: Console) -> set[str]:
    """tmux lets read-only clients switch sessions (C-b ( and C-b )): say so when viewers could."""
    others = set(sessions)
    if others - warned:
        console.warning(
            f"viewers can switch to your other tmux sessions on this server ({', '.join(sorted(others))}) "
            "with C-b ( and C-b ): tmux lets read-only clients switch sessions. Close them, or give the pair "
            "session a tmux server of its own with --tmux-socket PATH"
        )
    return others


def end_session(previous: dict, control: ControlServer, recorder, sshd: PrivateSshd | None, answers=None) -> None:
    """What a run (pairing host's, pairing direct's) undoes, in this order: its signal handlers, the control
    socket (gates asking from now on are refused), --ask's terminal reader (the terminal is `pairing up`'s
    again), the recording, and the sshd with every guest's session and the keys it read."""
    for sig, handler in previous.items():
        signal.signal(sig, handler)
    control.close()
    if answers:
        answers.stop()
    if recorder:
        recorder.stop()
    if sshd:
        sshd.stop()
        forget_guests(sshd)


def forget_guests(sshd: PrivateSshd) -> None:
    """The guests' keys go with the sshd that read them."""
    try:
        sshd.authorized_keys.unlink()
    except FileNotFoundError:
        pass


def _remove_block(keys_file: AuthorizedKeysFile, console: Console) -> bool | None:
    """True if the block was removed, False if there was none, None if it could not be."""
    try:
        return keys_file.remove()
    except AuthorizedKeysError as exc:
        console.error(f"could not remove the guest keys: {exc}; run `pairing host` again to clean up")
        return None
