"""`pairing direct`: no relay, no AWS. The hook's own sshd (hook/sshd.py) on one address of the host's
choosing, a LAN or VPN one (e.g. Tailscale's 100.x.y.z), and an invite straight there, its key pinned.
Otherwise `pairing host`'s pieces: its lock, console and loop (hook.watch). No --listen PORT: a free one.

Guests arrive from the network, so their lines carry no loopback from= (the sshd listens on that address
only); `0.0.0.0`/`::` would put it on every address, public ones too, and need --listen-all.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import pwd
import signal
import sys
import threading
import time
from pathlib import Path

from . import guest_documents
from .backend import data_dir
from .guest_flags import named_keys
from .guest_documents import DirectRoute
from .hook import PreflightError, end_session, open_session, watch
from .hook.console import Console, direct_status_text
from .hook.control import ControlError, ControlServer, socket_path as control_socket
from .hook.guests import gated_lines
from .hook.live import LiveGuests
from .hook.lock import SingleHook
from .hook.own_sshd import lock_path
from .hook.recording import RecordingError, check_target, start_recording
from .hook.room import Room
from .hook.sshd import PrivateSshd, SshdError, host_key, key_path
from .invitation import Invitation, notes
from .invite import machine_name, write_shareable
from .names import NamedKey, roster
from .sshkeys import PublicKey, shorten
from .tmux import Tmux, TmuxError

Listen = tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int | None]


def listen_address(text: str) -> Listen:
    """--listen's value: ADDRESS, ADDRESS:PORT, [V6] or [V6]:PORT; an IP address (sshd binds it as given)."""
    host, port = text, None
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else (None if not rest else "?")
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    try:
        address = ipaddress.ip_address(host)
        number = None if port is None else int(port) if port.isascii() and port.isdigit() else 0
        if number is not None and not 0 < number < 65536:
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(f"{shorten(text)!r} is not ADDRESS[:PORT] with an IP address, e.g. "
                                         "192.168.1.20, 100.101.102.103:2222 or [fd7a::1]:2222") from None
    return address, number


def _unspecified(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_unspecified


def instructions(invite: Path, route: DirectRoute, fingerprint: str) -> str:
    return (
        f"ready: guests can join now. Send them {invite} and have them run\n"
        f"    ssh -F {invite.name} pairing\n"
        "or this one command (needs OpenSSH 8.5+):\n"
        f"    {guest_documents.direct_command(route)}\n"
        f"your sshd {route.address} port {route.port} ({fingerprint}), no relay: guests must reach that address. "
        "Ctrl-C to stop."
    )


def _invite(path: Path, route: DirectRoute | None, key: PublicKey, guests, guest: NamedKey | None = None) -> str:
    """The guests' invite straight to this sshd (guest: that guest's own, for `pairing add`)."""
    if route is None:
        raise ValueError("the sshd has not started yet")
    invitation = Invitation(host_user=route.host_user, machine=machine_name(), guests=tuple(guests), relay=None,
                            relay_fingerprint=None, host_fingerprint=key.fingerprint, expires_at=None,
                            file_name=path.name, guest=guest)
    write_shareable(path, guest_documents.direct_config(route, notes(invitation)))
    return f"wrote {path}{f' for {guest.name}' if guest else ''}: send it to your guest. They run:\n    ssh -F {path.name} pairing"


def cmd_direct(args) -> int:
    """Check every flag and key source, then hold the sshd until Ctrl-C/SIGTERM."""
    check_target(args.record)
    address, port = args.listen
    if _unspecified(address) and not args.listen_all:
        raise PreflightError(f"--listen {address} is every address of this machine, public ones too; give "
                             "the one guests reach (a LAN or VPN address, e.g. Tailscale's 100.x.y.z), or add --listen-all")
    if not args.guest:
        raise PreflightError("give at least one guest: --guest gh:USER, --guest ~/their_key.pub or "
                             "--guest 'ssh-ed25519 AAAA...'")
    guests, viewers, problems = named_keys(args.guest, args.viewer or [])  # each key named by its comment
    if problems:
        for line in problems:
            print(f"pairing direct: {line}", file=sys.stderr)
        return 2
    if os.geteuid() == 0:
        raise PreflightError("pairing direct runs its own sshd as you, and it never lets root in; run it as your own user")
    try:
        key = host_key(data_dir())
    except SshdError as exc:
        raise PreflightError(str(exc)) from None
    lock = SingleHook(lock_path(args.session, args.tmux_socket), "direct")  # a second run stops here
    try:
        return _run(args, str(address), port, guests, viewers, key, lock)
    finally:
        lock.release()


def _run(args, address: str, port: int | None, guests: list[PublicKey], viewers: list[PublicKey], key: PublicKey,
         lock: SingleHook) -> int:
    session, socket_path = args.session, args.tmux_socket
    named = roster(guests, viewers)
    locked = lock_path(session, socket_path)  # the lock cmd_direct holds; the sshd's folder is its own
    control_path = control_socket(locked)
    # No from=: guests come from the network, and the sshd listens on this one address only.
    lines = gated_lines(named, str(control_path), session, socket_path)
    sshd = PrivateSshd(locked.parent, key_path(data_dir()), lines, port=port, address=address)
    console, tmux = Console(sys.stdout), Tmux(socket_path)
    # The same room as pairing host's: guests by name, pairing who, watch, drive, kick.
    room = Room(named, tmux, session, console, False, pwd.getpwuid(os.geteuid()).pw_name)
    # pairing add: no relay; the sshd's keys, the room, and an invite straight to this sshd.
    live = LiveGuests(room, named, key, console, lambda now: gated_lines(now, str(control_path), session, socket_path),
                      lambda now, added, path: _invite(path, route, key, now, added))
    live.install = sshd.set_guests
    route = None
    try:  # before the sshd: the guests' gates connect to it
        control = ControlServer(control_path, live.handle, console.control_refused)
    except (ControlError, OSError) as exc:
        console.error(f"the control channel: {exc}")
        console.close()
        return 1
    stopped = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stopped.set()) for sig in (signal.SIGTERM, signal.SIGHUP)}
    recorder = None
    try:
        try:
            sshd.start()
        except SshdError as exc:  # e.g. an address this machine does not have: sshd's words
            raise PreflightError(str(exc)) from None
        route = DirectRoute(address, sshd.port, sshd.user, key)
        _invite(args.invite, route, key, named)
        console.said(f"your own sshd for guests listens on {sshd.endpoint} (host key {key.fingerprint}; log {sshd.log})")
        open_session(tmux, session, console)
        recorder = start_recording(args.record, tmux, session, console)
        console.ready(instructions(args.invite, route, key.fingerprint))
        since = time.time()
        watch(tmux, session, console, bool(viewers), lambda: not stopped.is_set() and sshd.process.poll() is None,
              stopped.wait, stopped.set, lambda clients: direct_status_text(sshd.endpoint, since, clients), room)
        if not stopped.is_set():
            console.error(f"the host's sshd stopped on its own; its log: {sshd.log}")
            return 1
    except (TmuxError, RecordingError) as exc:
        console.error(str(exc))
        return 1
    finally:
        end_session(previous, control, recorder, sshd)
        console.close()
    console.said("stopped")
    return 0
