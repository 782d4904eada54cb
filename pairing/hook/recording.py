"""`--record FILE.cast`: the shared session as the guests see it, in asciicast v2, on the host only.

How it is captured: tmux `pipe-pane -O` on the pane guests see (the session's active pane) into a FIFO
that this process reads, timestamps and writes as events. Not a control-mode client (`tmux -C attach
-r`): that would be one more client of the session, in `tmux list-clients`, where the hook counts and
names guests; a pipe is no client, so nothing else in pairing has to tell a recorder from a guest. What a
pipe leaves out is tmux's own drawing (the status bar, pane borders), and it shows one pane: when the
session moves to another window or pane, the recorder follows it (checked every REFRESH s) and starts the
new pane with a snapshot of its screen (capture-pane), as a guest would see it switch.

The file: created by this process with O_EXCL and mode 600 (never an existing file, never a chmod after),
one JSON line per event written by a single write(2), so it is valid up to the last event even if the hook
is killed with SIGKILL (the pipe's `cat` then ends at its next write, on EPIPE). The size in the header is
the pane's (what the recorded program draws into: the window less tmux's status line); a resize is an "r"
event. Spec: https://docs.asciinema.org/manual/asciicast/v2/

What is written is what a guest's terminal can be shown, not the pane's raw bytes: every read of the pipe
and every snapshot goes through pane_filter.PaneFilter first, which drops what tmux keeps to itself
(OSC 52 clipboard writes, DCS passthrough, titles, queries a replaying terminal would answer).
"""

from __future__ import annotations

import codecs
import contextlib
import json
import os
import select
import shlex
import shutil
import threading
import time
from pathlib import Path
from typing import Protocol

from ..text import unprintable
from ..tmux import Tmux, TmuxError
from .pane_filter import PaneFilter, filtered
from .own_sshd import private_folder
from .preflight import PreflightError

REFRESH = 1.0  # seconds between checks of which pane guests see, and its size
PANE = "#{pane_id} #{pane_width} #{pane_height} #{pane_pipe}"


class RecordingError(RuntimeError):
    """One line: the recording could not start."""


class Shows(Protocol):
    """What the recorder tells the host (the hook's Console)."""

    def recording(self, path: Path) -> None: ...
    def recorded(self, path: Path) -> None: ...
    def warning(self, text: str) -> None: ...


