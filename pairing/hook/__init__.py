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
from dataclasses import dataclass, replace
from pathlib import Path

from .. import backend as backends
from ..accounts import GUEST_USER, TUNNEL_USER
from ..authorized_keys import AuthorizedKeysError, AuthorizedKeysFile
from ..backend import data_dir
from ..names import roster
from ..outputs import StackOutputs
from ..relay_guests import RelayError, RelayGuests
from ..shared_ports import SharedPort, from_flags, listing
from ..stack_cli import read_outputs
from ..tmux import Tmux, TmuxError
from ..tunnel import CARRIERS, State, TunnelFatal, TunnelSpec
from .console import Console, StatusLine, status_text
from .control import ControlError, ControlServer
from .guests import LOOPBACK_SOURCES, control_socket, guest_lines, instructions, lines_for
from .leftovers import remove_leftovers, scratch_folder
from .live import LiveGuests, invite_for, remember_asked, start_live, trusted_end
from .lock import HookRecord, HookStatus, SingleHook, TunnelStatus, read_state, state_file
from .own_sshd import lock_path, system_sshd
from .preflight import PreflightError, fido_refusal, preflight, probe_relay, probe_sshd, relay_endpoint
from .recording import RecordingError, check_target, start_recording
from .prompt import on_terminal
from .room import Room
from .shares import Shares
from .sshd import PrivateSshd, SshdError, key_path
from .startup import own_sshd_warning, shell_warning
from .session import end_session, open_session, watch
from .tmux_server import attach_command, chosen_server, server_socket

STOP_TUNNEL_WAIT = 10.0  # s for the tunnel's thread to end once stopped
GIVE_UP_GRACE = 120  # seconds past expiresAt before the relay is surely gone

__all__ = [
    "GIVE_UP_GRACE", "LOOPBACK_SOURCES", "Console", "HookRecord", "HookStatus", "HostOptions", "PreflightError",
    "SingleHook", "StatusLine", "cmd_host", "fido_refusal", "guest_lines", "instructions", "probe_relay",
    "lock_path", "probe_sshd", "read_state", "system_sshd", "relay_endpoint", "run", "state_file",
    "end_session", "open_session", "watch",
]


@dataclass(frozen=True)
class HostOptions:
    outputs: StackOutputs
    identity: Path | None
    target: tuple[str, int] | None  # None: the hook's own sshd
    authorized_keys: Path
    tmux_socket: str | None = None  # None: pairing's own server (tmux_server.py); run() puts its path here
    tunnel: str | None = None  # a key of CARRIERS; None: default_carrier(), resolved by preflight
    invite: Path | None = None  # the guest's ssh config, where `pairing up` wrote it
    record: Path | None = None  # --record FILE.cast (checked by recording.check_target)
    ask: bool = False  # each joining guest waits for the host's yes
    shared: tuple[SharedPort, ...] = ()  # --share-port: the host's loopback ports guests may open
    share_viewers: bool = False  # --share-port-viewers: viewers may too


def reserved_ports(tunnel_port: int, target: tuple[str, int] | None) -> dict[int, str]:
    """The ports --share-port and `pairing share` refuse (the own sshd's is added once it runs)."""
    reserved = {tunnel_port: "the tunnel's port (on the relay)"}
    if target is not None:
        reserved[target[1]] = "your sshd's port (--target)"
    return reserved


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
            self.console.ready(instructions(self.options.outputs, self.options.invite,
                                            attach_command(self.options.tmux_socket, self.options.outputs.tmux_session)))
            self.state.ready_once = True
        else:
            self.console.tunnel_state(state, detail)

    def warning(self, text: str) -> None:
        self.console.warning(text)


