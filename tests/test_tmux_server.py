"""The pair session's tmux server (pairing/hook/tmux_server.py): pairing's own by default, whatever $TMUX
says; a --tmux-socket server another uid made, or one others could replace, refused before anything
starts; a viewer never sizes the window. Through `pairing direct` as uid 65534 (tests/test_direct.py's
harness), real OpenSSH guests in another network namespace, real tmux."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

from pairing.hook.guests import GATE
from pairing.hook.tmux_server import untrusted

from .harness import Hook, Tmux, wait_until
from .harness.unprivileged import NOBODY, UnprivilegedHost
from .test_direct import READY, Direct, land, lan_on

SUBNET = ipaddress.ip_network("10.214.250.4/30")  # beside test_direct.py's, so both may run at once
HOST_IP = str(SUBNET[1])
OTHER = 65533  # another local user: not the host (uid 65534), not root


lan = lan_on(SUBNET, "t")


@pytest.fixture(scope="module")
def direct(keys, lan, tmp_path_factory):
    host = UnprivilegedHost()
    session = Direct(host, keys, lan, tmp_path_factory.mktemp("tmux-server"))
    try:
        yield session
    finally:
        session.tmux.kill_server()
        Tmux(own_socket(session)).kill_server()
        host.remove()


def own_socket(direct: Direct) -> Path:
    return direct.host.home / ".local/state/pairing/tmux/pair"


def window_size(tmux: Tmux) -> str:
    return tmux.run("display-message", "-p", "-t", "=pair:", "#{window_width}x#{window_height}").stdout.strip()


def client_sizes(tmux: Tmux) -> list[str]:
    return tmux.run("list-clients", "-F", "#{client_readonly} #{client_width}x#{client_height}").stdout.splitlines()


def test_another_uids_server_is_refused_in_one_line_and_nothing_starts(direct):
    """issue 19 item 3: another uid's server in a shared folder, `server-access -a` for the host, chmod 777."""
    shared = Path(tempfile.mkdtemp(prefix="pairing-shared-"))
    shared.chmod(0o1777)  # as /tmp
    path = shared / "pair.sock"
    as_other = ["setpriv", f"--reuid={OTHER}", f"--regid={OTHER}", "--clear-groups", "env", "-i", "HOME=/",
                "PATH=/usr/bin:/bin"]
    theirs = lambda *argv: subprocess.run([*as_other, "tmux", "-S", str(path), *argv], cwd="/", capture_output=True,
                                          text=True)
    assert theirs("-f", "/dev/null", "new-session", "-d", "-s", "pair").returncode == 0
    try:
        assert theirs("server-access", "-a", "nobody").returncode == 0  # uid 65534 may use it
        subprocess.run([*as_other, "chmod", "777", str(path)], check=True)
        invite = direct.host.home / "refused.conf"
        windows = theirs("list-windows", "-a", "-F", "#{session_name}:#{window_index}").stdout
        result = direct.host.pairing("direct", "--guest", direct.keys["guest"].public_line, "--listen", HOST_IP,
                                     "--invite", str(invite), "--tmux-socket", str(path))
        assert (result.returncode, result.stdout) == (2, ""), result
        assert result.stderr == (
            f"pairing direct: --tmux-socket {path}: it belongs to uid {OTHER}, not to you: that tmux server is "
            f"theirs; leave --tmux-socket out to use pairing's own tmux server (tmux -S {own_socket(direct)} "
            "attach -t pair)\n")
        assert theirs("list-windows", "-a", "-F", "#{session_name}:#{window_index}").stdout == windows == "pair:0\n"
        assert not invite.exists() and not own_socket(direct).exists()
        assert not (direct.host.home / ".local/state/pairing/sshd").exists()  # no lock, no sshd folder
    finally:
        theirs("kill-server")
        shutil.rmtree(shared, ignore_errors=True)


@pytest.fixture
def layout(tmp_path):
    """A folder (mode 755, root's) for unit checks of untrusted(), run as root: owners set by chown."""
    tmp_path.chmod(0o755)
    return tmp_path


def listening_socket(path: Path, owner: int = 0, mode: int = 0o600) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(path))
    os.chown(path, owner, owner)
    path.chmod(mode)
    return sock


