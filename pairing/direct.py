"""`pairing direct`: no relay, no AWS. The hook's own sshd (hook/sshd.py) on one address of the host's
choosing, a LAN or VPN one (e.g. Tailscale's 100.x.y.z), and an invite straight there, its key pinned.
Otherwise `pairing host`'s pieces: its lock, console, room (--ask too) and loop (hook.watch).

The port: --listen's, else the one this session had last time (direct_state: invites already sent name it),
else a free one, remembered from then on. "ready" only once this run's own sshd answers there (its banner
carries this run's nonce); a port another listener holds is refused in one line before anything is written.

Guests arrive from the network, so their lines carry no loopback from= (the sshd listens on that address
only); `0.0.0.0`/`::` would put it on every address, public ones too, and need --listen-all.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import os
import pwd
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Sequence

from .backend import data_dir
from .direct_invite import direct_command, direct_invitation, write_direct_config
from .direct_state import DirectRecord, remember, remembered, running
from .guest_flags import named_keys
from .hook import PreflightError, end_session, open_session, watch
from .hook.console import Console, direct_status_text
from .hook.control import ControlError, ControlServer, socket_path as control_socket
from .hook.guests import gated_lines
from .hook.leftovers import remove_leftovers, scratch_folder
from .hook.live import LiveGuests
from .hook.lock import SingleHook
from .hook.own_sshd import lock_path
from .hook.ports import endpoint, port_taken
from .hook.prompt import on_terminal
from .hook.tmux_server import attach_command, chosen_server
from .hook.recording import RecordingError, check_target, start_recording
from .hook.startup import own_sshd_warning
from .hook.room import Room
from .hook.shares import Shares
from .hook.sshd import PrivateSshd, SshdError, host_key, key_path
from .invite import check_folder
from .names import NamedKey, roster
from .shared_ports import ShareError, SharedPort, from_flags, listing
from .sshkeys import PublicKey, shorten
from .text import shown
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


def instructions(invite: Path, record: DirectRecord, key: PublicKey, attach: str) -> str:
    return (
        f"ready: guests can join now. Send them {invite} and have them run\n"
        f"    ssh -F {invite.name} pairing\n"
        "or this one command (needs OpenSSH 8.5+):\n"
        f"    {direct_command(record, key)}\n"
        "a guest on Windows or with OpenSSH before 8.5: pairing invite --known-hosts; with PuTTY: pairing invite "
        "--putty KEY.ppk\n"
        f"your sshd {record.address} port {record.port} ({key.fingerprint}), no relay: guests must reach that address; "
        "it keeps this port when you start it again. Ctrl-C to stop.\n"
        f"you join the pair session with: {attach}"
    )


def _port(args, address: str) -> int | None:
    """--listen's port, else the one this session's invites already name (it had it last time), else None: a
    free one. Refused in one line, before anything is written, when another listener holds it."""
    given = args.listen[1]
    last = remembered(args.session, args.tmux_socket)
    port = given or (last.port if last else None)
    taken = port_taken(address, port) if port else None
    if not taken:
        return port
    holder = next((r for r in running() if r.record.port == port
                   and (r.record.session, r.record.tmux_socket) != (args.session, args.tmux_socket)), None)
    if holder:
        pid = f" (pid {holder.hook.pid})" if holder.hook.pid else ""
        raise PreflightError(f"port {port} on {address} is held by `pairing direct --session {holder.record.session}`"
                             f"{pid}; give this session another port: --listen {endpoint(address, 'PORT')}")
    free = f"stop what holds it (ss -ltnp 'sport = :{port}' names it)"
    if given:
        raise PreflightError(f"--listen {endpoint(address, port)}: port {port} is taken on this machine ({taken}); "
                             f"{free}, or give another port")
    raise PreflightError(f"port {port} on {address}, which tmux session {args.session!r} keeps for the invites it sent, "
                         f"is taken ({taken}); {free}, or give --listen {endpoint(address, 'PORT')} "
                         "(invites already sent then name the old port)")


def cmd_direct(args) -> int:
    """Check every flag and key source, then hold the sshd until Ctrl-C/SIGTERM."""
    check_target(args.record)
    address, port = args.listen
    if _unspecified(address) and not args.listen_all:
        raise PreflightError(f"--listen {address} is every address of this machine, public ones too; give "
                             "the one guests reach (a LAN or VPN address, e.g. Tailscale's 100.x.y.z), or add --listen-all")
    args.tmux_socket = chosen_server(args.session, args.tmux_socket)  # a server not surely the user's: refused here
    if not args.guest:
        raise PreflightError("give at least one guest: --guest gh:USER, --guest ~/their_key.pub or "
                             "--guest 'ssh-ed25519 AAAA...'")
    check_folder(args.invite)
    guests, viewers, problems = named_keys(args.guest, args.viewer or [])  # each key named by its comment
    try:
        shared = from_flags(args.share_port, {port: "your sshd's port (--listen)"} if port else {})
    except ShareError as exc:
        shared, problems = (), [*problems, *str(exc).splitlines()]
    if problems:
        for line in problems:
            print(shown(f"pairing direct: {line}"), file=sys.stderr)
        return 2
    if os.geteuid() == 0:
        raise PreflightError("pairing direct runs its own sshd as you, and it never lets root in; run it as your own user")
    try:
        key = host_key(data_dir())
    except SshdError as exc:
        raise PreflightError(str(exc)) from None
    lock = SingleHook(lock_path(args.session, args.tmux_socket), "direct")  # a second run stops here
    try:
        return _run(args, str(address), _port(args, str(address)), guests, viewers, key, shared)
    finally:
        lock.release()


def _run(args, address: str, port: int | None, guests: list[PublicKey], viewers: list[PublicKey], key: PublicKey,
         shared: tuple[SharedPort, ...] = ()) -> int:
    session, socket_path = args.session, args.tmux_socket
    named = roster(guests, viewers)
    locked = lock_path(session, socket_path)  # the lock cmd_direct holds; the sshd's folder is its own
    remove_leftovers(locked, own=True)  # a killed hook's; the lock is ours, so no live one's
    control_path = control_socket(locked)
    console, tmux = Console(sys.stdout), Tmux(socket_path)
    # The same room as pairing host's: guests by name, pairing who, watch, drive, kick.
    room = Room(named, tmux, session, console, args.ask, pwd.getpwuid(os.geteuid()).pw_name)
    shares = Shares(shared, args.share_port_viewers, {port: "your sshd's port (--listen)"} if port else {}, room)

    def lines(now: Sequence[NamedKey], shared_with=shares.shared_with) -> list[str]:
        # No from=: guests come from the network, and the sshd listens on this one address only.
        return gated_lines(now, str(control_path), session, socket_path, (), shared_with)

    record: DirectRecord | None = None  # once the sshd has its port

    def invite_added(now: Sequence[NamedKey], added: NamedKey, path: Path) -> str:
        """pairing add: no relay; that guest's own invite straight to this sshd, and the record knows them (so
        `pairing invite --for NAME`, `pairing status` and the invite a `pairing share` writes again do)."""
        nonlocal record
        if record is None:
            raise ValueError("the sshd has not started yet")
        record = dataclasses.replace(record, guest_keys=tuple(g.key for g in now if g.typing),
                                     viewer_keys=tuple(g.key for g in now if not g.typing))
        remember(record)
        write_direct_config(record, key, path, direct_invitation(record, key, path.name, guest=added,
                                                                 shared=shares.shared,
                                                                 shared_viewers=args.share_port_viewers))
        return f"wrote {path} for {added.name}: send it to your guest. They run:\n    ssh -F {path.name} pairing"

    sshd = PrivateSshd(locked.parent, key_path(data_dir()), lines(named), port=port, address=address,
                       avoid=frozenset(p.host for p in shared), tunneled=False, warn=console.warning)
    live = LiveGuests(room, named, key, console, lines, invite_added)
    live.install = sshd.set_guests
    try:  # before the sshd: the guests' gates connect to it
        control = ControlServer(control_path, shares.handler(live.handle), console.control_refused)
    except (ControlError, OSError) as exc:
        console.error(f"the control channel: {exc}")
        console.close()
        return 1
    stopped = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stopped.set()) for sig in (signal.SIGTERM, signal.SIGHUP)}
    recorder = answers = None
    try:
        try:
            sshd.start()  # returns once this run's own sshd answers there (its nonce)
        except SshdError as exc:  # e.g. an address this machine does not have: sshd's words
            raise PreflightError(str(exc)) from None
        shares.own_sshd(sshd, lambda: live.guests, lambda shared_with: lines(live.guests, shared_with))
        record = DirectRecord(session, socket_path, address, sshd.port, tuple(guests), tuple(viewers))
        remember(record)  # the port, for the next run; the session, for pairing status and pairing invite

        def invite(ports: tuple[SharedPort, ...]) -> None:  # again on pairing share / unshare
            invitation = direct_invitation(record, key, args.invite.name, shared=ports,
                                           shared_viewers=args.share_port_viewers)
            write_direct_config(record, key, args.invite, invitation)

        shares.invite = invite
        invite(shares.shared)
        console.said(f"your own sshd for guests listens on {sshd.endpoint} (host key {key.fingerprint}; log {sshd.log})")
        if shares.shared:
            console.said(listing(shares.shared, shares.viewers))
        startup = own_sshd_warning(sshd, key)  # proven before "ready": what runs before each guest's gate
        if startup:
            console.warning(startup)
        # --ask's y/N reads the terminal only from here on: the finally below gives it back.
        answers = on_terminal(sys.stdin, room.consent.answer) if room.consent else None
        if room.consent:
            room.consent.terminal = answers is not None
        open_session(tmux, session, console)
        recorder = start_recording(args.record, tmux, session, console, scratch_folder(locked))
        console.ready(instructions(args.invite, record, key, attach_command(socket_path, session)))
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
        shares.apply = None
        end_session(previous, control, room, recorder, sshd, answers)
        console.close()
    console.said("stopped")
    return 0
