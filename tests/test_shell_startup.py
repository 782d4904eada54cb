"""What the host's login shell runs before each guest's gate (pairing/hook/startup.py), all real: the host
account (uid 65534) gets bash or zsh as its login shell through its private passwd (tests/harness/unprivileged.py,
as tests/test_login_shells.py does for root), and startup files in its temp home or, bind-mounted in its
namespace, as a system file; `pairing direct`'s own sshd, real OpenSSH guests in another network namespace."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

import pytest

from .harness import Hook, Tmux
from .harness.unprivileged import NOBODY, USER, UnprivilegedHost
from .test_direct import READY, Direct, land, lan_on

SUBNET = ipaddress.ip_network("10.214.250.8/30")  # beside test_direct.py's and test_tmux_server.py's
HOST_IP = str(SUBNET[1])


lan = lan_on(SUBNET, "s")


@pytest.fixture
def host():
    host = UnprivilegedHost()
    try:
        yield host
    finally:
        host.remove()


def with_login_shell(host: UnprivilegedHost, shell: str) -> None:
    """The host account's login shell in its private passwd (what sshd runs forced commands with)."""
    entry = f"{USER}:x:{NOBODY}:{NOBODY}::{host.home}:"
    host.passwd.write_text(host.passwd.read_text().replace(entry + "/bin/sh\n", entry + shell + "\n"))


def home_file(host: UnprivilegedHost, name: str, text: str) -> Path:
    path = host.home / name
    path.write_text(text)
    os.chown(path, NOBODY, NOBODY)
    return path


def test_an_exec_tmux_in_bashrc_never_runs_before_a_viewers_gate(host, keys, lan, tmp_path):
    """issue 19 item 9: an unguarded `exec tmux` in ~/.bashrc gave a viewer a writable client `who` did not list."""
    with_login_shell(host, "/bin/bash")
    hijack = host.home / "hijack.sock"
    home_file(host, ".bashrc", f"exec tmux -S {hijack} new-session -A -s hijack\n")
    direct = Direct(host, keys, lan, tmp_path)
    hook = direct.start("--listen", HOST_IP)
    viewer = None
    try:
        hook.wait_for(READY)
        viewer = land(direct, "viewer")
        hook.wait_for("viewer joined the session (watching)", 10)
        assert direct.tmux.run("list-clients", "-F", "#{client_readonly}").stdout == "1\n"
        who = host.pairing("who")
        assert who.stdout.startswith("viewer ") and " watching " in who.stdout, who
        assert not hijack.exists()  # the startup file never ran: no server of its own was made
        assert "warning: your login shell" not in hook.text, hook.text
    finally:
        if viewer:
            viewer.disconnect()
        assert hook.stop() == 0, hook.text
        direct.tmux.kill_server()
        Tmux(hijack).kill_server()


def test_a_system_startup_file_that_prints_is_named_in_one_line_before_ready(host, keys, lan, tmp_path):
    """What pairing cannot keep from running (zsh reads /etc/zsh/zshenv whatever HOME says) is proven by the
    probe's login through the own sshd and named, file and line, in one warning before "ready"."""
    with_login_shell(host, "/usr/bin/zsh")
    zshenv = tmp_path / "zshenv"
    zshenv.write_text("# the machine's zshenv\n\necho SYSTEM-ZSHENV\n")
    zshenv.chmod(0o644)
    direct = Direct(host, keys, lan, tmp_path)
    hook = Hook(host.top / "hooks", direct.argv("--listen", HOST_IP), host.env,
                prefix=host.prefix(binds=((zshenv, "/etc/zsh/zshenv"),)), command="direct")
    try:
        hook.wait_for(READY)
        warnings = [line for line in hook.text.splitlines() if line.startswith("warning: your login shell")]
        assert warnings == [
            "warning: your login shell /usr/bin/zsh runs /etc/zsh/zshenv line 3 (echo SYSTEM-ZSHENV) before each "
            "guest's gate (a test login saw 'SYSTEM-ZSHENV\\r\\n' besides the marker): whatever it starts, a guest "
            "gets, unseen by pairing who; put `[[ -o interactive ]] || return` first in it"], hook.text
        assert hook.text.index(warnings[0]) < hook.text.index(READY)
        # The probe's key is gone again: the guests' file holds the two guests' lines only.
        keys_file = next((host.home / ".local/state/pairing/sshd").glob("pair-*/authorized_keys"))
        assert "pairing-probe" not in keys_file.read_text() and len(keys_file.read_text().splitlines()) == 2
    finally:
        assert hook.stop() == 0, hook.text
        direct.tmux.kill_server()


def test_doctor_names_the_startup_line_a_system_sshd_would_run_first(host):
    """--target's sshd sets nothing: doctor runs the login shell as sshd would and names the line."""
    with_login_shell(host, "/bin/bash")
    home_file(host, ".bashrc", "# mine\nexport EDITOR=vi\necho hello from bashrc\n")
    target = host.pairing("doctor", "--target", "127.0.0.1:1")
    line = next(line for line in target.stdout.splitlines() if "shell startup" in line)
    assert line == (f"FAIL shell startup: your login shell /bin/bash runs {host.home}/.bashrc line 2 (export EDITOR=vi) "
                    "before each guest's gate (a test login saw 'hello from bashrc\\r\\n' besides the marker): whatever "
                    "it starts, a guest gets, unseen by pairing who; put `[[ $- == *i* ]] || return` first in it")
    own = host.pairing("doctor")  # pairing's own sshd: ~/.bashrc is not read
    assert "ok   shell startup: /bin/bash runs nothing before a guest's gate (a test run printed only the marker)" \
        in own.stdout.splitlines(), own.stdout