@pytest.mark.parametrize("folder_mode, owner, socket_mode, exists, refused", [
    (0o700, 0, 0o600, True, None),  # a folder and socket of one's own
    (0o700, 0, 0o600, False, None),  # none yet, and nobody else can make it
    (0o1777, 0, 0o600, True, None),  # /tmp-like: others cannot rename or remove our socket
    (0o1777, 0, 0o600, False, "no socket of yours is there yet, so anyone can make it first"),
    (0o1777, OTHER, 0o777, True, f"it belongs to uid {OTHER}, not to you: that tmux server is theirs"),
    (0o777, 0, 0o600, True, "(mode drwxrwxrwx) may be written by others, so anyone can replace it"),
    (0o770, 0, 0o600, True, "(mode drwxrwx---) may be written by others, so anyone can replace it"),
    (0o700, 0, 0o660, True, "its mode srw-rw---- lets others write to it"),
])
def test_which_servers_are_surely_ones_own(layout, folder_mode, owner, socket_mode, exists, refused):
    folder = layout / "f"
    folder.mkdir()
    folder.chmod(folder_mode)
    path = folder / "pair.sock"
    sock = listening_socket(path, owner, socket_mode) if exists else None
    try:
        problem = untrusted(str(path))
        assert problem == refused if refused is None else refused in (problem or ""), problem
    finally:
        if sock:
            sock.close()


def test_links_and_folders_of_others_on_the_way_are_refused(layout):
    mine = layout / "mine"
    mine.mkdir(mode=0o700)
    sock = listening_socket(mine / "pair.sock")
    try:
        (layout / "link.sock").symlink_to(mine / "pair.sock")
        assert untrusted(str(layout / "link.sock")) == "it is a symbolic link; give the socket's own path"
        (layout / "to-mine").symlink_to(mine)  # root's link to root's folder: followed, and fine
        assert untrusted(str(layout / "to-mine" / "pair.sock")) is None
        theirs = layout / "theirs"
        theirs.mkdir(mode=0o755)
        os.chown(theirs, OTHER, OTHER)
        os.symlink(mine, theirs / "link")
        assert untrusted(str(theirs / "link" / "pair.sock")) == (
            f"its folder {theirs} belongs to uid {OTHER}, who can put another server in its place")
        os.lchown(layout / "to-mine", OTHER, OTHER)
        assert untrusted(str(layout / "to-mine" / "pair.sock")) == (
            f"{layout / 'to-mine'} is a symbolic link of uid {OTHER}, who can point it elsewhere")
    finally:
        sock.close()


def test_the_session_is_on_pairings_own_server_whatever_tmux_says(direct):
    """issue 21: run inside another tmux server ($TMUX), the guest still lands in the pair session the hook made."""
    other = direct.host.home / "other.sock"  # the host's own other server, as `tmux -L x` would be
    started = subprocess.run([*direct.host.prefix(python=False), "tmux", "-S", str(other), "new-session", "-d", "-s",
                              "work"], env=direct.host.env, capture_output=True, text=True)
    assert started.returncode == 0, started.stderr
    pid = Tmux(other).run("display-message", "-p", "#{pid}").stdout.strip()
    argv = ["--guest", direct.keys["guest"].public_line, "--invite", str(direct.invite), "--listen", HOST_IP]
    hook = Hook(direct.host.top / "hooks", argv, {**direct.host.env, "TMUX": f"{other},{pid},0"},
                prefix=direct.host.prefix(), command="direct")
    guest = None
    try:
        hook.wait_for(READY)
        assert f"you join the pair session with: tmux -S {own_socket(direct)} attach -t pair" in hook.text, hook.text
        found = os.lstat(own_socket(direct).parent)
        assert (found.st_uid, stat.S_IMODE(found.st_mode)) == (NOBODY, 0o700)
        guest = land(direct)
        guest.type("echo own-server-$((6*7))")
        own = Tmux(own_socket(direct))
        wait_until(lambda: "own-server-42" in own.screen("=pair:"), 10, "the guest's line in pairing's own server",
                   show=lambda: own.screen("=pair:"))
        assert own.run("list-sessions", "-F", "#{session_name}").stdout == "pair\n"  # nothing else to switch to
        assert Tmux(other).run("list-sessions", "-F", "#{session_name}").stdout == "work\n"
    finally:
        if guest:
            guest.disconnect()
        assert hook.stop() == 0, hook.text
        Tmux(other).kill_server()


