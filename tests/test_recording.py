"""`--record FILE.cast`, end to end and all real: the relay, the hook as its own process, the host's tmux and a
guest's OpenSSH in a terminal. The file is read as asciicast v2 by json and by asciinema itself
(`asciinema cat` prints what was recorded). Bad values are refused in one line before anything is touched."""

from __future__ import annotations

import ctypes
import json
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .harness import ORIGINAL_KEYS, ORIGINAL_MODE, PROJECT, Hook, join, wait_until

READY = "ready: guests can join now"
IN_ATTRIB, IN_CREATE = 0x4, 0x100
EUROS = "x" + "\N{EURO SIGN}" * 30000 + "yz" + "\N{EURO SIGN}" * 30000
SNAPSHOT = "\x1b[0m\x1b[H\x1b[2J"  # how the recording starts a pane's screen (hook/recording.py)


class Inotify:
    """The kernel's word on what happened to the files of a folder: a chmod is an IN_ATTRIB, a write is not."""

    def __init__(self, folder: Path) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self.fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        assert self.fd >= 0 and libc.inotify_add_watch(self.fd, str(folder).encode(), IN_ATTRIB | IN_CREATE) >= 0

    def events(self) -> list[tuple[int, str]]:
        seen = []
        while True:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                return seen
            offset = 0
            while offset < len(data):
                _, mask, _, length = struct.unpack_from("iIII", data, offset)
                seen.append((mask, data[offset + 16:offset + 16 + length].rstrip(b"\0").decode()))
                offset += 16 + length

    def close(self) -> None:
        os.close(self.fd)


def recording_hook(pairing, cast: Path) -> Hook:
    return Hook(pairing.folder / "hooks", [*pairing.hook_argv(), "--record", str(cast)], pairing.hook_env())


def cast_of(path: Path) -> tuple[dict, list]:
    """The header and the events; every line must be a whole JSON value."""
    header, *events = [json.loads(line) for line in path.read_text(encoding="ascii").splitlines()]
    return header, events


def shown(path: Path) -> str:
    return "".join(text for _, kind, text in cast_of(path)[1] if kind == "o")


