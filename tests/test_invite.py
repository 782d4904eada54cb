"""`pairing invite` as the host and the guest read it, no relay needed: the header that explains the invite, an
invite for one guest by name, the guest's own ~/.ssh/config read without loosening a pin (the real `ssh -G`), the
Windows variant, and `--putty`'s command and its refusals. Real `python -m pairing` in a temp HOME."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from pairing.outputs import HOST_NAME, render_outputs
from pairing.settings import settings_from
from pairing.sshkeys import parse_public_key

from .harness import PROJECT

pytestmark = pytest.mark.pure  # needs neither root nor the relay tools (tests/conftest.py)

MACHINE = socket.gethostname() if HOST_NAME.fullmatch(socket.gethostname()) else None


def named(key, name: str) -> str:
    return " ".join([*key.public_line.split()[:2], name])


@pytest.fixture(scope="module")
def outputs(keys, tmp_path_factory) -> Path:
    """Outputs for a relay at 203.0.113.10: guests alice and bob, viewer carol (names are keys' comments)."""
    settings = settings_from({
        "guestKeys": [named(keys["guest"], "alice"), named(keys["guest2"], "bob")],
        "viewerKeys": [named(keys["viewer"], "carol")], "hostPublicKey": keys["host"].public_line,
        "hostSshdKey": keys["sshd"].public_line, "hostUser": "dana",
    })
    rendered = render_outputs(settings, relay_address="203.0.113.10", relay_host_key=parse_public_key(
        keys["stranger"].public_line), instance_id="i-0123456789abcdef0", launch_time="2026-11-26T15:00:00Z")
    path = tmp_path_factory.mktemp("outputs") / "outputs.json"
    path.write_text(json.dumps(rendered))
    return path


def fingerprint(key) -> str:
    return parse_public_key(key.public_line).fingerprint


def invite(*argv: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(cwd), "PYTHONPATH": str(PROJECT)}
    return subprocess.run([sys.executable, "-m", "pairing", "invite", *argv], cwd=cwd, env=env, capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=60)


def header(config: str) -> list[str]:
    return [line for line in config.splitlines() if line.startswith("#")]


def ssh_g(config: Path, host: str, home: Path, path: str = "/usr/bin:/bin") -> dict[str, list[str]]:
    """What the real ssh makes of the config, every value of each option."""
    result = subprocess.run(["/usr/bin/ssh", "-G", "-F", str(config), host], capture_output=True, text=True, timeout=30,
                            cwd=config.parent, env={"HOME": str(home), "PATH": path}, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    seen: dict[str, list[str]] = {}
    for line in result.stdout.splitlines():
        key, _, value = line.partition(" ")
        seen.setdefault(key, []).append(value)
    return seen


def test_the_invite_explains_itself(outputs, keys, tmp_path):
    result = invite("--outputs", str(outputs), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    where = f"dana's tmux session on {MACHINE}" if MACHINE else "dana's tmux session"
    assert header((tmp_path / "pairing.conf").read_text()) == [
        f"# pairing: an invitation to join {where}.",
        "# Connect, in the folder holding this file:  ssh -F pairing.conf pairing",
        "# Needs OpenSSH 8.5+ (Linux, macOS). On Windows or older: ask your host for `pairing invite --known-hosts`.",
        "# Who may type: alice, bob. Who may only watch: carol.",
        "# The relay, and this invitation, end at 2026-11-26T19:00:00Z (UTC).",
        "# Both hops are pinned below; to double-check with your host by voice or chat:",
        f"#     relay 203.0.113.10: {fingerprint(keys['stranger'])}",
        f"#     host sshd: {fingerprint(keys['sshd'])}",
        "# To leave: detach with C-b d (Ctrl-b, then d), or close the terminal; the host's session goes on.",
        "# Your key: ssh offers the usual ones: ~/.ssh/id_*, your ssh-agent, and what your own ~/.ssh/config",
        "# names (this file reads it last; its own lines above win). A key elsewhere: ssh-add PATH first, or",
        "# add `Host pairing pairing-relay` + `IdentityFile PATH` to ~/.ssh/config (ssh -i reaches only the",
        "# second hop, not the relay).",
        "# Then your own ssh config: your keys and agent (the lines above win).",
    ]
    assert "A guest on Windows, or with OpenSSH before 8.5: pairing invite --known-hosts (two files)." in result.stdout


@pytest.mark.parametrize("name, role, key", [("bob", "may type", "guest2"), ("carol", "may only watch (read-only)", "viewer")])
def test_an_invite_for_one_guest(outputs, keys, tmp_path, name, role, key):
    result = invite("--outputs", str(outputs), "--for", name, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"wrote pairing.conf for {name}: send it to your guest")
    lines = header((tmp_path / "pairing.conf").read_text())
    assert lines[3:5] == [f"# For {name}, who {role}; your key: {fingerprint(keys[key])}",
                          "#     (see yours with: ssh-keygen -lf YOUR_KEY.pub)"]


def test_an_unknown_name_lists_the_names_there_are(outputs, tmp_path):
    result = invite("--outputs", str(outputs), "--for", "zed", cwd=tmp_path)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == "pairing invite: --for 'zed': no guest of that name; the guests are alice, bob, carol\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing written


def test_the_guests_own_config_is_read_but_cannot_loosen_a_pin(outputs, keys, tmp_path):
    """What a guest's ~/.ssh/config says for every host comes after the invite's lines: its key is added,
    its trust, addresses and users are not taken (ssh takes each option's first value)."""
    assert invite("--outputs", str(outputs), cwd=tmp_path).returncode == 0
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    stranger = " ".join(keys["stranger"].public_line.split()[:2])
    (home / ".ssh" / "config").write_text(
        "Host *\n    IdentityFile ~/keys/work\n    StrictHostKeyChecking no\n    UserKnownHostsFile ~/.ssh/known_hosts\n"
        f"    KnownHostsCommand /bin/echo pairing-host {stranger}\n    GlobalKnownHostsFile /etc/ssh/ssh_known_hosts\n"
        "    HostName 198.51.100.7\n    User mallory\n    Port 2222\n    ProxyCommand nc %h %p\n    HostKeyAlias other\n"
        "    UpdateHostKeys yes\n    ForwardAgent yes\n")
    sshd = " ".join(keys["sshd"].public_line.split()[:2])
    host = ssh_g(tmp_path / "pairing.conf", "pairing", home)
    assert host["identityfile"][0] == "~/keys/work"  # offered, as plain `ssh` would
    assert host["knownhostscommand"] == [f"/bin/echo pairing-host {sshd}"]
    assert (host["stricthostkeychecking"], host["userknownhostsfile"], host["globalknownhostsfile"]) == (
        ["true"], ["/dev/null"], ["/dev/null"])
    assert (host["hostname"], host["user"], host["port"], host["hostkeyalias"]) == (
        ["localhost"], ["dana"], ["1337"], ["pairing-host"])
    assert host["proxyjump"] == ["pairing-relay"] and "proxycommand" not in host
    assert (host["updatehostkeys"], host["forwardagent"]) == (["false"], ["no"])
    relay = ssh_g(tmp_path / "pairing.conf", "pairing-relay", home)
    assert (relay["hostname"], relay["user"], relay["port"], relay["stricthostkeychecking"]) == (
        ["203.0.113.10"], ["pair"], ["22"], ["true"])


def test_the_windows_invite_names_no_program_and_no_path_but_its_own(outputs, keys, tmp_path):
    """`--known-hosts`: what Windows 10/11's OpenSSH takes (no /bin/echo, no /dev/null there); the real ssh parses
    it with an empty PATH, and its pins are the file beside it, named relative to where ssh runs."""
    result = invite("--outputs", str(outputs), "--known-hosts", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "with any OpenSSH since 7.3, Windows 10/11's too, they run:" in result.stdout
    config = (tmp_path / "pairing.conf").read_text()
    body = [line for line in config.splitlines() if not line.startswith("#")]
    assert not [line for line in body if "/" in line and "Include ~/.ssh/config" not in line]
    assert "# It names pairing.known_hosts, relative to the folder you run ssh in: keep both files there." in config
    empty = tmp_path / "empty"
    empty.mkdir()
    for host in ("pairing", "pairing-relay"):
        seen = ssh_g(tmp_path / "pairing.conf", host, tmp_path / "home", path=str(empty))
        assert seen["userknownhostsfile"] == seen["globalknownhostsfile"] == ["pairing.known_hosts"]
        assert not {"knownhostscommand", "proxycommand", "localcommand"} & set(seen)
        assert seen["permitlocalcommand"] == ["no"] and seen["stricthostkeychecking"] == ["true"]
    relay_key = " ".join(keys["stranger"].public_line.split()[:2])
    sshd = " ".join(keys["sshd"].public_line.split()[:2])
    assert (tmp_path / "pairing.known_hosts").read_text() == f"pairing-relay {relay_key}\npairing-host {sshd}\n"


def test_the_putty_command(outputs, keys, tmp_path):
    result = invite("--outputs", str(outputs), "--putty", "C:/Users/bob/work.ppk", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    relay, sshd = fingerprint(keys["stranger"]), fingerprint(keys["sshd"])
    proxy = (f"plink -ssh -batch -i C:/Users/bob/work.ppk -l pair -P 22 -hostkey {relay} -nc localhost:1337 "
             "203.0.113.10")
    lines = result.stdout.splitlines()
    assert f"    plink -ssh -t -batch -i C:/Users/bob/work.ppk -l dana -P 1337 -hostkey {sshd} -proxycmd \"{proxy}\" " \
           "pairing-host" in lines
    assert f"        {proxy}" in lines and f"    Connection > SSH > Host keys: Manually configure host keys: add {sshd}" in lines
    assert list(tmp_path.iterdir()) == []  # the command is the whole invite: no file


@pytest.mark.parametrize("path", ["C:\\Users\\bob\\work.ppk", "my key.ppk", "~/work.ppk", "-oops.ppk", 'a"b.ppk',
                                  "%TEMP%/k.ppk", "$HOME/k.ppk", "k.ppk\x1b[2J"])
def test_a_putty_path_the_command_cannot_carry_is_refused_in_one_line(outputs, tmp_path, path):
    result = invite("--outputs", str(outputs), f"--putty={path}", cwd=tmp_path)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.startswith(f"pairing invite: --putty {path!r}: ") and result.stderr.count("\n") == 1
    assert result.stderr.endswith("(no spaces, no ~; on Windows write / for \\), e.g. run the command in the key's "
                                  "folder and give --putty KEY.ppk\n")


def test_the_putty_command_to_the_relays_ipv6_address(outputs, tmp_path):
    dual = tmp_path / "dual.json"
    dual.write_text(json.dumps({**json.loads(outputs.read_text()), "relayIpv6Address": "2001:db8:10::5"}))
    result = invite("--outputs", str(dual), "--putty", "work.ppk", "--ipv6", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert '-nc localhost:1337 2001:db8:10::5" pairing-host' in result.stdout  # plink takes the bare address
