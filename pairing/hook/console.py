"""The hook's presentation: one Console, one method per event, on one status line.

The tunnel reports to it (it is a TunnelEvents) and so does the hook's own
loop, and the room (room.py: named guests, kicks, consent) from the control
channel's threads; nothing else writes to the host's terminal while the hook runs.
"""

from __future__ import annotations

import datetime as dt
from typing import TextIO

from ..text import shown, shown_lines
from ..tmux import Client
from ..tunnel import State


class StatusLine:
    """One line redrawn in place on a terminal; plain log lines otherwise. Every text is escaped here
    (text.shown_lines): tmux's, ssh's and sshd's words, exception messages, a relay's banner reach it."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.last = ""

    def say(self, text: str) -> None:
        text = shown_lines(text)
        if self.tty:
            self.stream.write("\r\033[K" + text + "\n" + self.last)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def show(self, text: str) -> None:
        text = shown(text)  # redrawn in place: one line
        if text == self.last:
            return
        self.last = text
        if self.tty:
            self.stream.write("\r\033[K" + text)
        else:
            self.stream.write(f"[{_clock()}] {text}\n")
        self.stream.flush()

    def close(self) -> None:
        """The status line is wiped (a Ctrl-C's ^C with it) and not drawn again: lines said after it ("stopped")
        start where it was, and the shell's prompt gets a line of its own."""
        if self.tty and self.last:
            self.stream.write("\r\033[K")
            self.stream.flush()
        self.last = ""


def _clock() -> str:
    return dt.datetime.now().strftime("%H:%M:%S")


class Console:
    """What the host sees of the hook. Called from the tunnel's threads too: each event is one write."""

    def __init__(self, stream: TextIO) -> None:
        self.line = StatusLine(stream)
        self.recording_to = ""  # the status line's end while --record writes
        self.question = ""  # what the bottom line asks instead of the status while --ask's terminal waits
        self.shown_status = ""

    def recording(self, path) -> None:
        """--record's file is open: said once, and on the status line while it lasts."""
        self.line.say(f"recording what guests see to {path} (asciicast v2, mode 600)")
        self.recording_to = f" | recording to {path}"

    def recorded(self, path) -> None:
        self.recording_to = ""
        self.line.say(f"recording ended: {path} (replay it: asciinema play {path})")

    def ready(self, instructions: str) -> None:
        """The tunnel is up for the first time: what to send the guests."""
        self.line.say(instructions)

    def tunnel_state(self, state: State, detail: str) -> None:
        """Up again, reconnecting (with why), waiting for the relay to free the port; the rest is the status line's."""
        if state is State.UP:
            self.line.say(f"tunnel back up ({detail})")
        elif state is State.WAITING_FOR_PORT or (state is State.RECONNECTING and detail):
            self.line.say(f"{state.value}: {detail}")

    def guest_joined(self, name: str, typing: bool) -> None:
        self.line.say(f"{name} joined the session ({'typing' if typing else 'watching'})")

    def guest_left(self, name: str) -> None:
        self.line.say(f"{name} left the session")

    def kicked(self, name: str, connections: int) -> None:
        ended = f"{connections} connection{'s' * (connections != 1)} ended" if connections else "not connected"
        self.line.say(f"kicked {name} ({ended}); kept out until pairing allow {name}")

    def kept_out(self, name: str) -> None:
        self.line.say(f"{name} tried to join again: kept out (kicked)")

    def mode(self, name: str, typing: bool) -> None:
        self.line.say(f"{name} is {'typing' if typing else 'watching'} now")

    def asks(self, name: str, typing: bool, within: float) -> None:
        self.line.say(f"{name} wants to join ({'typing' if typing else 'watching'}): pairing allow {name} / "
                      f"pairing deny {name} (within {within:.0f} s)")

    def pose(self, name: str | None, typing: bool) -> None:
        """The hook's terminal asks about this guest on its bottom line until answered (None: nobody); a line
        typed there answers that question (consent.Consent.answer)."""
        self.question = "" if name is None else f"let {name} in ({'typing' if typing else 'watching'})? [y/N] "
        self.line.show(self.question or self.shown_status)

    def turned_away(self, name: str, why: str) -> None:
        self.line.say(f"{name} was not let in ({'kicked' if why == 'kick' else 'denied' if why == 'deny' else 'no answer'})")

    def let_back(self, name: str) -> None:
        self.line.say(f"{name} is no longer kept out (pairing allow {name}); they may join again")

    def farewell(self, told: int) -> None:
        self.line.say(f"told {told} guest{'s' * (told != 1)} the session ended")

    def gave_up(self, name: str) -> None:
        self.line.say(f"{name} stopped waiting to join")

    def control_refused(self, uid: int) -> None:
        self.warning(f"refused a control connection from uid {uid}: only you may control this hook")

    def warning(self, text: str) -> None:
        self.line.say(f"warning: {text}")

    def error(self, text: str) -> None:
        self.line.say(f"error: {text}")

    def said(self, text: str) -> None:
        self.line.say(text)

    def status(self, text: str) -> None:
        self.shown_status = text + self.recording_to
        self.line.show(self.question or self.shown_status)

    def close(self) -> None:
        self.line.close()


def status_text(state: State, since: float, clients: tuple[Client, ...]) -> str:
    """The live status line: the tunnel's state since when, and who is attached."""
    word = "reconnecting" if state in (State.RECONNECTING, State.WAITING_FOR_PORT) else state.value
    return f"tunnel {word} since {dt.datetime.fromtimestamp(since).strftime('%H:%M:%S')} | {guests_text(clients)}"


def direct_status_text(endpoint: str, since: float, clients: tuple[Client, ...]) -> str:
    """`pairing direct`'s status line: where its sshd listens since when, and who is attached."""
    return f"listening on {endpoint} since {dt.datetime.fromtimestamp(since).strftime('%H:%M:%S')} | {guests_text(clients)}"


def guests_text(clients: tuple[Client, ...]) -> str:
    typing = sum(1 for c in clients if not c.read_only)
    watching = len(clients) - typing
    return f"{typing} typing, {watching} watching" if clients else "no guests attached"