def asciinema_cat(path: Path) -> str:
    result = subprocess.run([sys.executable, "-m", "asciinema", "cat", str(path)], capture_output=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return result.stdout.decode()


def pane_size(pairing) -> tuple[int, int]:
    width, height = pairing.host_tmux.run("display-message", "-p", "-t", f"={pairing.session}:",
                                          "#{pane_width} #{pane_height}").stdout.split()
    return int(width), int(height)


def piped(pairing) -> bool:
    """Whether any pane of the session still has a pipe (the recorder's `cat`)."""
    panes = pairing.host_tmux.run("list-panes", "-s", "-t", f"={pairing.session}", "-F", "#{pane_pipe}").stdout
    return "1" in panes.split()


def test_the_recording_holds_what_the_guest_typed(pairing, guests, tmp_path):
    folder = tmp_path / "recordings"
    folder.mkdir()
    cast = folder / "session.cast"
    watch = Inotify(folder)
    started = time.time()
    hook = recording_hook(pairing, cast)
    try:
        hook.wait_for(READY)
        assert oct(cast.stat().st_mode & 0o777) == "0o600"
        size = pane_size(pairing)  # before any guest: the session as the hook found it
        assert f"recording what guests see to {cast} (asciicast v2, mode 600)" in hook.text
        guest = join(pairing, guests, "guest")
        guest.type("echo typed-by-guest-$((6*7))")
        wait_until(lambda: "typed-by-guest-42" in shown(cast), 10, "the guest's line in the recording",
                   show=lambda: cast.read_text())
        wait_until(lambda: pane_size(pairing) != size, 10, "the session to take the guest's size")
        wait_until(lambda: ["r", "%dx%d" % pane_size(pairing)] in [e[1:] for e in cast_of(cast)[1]], 10,
                   "the guest's size as an 'r' event", show=lambda: cast.read_text())
        wait_until(lambda: f"| recording to {cast}" in hook.text, 10, "the status line to say it records")
    finally:
        assert hook.stop() == 0, hook.text
    header, events = cast_of(cast)
    assert header == {"version": 2, "width": size[0], "height": size[1], "timestamp": header["timestamp"],
                      "title": f"pairing: tmux session {pairing.session}"}
    assert started - 1 <= header["timestamp"] <= time.time()
    times = [event[0] for event in events]
    assert times == sorted(times) and {event[1] for event in events} == {"o", "r"}
    assert "typed-by-guest-42" in asciinema_cat(cast)
    # Made with mode 600, never changed after: the kernel saw it created and never chmod-ed.
    assert [(mask, name) for mask, name in watch.events() if name == cast.name] == [(IN_CREATE, cast.name)]
    watch.close()
    assert oct(cast.stat().st_mode & 0o777) == "0o600" and cast.stat().st_uid == os.geteuid()
    # The recording ended with the hook: the pipe is closed, and what the session shows now is not in the file.
    assert f"recording ended: {cast}" in hook.text
    assert not piped(pairing)
    before = cast.read_bytes()
    pairing.host_types("echo after-the-hook-$((5*5))")
    wait_until(lambda: "after-the-hook-25" in pairing.host_screen(), 10, "the host's line on the host's screen")
    assert cast.read_bytes() == before


def test_the_recording_follows_the_window_guests_see_with_whole_characters(pairing, guests, tmp_path):
    """A new window is what guests see next: recorded from its first screen. 3-byte characters by the
    thousand cross the pipe's reads at every offset, and each comes out whole."""
    cast = tmp_path / "windows.cast"
    hook = recording_hook(pairing, cast)
    try:
        hook.wait_for(READY)
        guest = join(pairing, guests, "guest")
        pairing.host_tmux.run("new-window", "-t", f"={pairing.session}:")
        # Within REFRESH s the recorder follows, with the new window's screen: from then on output streams.
        wait_until(lambda: shown(cast).count(SNAPSHOT) == 2, 10, "the new window's first screen in the recording")
        # From a file by cat: large writes the pty cuts where it likes, not printf's one character per write;
        # one and two ASCII bytes shift the cuts off the characters' bounds.
        euros = tmp_path / "euros"
        euros.write_text(EUROS)
        pairing.host_types(f"cat {euros}; echo; echo euros-$((6*7))")
        wait_until(lambda: "euros-42" in guest.screen, 10, "the new window on the guest's screen")
        wait_until(lambda: "euros-42" in shown(cast), 10, "the new window's line in the recording",
                   show=lambda: cast.read_text()[-2000:])
    finally:
        assert hook.stop() == 0, hook.text
    text = shown(cast)
    assert EUROS in text and "\N{REPLACEMENT CHARACTER}" not in text
    assert not piped(pairing)


# What a guest prints (printf in the pane's /bin/sh): a clipboard write (OSC 52), the same through tmux's DCS
# passthrough, a title (OSC 0), then a coloured line. tmux passes on only the line, and so does the recording.
HOSTILE_PRINTF = (r"printf '\033]52;c;cm0gLXJmIH4K\a\033Ptmux;\033\033]52;c;cm0gLXJmIH4K\a\033\\"
                  r"\033]0;evil-title\a\033[31mred-%s\033[0m\n' $((6*7))")


def test_the_recording_drops_what_tmux_does_not_pass_on(pairing, guests, tmp_path):
    """Finding 6 (issue 19): no OSC 52, no DCS, no title in the .cast; SGR kept; asciinema still reads it."""
    cast = tmp_path / "hostile.cast"
    hook = recording_hook(pairing, cast)
    try:
        hook.wait_for(READY)
        guest = join(pairing, guests, "guest")
        guest.type(HOSTILE_PRINTF)
        wait_until(lambda: "red-42" in guest.screen, 10, "the coloured line on the guest's screen")
        wait_until(lambda: "\x1b[31mred-42\x1b[0m" in shown(cast), 10, "the coloured line in the recording",
                   show=lambda: cast.read_text()[-2000:])
    finally:
        assert hook.stop() == 0, hook.text
    text = shown(cast)
    assert "\x1b]52" not in text and "\x1bP" not in text and "\x1b]0;" not in text and "\x07" not in text
    assert "\x1b]0;evil-title" not in text  # the typed command's own echo holds the words, not the sequence
    replayed = asciinema_cat(cast)
    assert "\x1b[31mred-42" in replayed and "\x1b]52" not in replayed


def test_a_pane_piped_elsewhere_is_said_and_replaced(pairing, tmp_path):
    """tmux has one pipe per pane (a logging plugin may hold it): the hook says it takes it over."""
    other = tmp_path / "plugin.log"
    if pairing.host_tmux.run("has-session", "-t", f"={pairing.session}", check=False).returncode:
        pairing.host_tmux.run("new-session", "-d", "-s", pairing.session, "/bin/sh")  # as the hook would make it
    pairing.host_tmux.run("pipe-pane", "-t", f"={pairing.session}:", f"exec cat > {other}")
    cast = tmp_path / "replaced.cast"
    hook = recording_hook(pairing, cast)
    try:
        hook.wait_for(READY)
        assert "had a pipe-pane already; --record replaces it" in hook.text
        pairing.host_types("echo replaced-$((3*3))")
        wait_until(lambda: "replaced-9" in shown(cast), 10, "the host's line in the recording")
    finally:
        assert hook.stop() == 0, hook.text
    assert "replaced-9" not in other.read_text()


def test_ctrl_c_ends_the_recording_with_the_hook(pairing, tmp_path):
    cast = tmp_path / "interrupted.cast"
    hook = recording_hook(pairing, cast)
    try:
        hook.wait_for(READY)
        pairing.host_types("echo before-ctrl-c-$((8*8))")
        wait_until(lambda: "before-ctrl-c-64" in shown(cast), 10, "the host's line in the recording")
    finally:
        assert hook.stop(signal.SIGINT) == 0, hook.text
    assert f"recording ended: {cast}" in hook.text and "Traceback" not in hook.text, hook.text
    assert not piped(pairing)
    assert "before-ctrl-c-64" in asciinema_cat(cast)
    assert pairing.authorized_keys() == (ORIGINAL_KEYS, ORIGINAL_MODE)


def test_a_killed_hook_leaves_a_valid_recording(pairing, tmp_path):
    """SIGKILL: no cleanup runs, yet every line written is a whole event, and the pipe's `cat` ends at the
    session's next output."""
    cast = tmp_path / "killed.cast"
    hook = recording_hook(pairing, cast)
    try:
        hook.wait_for(READY)
        pairing.host_types("echo before-the-kill-$((9*9))")
        wait_until(lambda: "before-the-kill-81" in shown(cast), 10, "the host's line in the recording")
    finally:
        hook.stop(signal.SIGKILL)
        # What SIGKILL left behind (the guests' block, the lock): put back as the module's other tests expect.
        pairing.deployment.authorized_keys.write_bytes(ORIGINAL_KEYS)
        pairing.deployment.authorized_keys.chmod(ORIGINAL_MODE)
    assert "before-the-kill-81" in asciinema_cat(cast)
    assert cast.read_bytes().endswith(b"]\n")
    pairing.host_types("echo after-the-kill")
    wait_until(lambda: not piped(pairing), 10, "the pipe to close once its reader is gone")


# --- bad values: one line naming --record and the fix, exit 2, nothing written -----------------------------

COMMANDS = {
    "host": ["host", "--outputs", "outputs.json"],  # not read: --record is refused first
    "up": ["up", "--guest", "gh:octocat"],
    "direct": ["direct", "--listen", "127.0.0.1", "--guest", "gh:octocat"],
}


def refused(command: str, record: Path, home: Path) -> subprocess.CompletedProcess:
    env = {"HOME": str(home), "PATH": os.environ["PATH"], "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run([sys.executable, "-m", "pairing", *COMMANDS[command], "--record", str(record)], cwd=PROJECT,
                          env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("command", COMMANDS)
def test_an_existing_file_is_refused(command, tmp_path):
    cast = tmp_path / "last-week.cast"
    cast.write_bytes(b"last week's session\n")
    cast.chmod(0o644)
    result = refused(command, cast, tmp_path)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (f"pairing {command}: --record {cast}: the file exists, and a recording never replaces a "
                             "file; give a new name, or move the old one away\n")
    assert cast.read_bytes() == b"last week's session\n" and cast.stat().st_mode & 0o777 == 0o644
    assert sorted(os.listdir(tmp_path)) == ["last-week.cast"]


@pytest.mark.parametrize("command", COMMANDS)
def test_a_folder_that_does_not_exist_is_refused(command, tmp_path):
    cast = tmp_path / "recordings" / "pair.cast"
    result = refused(command, cast, tmp_path)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (f"pairing {command}: --record {cast}: there is no folder {cast.parent}; create it "
                             f"(mkdir -p {cast.parent}) or give a file in an existing folder\n")
    assert os.listdir(tmp_path) == []


def test_a_path_with_a_control_character_is_refused(tmp_path):
    cast = tmp_path / "pair\x1b[2J.cast"
    result = refused("host", cast, tmp_path)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (f"pairing host: --record {str(cast)!r}: the path holds control or format characters; "
                             "give a plain file name, e.g. --record pair.cast\n")
    assert os.listdir(tmp_path) == []


def test_the_flag_is_documented_with_an_example():
    for command in COMMANDS:
        result = subprocess.run([sys.executable, "-m", "pairing", command, "--help"], cwd=PROJECT,
                                capture_output=True, text=True, timeout=30)
        text = " ".join(result.stdout.split())  # as argparse wraps it
        assert "--record FILE.cast" in text and "`asciinema play FILE.cast` replays it; e.g. --record ~/pair-monday.cast" in text