def test_a_lone_viewer_never_sizes_the_window_and_a_typing_guest_does(direct):
    """issue 19 item 8: a viewer alone used to make the window theirs (40x11, then 9999x9998)."""
    hook = direct.start("--listen", HOST_IP)
    viewer = guest = None
    try:
        hook.wait_for(READY)
        before = window_size(direct.tmux)
        viewer = land(direct, "viewer")
        for cols, rows in ((40, 11), (200, 60)):
            viewer.terminal.run("resize-window", "-t", "guest", "-x", str(cols), "-y", str(rows))
            # The viewer's tmux client has the new size (its terminal told sshd, sshd the pty): then the window is looked at.
            wait_until(lambda: client_sizes(direct.tmux) == [f"1 {cols}x{rows}"], 10, "the viewer's client resized",
                       show=lambda: client_sizes(direct.tmux))
            assert window_size(direct.tmux) == before
        guest = land(direct, "guest")
        guest.terminal.run("resize-window", "-t", "guest", "-x", "90", "-y", "25")
        wait_until(lambda: window_size(direct.tmux) == "90x24", 10, "the typing guest's size to be the window's",
                   show=lambda: (window_size(direct.tmux), client_sizes(direct.tmux)))
        # Not alone either: a viewer smaller than the typing guest is not counted (the window is the smallest typist's).
        viewer.terminal.run("resize-window", "-t", "guest", "-x", "40", "-y", "11")
        wait_until(lambda: "1 40x11" in client_sizes(direct.tmux), 10, "the viewer's client resized")
        assert window_size(direct.tmux) == "90x24"
        guest.disconnect()
        guest = None
        wait_until(lambda: len(client_sizes(direct.tmux)) == 1, 10, "the typing guest to leave")
        viewer.terminal.run("resize-window", "-t", "guest", "-x", "50", "-y", "15")
        wait_until(lambda: client_sizes(direct.tmux) == ["1 50x15"], 10, "the viewer's client resized")
        assert window_size(direct.tmux) == "90x24"
    finally:
        for someone in (viewer, guest):
            if someone:
                someone.disconnect()
        assert hook.stop() == 0, hook.text
    assert re.search(r"viewer joined the session \(watching\)", hook.text), hook.text


def test_the_gate_attaches_only_to_a_socket_of_the_hosts_uid(layout):
    """If the checked server ended during the run, whoever then made a socket at its path gets no guest:
    the gate (pairing/gate.py, the real one) looks again before it execs tmux."""
    control = listening_socket(layout / "control.sock")
    control.listen(2)

    def answer_in() -> None:
        for _ in range(2):
            conn, _ = control.accept()
            with conn:
                conn.makefile("rb").readline()
                conn.sendall(json.dumps({"answer": "in", "read_only": True}).encode() + b"\n")

    threading.Thread(target=answer_in, daemon=True).start()
    theirs, mine = listening_socket(layout / "theirs.sock", OTHER), listening_socket(layout / "mine.sock")
    try:
        def gate(tmux_socket: str) -> subprocess.CompletedProcess:
            return subprocess.run([sys.executable, "-I", "-S", str(GATE), "--control", str(layout / "control.sock"),
                                   "--name", "alice", "--session", "pair", "--tmux-socket", tmux_socket,
                                   "--tmux", "/bin/echo"], capture_output=True, text=True, timeout=10)
        refused = gate(str(layout / "theirs.sock"))
        assert (refused.returncode, refused.stdout) == (
            1, "pairing: the host's tmux server is gone; ask them to start pairing again\n")
        let_in = gate(str(layout / "mine.sock"))  # /bin/echo stands in for tmux: its words are tmux's
        assert (let_in.returncode, let_in.stdout) == (0, f"-S {layout / 'mine.sock'} attach -r -t =pair\n")
    finally:
        for sock in (control, theirs, mine):
            sock.close()


def test_a_socket_handed_over_to_the_host_still_names_its_servers_uid():
    """The socket may be chowned to the host (by root, say); the kernel still says whose server listens."""
    folder = Path(tempfile.mkdtemp(prefix="pairing-handed-"))  # outside root's 0700 pytest folder
    folder.chmod(0o777)
    path = folder / "pair.sock"
    server = subprocess.Popen(
        ["setpriv", f"--reuid={OTHER}", f"--regid={OTHER}", "--clear-groups", "/usr/bin/python3", "-I", "-c",
         "import socket, sys, time; s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen(1); "
         "print('up', flush=True); time.sleep(60)", str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline() == "up\n"
        os.chown(path, 0, 0)
        folder.chmod(0o755)
        assert untrusted(str(path)) == (f"the server answering on it runs as uid {OTHER}, not as you: that tmux "
                                        "server is theirs")
    finally:
        server.kill()
        server.wait()
        shutil.rmtree(folder, ignore_errors=True)
