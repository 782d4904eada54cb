"""A run's session, `pairing host`'s and `pairing direct`'s alike: the tmux session opened, watched each second
(joins, leaves, the status line), and everything the run holds undone in order at its end."""

from __future__ import annotations

import signal
from typing import Callable

from ..tmux import Tmux
from .console import Console
from .control import ControlServer
from .room import Room
from .sshd import PrivateSshd
from .tmux_server import attach_command, own_folder

STATUS_EVERY = 1.0


def open_session(tmux: Tmux, session: str, console: Console) -> None:
    """The session guests attach to: made if absent, else kept from closing with its last client."""
    own_folder(tmux.socket)
    if tmux.ensure_session(session):
        console.said(f"created tmux session {session!r} (attach yourself: {attach_command(tmux.socket, session)})")
    else:
        tmux.keep_clients_in(session)


def watch(tmux: Tmux, session: str, console: Console, viewers: bool, running: Callable[[], bool],
          wait: Callable[[float], object], stop: Callable[[], None], status: Callable[[tuple], str],
          room: Room) -> None:
    """The hook's loop (`pairing host` and `pairing direct`), while running(): each STATUS_EVERY s (wait), the
    session made again if gone, viewers' way to other sessions warned about, joins and leaves said by name
    (the room's), the status line (status(the guests' clients)) redrawn. A Ctrl-C calls stop(), which ends running()."""
    warned: set[str] = set()
    typists: frozenset[str] = frozenset()
    while running():
        try:
            wait(STATUS_EVERY)
            now = tmux.snapshot(session)
            if not now.exists and tmux.ensure_session(session):
                console.said(f"tmux session {session!r} was gone; created a new one for guests to attach to")
            typing = frozenset(c.tty for c in now.clients if not c.read_only)
            if typing != typists and typing:  # one left, or turned viewer: tmux's hooks fit only on arrival
                tmux.fit(session)
            typists = typing
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
            "with C-b ( and C-b ): tmux lets read-only clients switch sessions. Close them, or leave "
            "--tmux-socket out: pairing's own tmux server holds the pair session only"
        )
    return others


def end_session(previous: dict, control: ControlServer, room: Room, recorder, sshd: PrivateSshd | None,
                answers=None, stop_tunnel: Callable[[], None] | None = None) -> None:
    """What a run (pairing host's, pairing direct's) undoes, in this order: its signal handlers, the control
    socket (gates asking from now on are refused), --ask's terminal reader (the terminal is `pairing up`'s
    again), the guests (each told the session ended, their connections closed while the way in still stands),
    the tunnel, the recording, and the sshd with every guest's session and the keys it read."""
    for sig, handler in previous.items():
        signal.signal(sig, handler)
    control.close()
    if answers:
        answers.stop()
    room.farewell()
    if stop_tunnel:
        stop_tunnel()
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
