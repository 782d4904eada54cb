"""The oldest guests pairing serves: OpenSSH 8.4p1 (Debian 11), from before KnownHostsCommand.

The relay's sshd keeps one algorithm ssh-audit warns about, curve25519-sha256@libssh.org,
for these guests (docs/SECURITY.md): this proves they still connect to the Debian 13 relay
and the host's sshd with `pairing invite --known-hosts`, and get a clear refusal from the
default invite, which they cannot read.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from .harness import PROJECT, Guest, OldGuest, wait_until


@pytest.fixture(scope="module")
def old_guest(pairing, tmp_path_factory):
    # All of this run's temp folders (the keys are in one of their own), seen the same inside.
    with OldGuest(tmp_path_factory.getbasetemp()) as guest:
        yield guest


def invite(pairing, folder, *extra: str):
    folder.mkdir(exist_ok=True)
    result = subprocess.run([sys.executable, "-m", "pairing", "invite", "--outputs", str(pairing.outputs),
                             "--out", str(folder / "pairing.conf"), *extra],
                            cwd=PROJECT, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    return folder / "pairing.conf"


def test_it_is_openssh_8_4(old_guest):
    assert old_guest.version().startswith("OpenSSH_8.4p1 Debian-5+deb11")


def test_an_old_guest_joins_with_the_known_hosts_invite_and_types(pairing, hook, guests, old_guest):
    folder = pairing.folder / "old-guest"
    config = invite(pairing, folder, "--known-hosts")
    guest = Guest(folder / "alice", "guest", pairing.deployment.keys["guest"], config, wrap=old_guest.wrap())
    guests.append(guest)
    guest.connect(cwd=folder)  # where the guest keeps the two files
    wait_until(lambda: "#" in guest.screen or "GUEST-SSH-EXITED" in guest.screen, 30, "the old guest to land in tmux",
               show=lambda: guest.screen + guest.log.read_text())
    assert "GUEST-SSH-EXITED" not in guest.screen, guest.log.read_text()
    guest.type("echo old-openssh-$((21*2))")
    wait_until(lambda: "old-openssh-42" in pairing.host_screen(), 10, "the old guest's line on the host")


def test_the_default_invite_is_refused_by_name(pairing, old_guest):
    """OpenSSH 8.4 cannot read KnownHostsCommand: it says so, and the invite's help says to use --known-hosts."""
    folder = pairing.folder / "old-guest-inline"
    config = invite(pairing, folder)
    result = subprocess.run([*old_guest.wrap(), "ssh", "-G", "-F", str(config), "pairing"], cwd=folder,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 255
    assert "Bad configuration option: knownhostscommand" in result.stderr, result.stderr