def run(options: HostOptions, console: Console | None = None, lock: SingleHook | None = None) -> int:
    """Preflight, then hold everything up until Ctrl-C/SIGTERM or a fatal error. Returns the exit code."""
    outputs = options.outputs
    options = dataclasses.replace(options, tmux_socket=server_socket(outputs.tmux_session, options.tmux_socket))
    own = options.target is None
    # A second run stops here, having touched nothing.
    locked = lock_path(outputs.tmux_session, options.tmux_socket) if own else options.authorized_keys
    lock = lock or SingleHook(locked)
    keys_file = None if own else AuthorizedKeysFile(options.authorized_keys)
    try:
        if keys_file:
            keys_file.check_owner()
        identity, carrier = preflight(options)
    except BaseException:
        lock.release()
        raise
    options = replace(options, tunnel=carrier)
    remove_leftovers(locked, own)  # a killed hook's (a refused run touches nothing); the lock is ours: no live one's
    console = console or Console(sys.stdout)
    tmux = Tmux(options.tmux_socket)
    events = _Published(console, lock, options)
    guests = roster(outputs.guest_keys, outputs.viewer_keys)
    room = Room(guests, tmux, outputs.tmux_session, console, options.ask, pwd.getpwuid(os.geteuid()).pw_name)
    shares = Shares(options.shared, options.share_viewers, reserved_ports(outputs.tunnel_port, options.target), room,
                    _invite_writer(options))
    lines = lines_for(options)  # the guests' sshd's lines: for the run's guests now (live) and ports shared now
    live = LiveGuests(room, guests, outputs.host_public_key, console, lambda now: lines(now, shares.shared_with),
                      lambda now, added, path: invite_for(outputs, live, now, added, path,
                                                          (shares.shared, shares.viewers)),
                      RelayGuests(relay_endpoint(outputs, TUNNEL_USER), identity.key))
    try:  # before the guests' keys: their gates connect to it
        control = ControlServer(control_socket(options), shares.handler(live.handle), console.control_refused)
    except (ControlError, OSError) as exc:
        console.error(f"the control channel: {exc}")
        console.close()
        lock.release()
        return 1
    sshd = None
    if own:  # before the tunnel: its target is this sshd's port
        sshd = PrivateSshd(locked.parent, key_path(data_dir()), lines(guests, shares.shared_with),
                           avoid=frozenset(p.host for p in options.shared), warn=console.warning)
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
        shares.own_sshd(sshd, lambda: live.guests, lambda shared_with: lines(live.guests, shared_with))
    if options.shared:
        console.said(listing(options.shared, options.share_viewers))
    # What the login shell runs before each gate: proven through the own sshd, else tried here as sshd would.
    startup = own_sshd_warning(sshd, outputs.host_sshd_key) if sshd else shell_warning(own_sshd=False)
    if startup:
        console.warning(startup)
    live.install = sshd.set_guests if sshd else keys_file.install
    try:  # the relay lets on this run's guests before the tunnel's self-test logs in as one
        outputs = start_live(live, outputs, console)
        options = events.options = replace(options, outputs=outputs)  # with the relay's own end
    except (RelayError, TunnelFatal) as exc:
        console.error(f"the relay's guest list: {exc}")
        end_session({}, control, room, None, sshd)
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
    recorder = answers = worker = None
    stopping = threading.Event()  # the host's Ctrl-C or signal: guests are told before the tunnel goes

    def hold() -> None:
        try:
            tunnel.run()
        except BaseException as exc:  # reported by the main thread
            failure.append(exc)

    stop_signals = (signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.signal(sig, lambda *_: stopping.set()) for sig in stop_signals}
    try:
        # --ask's y/N reads the terminal only from here on: the finally below gives it back.
        answers = on_terminal(sys.stdin, room.consent.answer) if room.consent else None
        if room.consent:
            room.consent.terminal = answers is not None
        open_session(tmux, outputs.tmux_session, console)
        recorder = start_recording(options.record, tmux, outputs.tmux_session, console,  # before any guest is in
                                   scratch_folder(locked))
        if keys_file:
            keys_file.install(lines(live.guests, shares.shared_with))
            shares.apply = lambda shared_with: keys_file.install(lines(live.guests, shared_with))
        worker = threading.Thread(target=hold, name="pairing-tunnel", daemon=True)
        worker.start()
        watch(tmux, outputs.tmux_session, console, bool(outputs.viewer_keys),
              lambda: worker.is_alive() and not stopping.is_set(), stopping.wait, stopping.set,
              lambda clients: status_text(events.state.state, events.state.since, clients), room)
    except (AuthorizedKeysError, TmuxError, RecordingError) as exc:
        tunnel.stop()
        console.error(str(exc))
        return 1
    finally:
        shares.apply = None  # the keys go now: a late `pairing share` writes none back
        end_session(previous, control, room, recorder, sshd, answers, tunnel.stop)
        if worker:
            worker.join(STOP_TUNNEL_WAIT)
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
    socket = chosen_server(outputs.tmux_session, args.tmux_socket)  # a server not surely the user's: refused here
    shared = from_flags(args.share_port, reserved_ports(outputs.tunnel_port, target))
    return run(HostOptions(outputs, args.identity, target, authorized_keys, socket, args.tunnel,
                           record=args.record, ask=args.ask, shared=shared, share_viewers=args.share_port_viewers))


def _invite_writer(options: HostOptions):
    """`pairing up`'s invite, written again when the shared ports change (none known to `pairing host`)."""
    if options.invite is None:
        return None
    from ..invite import write_invite  # here: invite asks the running hook (control_cli), which imports this package

    return lambda shared: write_invite(options.outputs, options.invite, shared=(shared, options.share_viewers))


def _remove_block(keys_file: AuthorizedKeysFile, console: Console) -> bool | None:
    """True if the block was removed, False if there was none, None if it could not be."""
    try:
        return keys_file.remove()
    except AuthorizedKeysError as exc:
        console.error(f"could not remove the guest keys: {exc}; run `pairing host` again to clean up")
        return None
