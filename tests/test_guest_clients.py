"""Guests as they come, through the real relay to the host's tmux: a key named only in the guest's own
~/.ssh/config, a guest without /bin/echo (the Windows invite, `--known-hosts`), and a PuTTY guest
running `pairing invite --putty`'s command with plink (Debian's putty-tools). Each guest runs in its
own terminal (a tmux pane), with a home of its own: a private /etc/passwd bind-mounted in a mount
namespace makes it root's home for that guest's ssh alone, so ~ means it everywhere ssh looks."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from .harness import PROJECT, Tmux, wait_until

# Run as: ENTER PASSWD HIDE COMMAND...: the guest's passwd in place, HIDE (if not "-") made an empty file.
ENTER = ('mount --bind "$0" /etc/passwd && if [ "$1" != - ]; then : > "$0.empty" && mount --bind "$0.empty" "$1"; fi'
         ' && shift && exec "$@"')


class GuestTerminal:
    """A guest's terminal running one command line, as its shell would, from `cwd`."""

    def __init__(self, home: Path, line: str, cwd: Path, hide: str = "-", name: str = "guest") -> None:
        """hide: a file the guest's machine lacks (made empty in its namespace), "-" for none."""
        passwd = home.parent / f"{name}.passwd"
        uid = str(os.getuid())
        entries = [entry.split(":") for entry in Path("/etc/passwd").read_text().splitlines()]
        passwd.write_text("".join(":".join(e[:5] + [str(home)] + e[6:] if e[2] == uid else e) + "\n" for e in entries))
        inner = shlex.join(["unshare", "--mount", "--propagation", "private", "sh", "-c", ENTER, str(passwd), hide,
                            "env", "-u", "SSH_AUTH_SOCK", f"HOME={home}", "TERM=screen", "sh", "-c", line])
        self.terminal = Tmux(home.parent / f"{name}.tmux")
        self.terminal.run("new-session", "-d", "-s", "guest", "-x", "220", "-y", "50", "-c", str(cwd),
                          f"{inner}; echo GUEST-EXITED $?; sleep 600")

    @property
    def screen(self) -> str:
        return self.terminal.screen("guest")

    def type(self, text: str) -> None:
        self.terminal.type("guest", text)

    def disconnect(self) -> None:
        self.terminal.kill_server()


def invite(pairing, *flags: str, outputs: Path | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "pairing", "invite", "--outputs", str(outputs or pairing.outputs),
                             *flags], cwd=PROJECT, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    return result


def guest_home(folder: Path, key, config: str | None) -> Path:
    """A guest's home: their key at ~/keys/work (no default name), `config` as their ~/.ssh/config."""
    home = folder / "home"
    (home / "keys").mkdir(parents=True)
    shutil.copy(key.path, home / "keys" / "work")
    (home / "keys" / "work").chmod(0o600)
    if config is not None:
        (home / ".ssh").mkdir(mode=0o700)
        (home / ".ssh" / "config").write_text(config)
    return home


OWN_CONFIG = "Host *\n    IdentityFile ~/keys/work\n    IdentitiesOnly yes\n    BatchMode yes\n"


def lands_and_types(pairing, guest: GuestTerminal, marker: str) -> None:
    wait_until(lambda: "#" in guest.screen or "GUEST-EXITED" in guest.screen, 30, "the guest to land in tmux",
               show=lambda: guest.screen)
    assert "GUEST-EXITED" not in guest.screen, guest.screen
    guest.type(f"echo {marker}-$((6*7))")
    wait_until(lambda: f"{marker}-42" in pairing.host_screen(), 10, "the guest's line in the host's pane",
               show=pairing.host_screen)


def test_a_key_named_only_in_the_guests_own_ssh_config(pairing, hook, guests, tmp_path):
    """The invite reads the guest's ~/.ssh/config after its own lines: a key kept at ~/keys/work and named
    there is offered to both hops, as plain `ssh` would."""
    home = guest_home(tmp_path, pairing.deployment.keys["guest"], OWN_CONFIG)
    guest = GuestTerminal(home, "ssh -F pairing.conf pairing", cwd=pairing.invite.parent)
    guests.append(guest)
    lands_and_types(pairing, guest, "own-config")


def test_ssh_i_reaches_the_second_hop_only_as_the_invite_says(pairing, hook, guests, tmp_path):
    """Why the header says ssh-add or IdentityFile, not -i: ProxyJump's ssh is not given -i."""
    home = guest_home(tmp_path, pairing.deployment.keys["guest"], "Host *\n    BatchMode yes\n")
    guest = GuestTerminal(home, "ssh -F pairing.conf -i ~/keys/work pairing", cwd=pairing.invite.parent)
    guests.append(guest)
    wait_until(lambda: "GUEST-EXITED" in guest.screen, 30, "the guest's ssh to end", show=lambda: guest.screen)
    assert f"pair@{pairing.deployment.relay.address}: Permission denied (publickey)." in guest.screen
    assert "GUEST-EXITED 255" in guest.screen


