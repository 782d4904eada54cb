"""The forced command under each login shell a host account may have.

sshd runs an authorized_keys command through the account's login shell
(`$SHELL -c "tmux ... attach -t =pair"`), so that shell reads the words first:
zsh, for one, takes a bare `=pair` for the path of a command named `pair`.
One relay for the module; the host's sshd is restarted with root's shell set
through a private /etc/passwd in its own mount namespace. Fixtures: conftest.py.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
from pathlib import Path

import pytest

from pairing.forced_command import gate_command, tmux_attach_command

from .harness import ORIGINAL_KEYS, ORIGINAL_MODE, HostSshd, Tmux, join, make_key, wait_until

SHELLS = {"bash": "/bin/bash", "dash": "/bin/dash", "zsh": "/usr/bin/zsh", "fish": "/usr/bin/fish"}
# Every character a socket path may hold that some shell reads as syntax (the
# hook refuses control characters, " and \ there).
AWKWARD_FOLDER = "it's $HOME =x ~ {a,b} *?[c] ;#|&<>()!%^`"


@pytest.fixture
def login_shell(request, pairing) -> str:
    """The host's sshd, restarted with root's login shell set to request.param."""
    sshd = pairing.deployment.host_sshd
    sshd.login_shell = SHELLS[request.param]
    sshd.restart()
    yield sshd.login_shell
    sshd.login_shell = None
    sshd.restart()


def client_shells(tmux: Tmux) -> set[str]:
    """The SHELL sshd gave each attached tmux client: the login shell it ran the command with."""
    pids = tmux.run("list-clients", "-F", "#{client_pid}").stdout.split()
    found = set()
    for pid in pids:
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        found |= {entry[len(b"SHELL="):].decode() for entry in env if entry.startswith(b"SHELL=")}
    return found


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("socket", [None, f"/tmp/{AWKWARD_FOLDER}/tmux"], ids=["default-socket", "awkward-socket"])
@pytest.mark.parametrize("read_only", [False, True], ids=["guest", "viewer"])
def test_every_login_shell_reads_the_command_back(shell, socket, read_only):
    """The words tmux gets are the words rendered, whichever shell reads the line
    (printf stands in for tmux's name only: the rest is the rendered line, unchanged)."""
    command = tmux_attach_command("pair", read_only, socket)
    assert command.startswith("tmux ")
    result = subprocess.run([SHELLS[shell], "-c", "printf '[%s]\\n'" + command[len("tmux"):]],
                            capture_output=True, text=True, timeout=10, stdin=subprocess.DEVNULL)
    argv = (["-S", socket] if socket else []) + ["attach"] + (["-r"] if read_only else []) + ["-t", "=pair"]
    assert (result.stdout, result.stderr) == ("".join(f"[{word}]\n" for word in argv), "")


@pytest.mark.parametrize("shell", SHELLS)
def test_every_login_shell_runs_the_gate_with_the_words_rendered(shell, tmp_path):
    """The guest's forced command is its gate (pairing/gate.py) run by `exec python -I -S`: a stand-in
    gate that prints its arguments gets, under each shell, exactly the words rendered."""
    folder = tmp_path / AWKWARD_FOLDER
    folder.mkdir()
    gate = folder / "gate.py"
    gate.write_text("import json, sys\nprint(json.dumps(sys.argv[1:]))\n")
    control, socket = str(folder / "control.sock"), str(folder / "tmux")
    command = gate_command("/usr/bin/python3", str(gate), control, "alice", "pair", socket)
    result = subprocess.run([SHELLS[shell], "-c", command], capture_output=True, text=True, timeout=10,
                            stdin=subprocess.DEVNULL)
    assert result.stderr == "" and json.loads(result.stdout) == [
        "--control", control, "--name", "alice", "--session", "pair", "--tmux-socket", socket]


@pytest.mark.parametrize("word", ["a\\b", "a\nb", "a\rb", "a\x1bb", "a\x7fb"], ids=["backslash", "LF", "CR", "ESC", "DEL"])
def test_command_words_no_shell_reads_alike_are_refused(word):
    """A backslash no word can carry (fish's single quotes have escapes, and sshd keeps every
    backslash of command="..." not before a quote) and control characters are refused, not rendered."""
    with pytest.raises(ValueError, match="control character or backslash in a tmux command word"):
        tmux_attach_command("pair", False, f"/tmp/{word}/tmux")


@pytest.mark.parametrize("login_shell", SHELLS, indirect=True)
def test_guest_lands_and_types_under_every_login_shell(pairing, login_shell, hook, guests):
    guest = join(pairing, guests, "guest")
    guest.type("echo typed-under-login-shell-$((6*7))")
    wait_until(lambda: "typed-under-login-shell-42" in pairing.host_screen(), 10,
               "the guest's command to run in the host's pane", show=pairing.host_screen)
    assert client_shells(pairing.host_tmux) == {login_shell}


@pytest.mark.parametrize("login_shell", ["zsh", "fish"], indirect=True)
def test_viewer_watches_under_zsh_and_fish(pairing, login_shell, hook, guests):
    viewer = join(pairing, guests, "viewer")
    wait_until(lambda: "joined the session (watching)" in hook.text, 10, "the hook to announce the viewer")
    pairing.host_types("echo shown-under-login-shell-$((4*4))")
    wait_until(lambda: "shown-under-login-shell-16" in viewer.screen, 10, "the host's output on the viewer's screen")
    assert client_shells(pairing.host_tmux) == {login_shell}
    assert pairing.host_tmux.run("list-clients", "-F", "#{client_readonly}").stdout.split() == ["1"]


@pytest.mark.parametrize("login_shell", SHELLS, indirect=True)
def test_awkward_tmux_socket_path_under_every_login_shell(pairing, login_shell, guests):
    """`pairing host --tmux-socket` with a path full of shell syntax: guest and viewer land in that server."""
    folder = pairing.folder / AWKWARD_FOLDER
    folder.mkdir(exist_ok=True)
    awkward = dataclasses.replace(pairing, host_tmux=Tmux(folder / "host.tmux"))
    hook = awkward.start_hook()
    try:
        hook.wait_for("ready: guests can join now")
        guest = join(awkward, guests, "guest")
        guest.type("echo awkward-socket-$((9*9))")
        wait_until(lambda: "awkward-socket-81" in awkward.host_screen(), 10, "the guest's line in the awkward server",
                   show=awkward.host_screen)
        viewer = join(awkward, guests, "viewer")
        wait_until(lambda: "awkward-socket-81" in viewer.screen, 10, "the viewer to see the session")
        assert sorted(awkward.host_tmux.run("list-clients", "-F", "#{client_readonly}").stdout.split()) == ["0", "1"]
        assert client_shells(awkward.host_tmux) == {login_shell}
    finally:
        assert hook.stop() == 0, hook.text
        awkward.host_tmux.kill_server()
    assert pairing.authorized_keys() == (ORIGINAL_KEYS, ORIGINAL_MODE)


@pytest.mark.parametrize("shell", SHELLS)
def test_the_host_account_never_reads_this_machines_dotfiles(tmp_path, shell):
    """The harness's host sshd gives root a temp home, so a login runs none of this
    machine's `~/.bashrc`, `~/.zshenv` or `~/.ssh/rc` (a CI machine's `~/.bashrc`
    once waited 60 s on a stale pyenv lock before every guest's tmux attach)."""
    key = make_key(tmp_path, "probe")
    authorized_keys = tmp_path / "authorized_keys"
    authorized_keys.write_text(f'command="echo HOME=$HOME; pwd" {key.public_line}\n')
    sshd = HostSshd(tmp_path / "sshd", authorized_keys, login_shell=SHELLS[shell])
    sshd.start()
    try:
        known_hosts = tmp_path / "known_hosts"
        known_hosts.write_text(f"[127.0.0.1]:{sshd.port} {sshd.host_key.public_line}\n")
        result = subprocess.run(
            ["ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", f"UserKnownHostsFile={known_hosts}",
             "-o", "StrictHostKeyChecking=yes", "-i", str(key.path), "-p", str(sshd.port), "root@127.0.0.1"],
            capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    finally:
        sshd.stop()
    assert result.stdout == f"HOME={sshd.home}\n{sshd.home}\n", result.stderr