def check_target(path: Path | None) -> None:
    """--record's value, before anything is touched: a new file in an existing folder of the user's."""
    if path is None:
        return
    if unprintable(str(path)) is not None:
        raise PreflightError(f"--record {str(path)!r}: the path holds control or format characters; give a plain "
                             "file name, e.g. --record pair.cast")
    folder = path.parent
    if os.path.lexists(path):
        raise PreflightError(f"--record {path}: the file exists, and a recording never replaces a file; give a new "
                             "name, or move the old one away")
    if not folder.is_dir():
        raise PreflightError(f"--record {path}: there is no folder {folder}; create it (mkdir -p {folder}) or give "
                             "a file in an existing folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise PreflightError(f"--record {path}: you cannot write in {folder}; give a file in a folder of yours")


class Recorder:
    """One recording: start() after the session exists, stop() when the hook ends (joins the thread)."""

    def __init__(self, path: Path, tmux: Tmux, session: str, console: Shows, scratch: Path) -> None:
        """scratch: the FIFO's folder, one per hook (leftovers.scratch_folder), so a killed hook's is found again."""
        self.path, self.tmux, self.session, self.console = path, tmux, session, console
        self.scratch = scratch
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")  # a character may span two reads
        self.filter = PaneFilter()  # so may a sequence
        self.pane: str | None = None
        self.size = (0, 0)
        self.stopping = threading.Event()

    def start(self) -> None:
        pane, width, height, piped = self._visible()
        try:
            self.out = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise RecordingError(f"--record {self.path}: cannot create it: {exc.strerror}") from None
        self.started = time.monotonic()
        self.size = (width, height)
        header = {"version": 2, "width": width, "height": height, "timestamp": int(time.time()),
                  "title": f"pairing: tmux session {self.session}"}
        self._write(json.dumps(header))
        self.folder = str(private_folder(self.scratch))  # mode 700, as are the folders it makes above it
        self.fifo = os.path.join(self.folder, "pane")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.fifo)  # a killed hook's (leftovers.py removes it first; the lock is ours)
        os.mkfifo(self.fifo, 0o600)
        # tmux expands formats in it (#{...}): a # in the state folder's path is written ##.
        self._pipe_command = f"exec cat > {shlex.quote(self.fifo)}".replace("#", "##")
        self.reader = os.open(self.fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        # Held open so the FIFO has a writer between two panes' `cat`s: no EOF until stop().
        self.keeper = os.open(self.fifo, os.O_WRONLY | os.O_CLOEXEC)
        self.wake_r, self.wake_w = os.pipe()
        self._follow(pane, width, height, piped)
        self.thread = threading.Thread(target=self._run, name="pairing-record", daemon=True)
        self.thread.start()
        self.console.recording(self.path)

    def stop(self) -> None:
        self.stopping.set()
        if self.thread.is_alive():
            os.write(self.wake_w, b"x")
            self.thread.join(10)
        os.close(self.wake_r)
        os.close(self.wake_w)

    def _run(self) -> None:
        try:
            self._record()
            self._finish()
        except OSError as exc:  # e.g. the disk is full: the hook goes on, without a recording
            self.console.warning(f"the recording to {self.path} stopped: {exc.strerror or exc}")
        finally:
            self.console.recorded(self.path)
            self._close()

    def _record(self) -> None:
        checked = time.monotonic()
        while not self.stopping.is_set():
            ready, _, _ = select.select([self.reader, self.wake_r], [], [], max(0.0, checked + REFRESH - time.monotonic()))
            if self.reader in ready:
                self._output(os.read(self.reader, 65536))
            if time.monotonic() >= checked + REFRESH:
                checked = time.monotonic()
                try:
                    self._follow(*self._visible())
                except (TmuxError, ValueError):  # ValueError: an answer not in the shape asked (tmux's words)
                    pass  # the session is gone for now; the hook makes it again, and the next check finds it

    def _finish(self) -> None:
        """The pipe closed, then what it had sent read to the end (EOF once `cat` and the keeper are gone)."""
        self._unpipe(self.pane)
        os.close(self.keeper)
        self.keeper = None
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.reader], [], [], max(0.0, deadline - time.monotonic()))
            data = os.read(self.reader, 65536) if ready else b""
            if not data:
                break
            self._output(data)
        self._output(b"", final=True)

    def _visible(self) -> tuple[str, int, int, bool]:
        """The pane guests see now (the session's active pane), its size, and whether it is piped."""
        pane, width, height, piped = self.tmux.query("display-message", "-p", "-t", f"={self.session}:", PANE).split()
        return pane, int(width), int(height), piped == "1"

    def _follow(self, pane: str, width: int, height: int, piped: bool) -> None:
        if (width, height) != self.size:
            self.size = (width, height)
            self._event("r", f"{width}x{height}")
        if pane == self.pane and piped:
            return
        if pane != self.pane:
            self._unpipe(self.pane)
            if piped:  # tmux has one pipe per pane: say whose is replaced (a logging plugin's, a killed hook's)
                self.console.warning(f"tmux pane {pane} had a pipe-pane already; --record replaces it")
        # One tmux command list, so no output of the pane falls between the snapshot and the pipe.
        cursor, _, screen = self.tmux.query(
            "display-message", "-p", "-t", pane, "#{cursor_x} #{cursor_y}", ";", "capture-pane", "-p", "-e", "-t", pane,
            ";", "pipe-pane", "-O", "-t", pane, self._pipe_command).partition("\n")
        if pane != self.pane:  # a sequence the last pane left unfinished must not swallow this one's output
            self.filter = PaneFilter()
        self.pane = pane
        x, y = (int(n) + 1 for n in cursor.split())
        screen = filtered(screen.rstrip("\n").encode()).decode("utf-8", "replace")
        self._event("o", "\x1b[0m\x1b[H\x1b[2J" + screen.replace("\n", "\r\n") + f"\x1b[{y};{x}H")

    def _unpipe(self, pane: str | None) -> None:
        if pane is not None:
            try:
                self.tmux.query("pipe-pane", "-t", pane)  # no command: closes the pipe, and `cat` ends
            except TmuxError:
                pass  # that pane is gone, and its pipe with it

    def _output(self, data: bytes, final: bool = False) -> None:
        text = self.decoder.decode(self.filter.feed(data) + (self.filter.finish() if final else b""), final)
        if text:
            self._event("o", text)

    def _event(self, kind: str, text: str) -> None:
        self._write(json.dumps([round(time.monotonic() - self.started, 6), kind, text]))

    def _write(self, line: str) -> None:
        os.write(self.out, line.encode("ascii") + b"\n")  # json.dumps escapes every non-ASCII character

    def _close(self) -> None:
        for fd in (self.reader, self.keeper, self.out):
            if fd is not None:
                os.close(fd)
        shutil.rmtree(self.folder, ignore_errors=True)
        with contextlib.suppress(OSError):
            self.scratch.parent.rmdir()  # if no other hook's is in it: nothing left behind


def start_recording(path: Path | None, tmux: Tmux, session: str, console: Shows, scratch: Path) -> Recorder | None:
    """The hook's one call: a running Recorder, or None without --record."""
    if path is None:
        return None
    recorder = Recorder(path, tmux, session, console, scratch)
    recorder.start()
    return recorder