def test_ssh_add_as_the_invite_says_for_a_key_elsewhere(pairing, hook, guests, tmp_path):
    """The header's other way: the key in the guest's ssh-agent (one that ends with the command)."""
    home = guest_home(tmp_path, pairing.deployment.keys["guest"], "Host *\n    BatchMode yes\n")
    line = "ssh-agent sh -c 'ssh-add -q ~/keys/work && ssh -F pairing.conf pairing'"
    guest = GuestTerminal(home, line, cwd=pairing.invite.parent)
    guests.append(guest)
    lands_and_types(pairing, guest, "agent")


def test_the_windows_invite_needs_no_bin_echo(pairing, hook, guests, tmp_path):
    """`pairing invite --known-hosts` names no program and no path but its own two files: where /bin/echo is
    not (as on Windows) the default invite fails and this one joins, both hops pinned by the file beside it."""
    folder = tmp_path / "received"
    folder.mkdir()
    invite(pairing, "--out", str(folder / "pairing.conf"), "--known-hosts")
    home = guest_home(tmp_path, pairing.deployment.keys["guest"], OWN_CONFIG)
    echo = os.path.realpath("/bin/echo")
    default = GuestTerminal(home, "ssh -F pairing.conf pairing; echo SSH-EXITED $?; test -x /bin/echo || echo NO-ECHO",
                            cwd=pairing.invite.parent, hide=echo)
    guests.append(default)
    wait_until(lambda: "GUEST-EXITED" in default.screen, 30, "the default invite to fail", show=lambda: default.screen)
    assert "NO-ECHO" in default.screen and "SSH-EXITED 255" in default.screen
    assert "KnownHostsCommand failed" in default.screen  # the jump's ssh found no /bin/echo to run
    windows = GuestTerminal(home, "ssh -F pairing.conf pairing", cwd=folder, hide=echo, name="windows")
    guests.append(windows)
    lands_and_types(pairing, windows, "no-echo")


def putty_guest(pairing, tmp_path, outputs: Path | None = None, name: str = "putty", proxy_only: bool = False):
    """A guest holding the PuTTY form of their key (puttygen's), running exactly the line `--putty` printed
    (proxy_only: its relay hop alone, the local proxy command of the PuTTY window's steps)."""
    home = tmp_path / name
    home.mkdir()
    subprocess.run(["puttygen", str(pairing.deployment.keys["guest2"].path), "-O", "private", "-o",
                    str(home / "work.ppk")], check=True, capture_output=True, stdin=subprocess.DEVNULL)
    printed = invite(pairing, "--putty", "work.ppk", outputs=outputs).stdout.splitlines()
    command = [line.strip() for line in printed if line.startswith("    plink ")]
    assert len(command) == 1, printed
    line = command[0].split('"')[1] if proxy_only else command[0]
    # plink keeps its random seed under ~/.putty: the guest's own home, never this machine's.
    return GuestTerminal(home, line, cwd=home, name=name)


def test_a_putty_guest_joins_with_the_printed_command(pairing, hook, guests, tmp_path):
    guest = putty_guest(pairing, tmp_path)
    guests.append(guest)
    lands_and_types(pairing, guest, "plink")


def refused(guest: GuestTerminal) -> str:
    wait_until(lambda: "GUEST-EXITED" in guest.screen, 30, "plink to give up", show=lambda: guest.screen)
    return guest.screen.strip()


def test_plink_refuses_a_host_sshd_key_other_than_the_pinned_one(pairing, hook, guests, tmp_path):
    stranger = " ".join(pairing.deployment.keys["stranger"].public_line.split()[:2])
    guest = putty_guest(pairing, tmp_path, pairing.deployment.outputs_file("wrong-sshd.json", hostSshdKey=stranger))
    guests.append(guest)
    assert refused(guest) == "FATAL ERROR: Host key not in manually configured list\nGUEST-EXITED 1"


def test_plink_refuses_a_relay_key_other_than_the_pinned_one(pairing, hook, guests, tmp_path):
    """The relay hop's plink refuses (its own words, seen when it runs alone, as PuTTY's window runs it);
    the whole command then says its proxy closed."""
    stranger = " ".join(pairing.deployment.keys["stranger"].public_line.split()[:2])
    wrong = pairing.deployment.outputs_file("wrong-relay.json",
                                            relayKnownHosts=f"{pairing.deployment.relay.address} {stranger}\n")
    whole = putty_guest(pairing, tmp_path, wrong)
    hop = putty_guest(pairing, tmp_path, wrong, name="relay-hop", proxy_only=True)
    guests.extend([whole, hop])
    assert refused(whole) == "FATAL ERROR: Remote side unexpectedly closed network connection\nGUEST-EXITED 1"
    assert refused(hop) == "FATAL ERROR: Host key not in manually configured list\nGUEST-EXITED 1"
