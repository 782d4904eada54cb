"""The relay's live guest list and end (cloud-init/pairing-guests) on the harness relay, driven with the real
OpenSSH client as the tunnel key, as `pairing host` drives it (pairing/relay_guests.py). Every refusal is what
the relay says: sshd's `Permission denied (publickey)` for a key not listed, pairing-guests' one line for a verb
or a list it refuses (and then the list is left as it was)."""

from __future__ import annotations

import subprocess
import time

import pytest

from pairing.accounts import GUEST_USER, TUNNEL_USER
from pairing.names import roster

from .harness import Deployment, deploy, first_line

PORT = 1341
DENIED = "Permission denied (publickey)."


@pytest.fixture(scope="module")
def deployment(keys, tmp_path_factory) -> Deployment:
    deployment = deploy(tmp_path_factory.mktemp("relay-live"), keys, tunnelPort=str(PORT), ttlMinutes="60",
                        maxTtlMinutes="180")
    with deployment.relay:
        deployment.host_sshd.start()
        try:
            yield deployment
        finally:
            deployment.host_sshd.stop()


@pytest.fixture
def everyone(deployment):
    """Each test starts from, and leaves, the settings' guests on the list."""
    assert deployment.set_guests().returncode == 0
    yield
    assert deployment.set_guests().returncode == 0


@pytest.fixture(scope="module")
def tunnel_held(deployment):
    """The host's key holds -R localhost:PORT -> the host's sshd, with OpenSSH, its forced command asked for nothing."""
    with deployment.openssh_tunnel(PORT) as process:
        yield process


def jump(deployment, key: str):
    """A guest's jump: -W localhost:PORT through the relay; (first line from the far end, ssh's stderr)."""
    return first_line(deployment.ssh_argv(GUEST_USER, key, "-W", f"localhost:{PORT}"))


def listed(deployment) -> str:
    return deployment.relay.read("/var/lib/pairing/live/guests")


# --- the list: who the relay lets on ------------------------------------------


def test_a_guest_taken_off_the_list_is_refused_and_let_back(deployment, everyone, tunnel_held):
    banner, err = jump(deployment, "guest2")
    assert banner.startswith("SSH-2.0-OpenSSH"), err
    others = [g for g in roster(deployment.settings.guest_keys, deployment.settings.viewer_keys) if g.name != "guest2"]
    result = deployment.set_guests(others)
    assert (result.returncode, result.stdout.decode()) == (0, f"{len(others) + 1} guests\n")
    assert DENIED in deployment.ssh(GUEST_USER, "guest2", "-W", f"localhost:{PORT}").stderr
    banner, err = jump(deployment, "guest")  # the others are still let on
    assert banner.startswith("SSH-2.0-OpenSSH"), err
    assert deployment.set_guests().returncode == 0
    banner, err = jump(deployment, "guest2")
    assert banner.startswith("SSH-2.0-OpenSSH"), err


def test_an_empty_list_lets_nobody_on_but_the_tunnel_still_works(deployment, everyone, tunnel_held):
    result = deployment.relay_command("guests", b"")
    assert (result.returncode, result.stdout.decode()) == (0, "0 guests\n")
    # One refusal only: sshd's PerSourcePenalties block an address after 6 failed logins (5 s each, 30 s).
    assert DENIED in deployment.ssh(GUEST_USER, "viewer", "-W", f"localhost:{PORT}").stderr
    assert tunnel_held.poll() is None


def test_an_unknown_key_is_refused_whatever_the_list(deployment, everyone):
    result = deployment.ssh(GUEST_USER, "stranger", "-W", f"localhost:{PORT}")
    assert result.returncode == 255 and DENIED in result.stderr


def _line(deployment, name: str = "guest") -> bytes:
    return deployment.keys[name].public_line.encode()


@pytest.mark.parametrize("hostile", [
    # An option in front of the key: it would be sshd's own (a shell, any port).
    lambda d: b'command="/bin/sh" ' + _line(d),
    lambda d: b'permitopen="169.254.169.254:80" ' + _line(d),
    lambda d: b"restrict,pty " + _line(d),
    # A second line smuggled into the comment: each line is checked, and one bad line refuses the list.
    lambda d: _line(d) + b'\ncommand="/bin/sh",permitopen="*:*" ' + _line(d, "stranger"),
    lambda d: _line(d) + b'\rcommand="/bin/sh" ' + _line(d, "stranger"),
    lambda d: _line(d).split(b" ")[0] + b" " + _line(d).split(b" ")[1] + b' x,command="sh"',
    lambda d: _line(d).split(b" ")[0] + b"\t" + _line(d).split(b" ")[1],
    # A huge line, and a huge list.
    lambda d: _line(d).split(b" ")[0] + b" " + b"A" * 100_000,
    lambda d: (_line(d) + b"\n") * 3000,
    # Not a key of the type it names, no base64, a type sshd would take that we do not.
    lambda d: b"ssh-rsa " + _line(d).split(b" ")[1],
    lambda d: b"ssh-ed25519 not*base64*at*all*but*long*enough",
    lambda d: b"ssh-dss AAAAB3NzaC1kc3MAAACBAP",
    lambda d: b"\x00" + _line(d),
])
def test_a_hostile_list_is_refused_and_changes_nothing(deployment, everyone, hostile):
    before = listed(deployment)
    result = deployment.relay_command("guests", hostile(deployment) + b"\n")
    assert result.returncode == 1
    assert result.stderr.decode().startswith("pairing relay: refused: "), result.stderr
    assert listed(deployment) == before
    # The stranger's key, and its smuggled options, never reach sshd (a login is tried once, below:
    # sshd's PerSourcePenalties would block this address after 6 failed logins).
    assert _line(deployment, "stranger").split(b" ")[1].decode() not in keys_printed(deployment)


def keys_printed(deployment) -> str:
    """What sshd reads for `pair`: the AuthorizedKeysCommand's output."""
    return deployment.relay.run(["runuser", "-u", "pairing-keys", "--", "/usr/local/sbin/pairing-guests", "keys"]).stdout


def test_what_sshd_reads_is_checked_again(deployment, everyone):
    """A list file written past pairing-guests' own checks (by root here) still yields bare keys only, each with the
    relay's restrictions: the AuthorizedKeysCommand prints no line it would not accept."""
    good = _line(deployment).decode()
    deployment.relay.run(["sh", "-c", "cat > /var/lib/pairing/live/guests"],
                         input=f'command="/bin/sh" {good}\n{good}\nnonsense\n')
    assert keys_printed(deployment) == f'restrict,port-forwarding,permitopen="localhost:{PORT}",permitlisten="none.invalid:1",' \
                             f'command="/usr/sbin/nologin" {good}\n'


# --- the tunnel key: its port, and pairing-guests' two verbs, nothing else -----------


@pytest.mark.parametrize("command", ["id; echo RAN", "sh", "guests; id", "guests extra", "end now", "end 12 34",
                                     "end -5", "", "/bin/sh -c id", "scp -t /tmp", "internal-sftp"])
def test_the_tunnel_key_runs_nothing_else(deployment, everyone, command):
    before = listed(deployment)
    result = deployment.ssh(TUNNEL_USER, "host", command=command or None)
    assert "RAN" not in result.stdout and "uid=" not in result.stdout
    assert result.returncode != 0
    assert "pairing relay: refused: " in result.stderr or "PTY allocation request failed" in result.stderr, result.stderr
    assert listed(deployment) == before


def test_the_tunnel_key_gets_no_terminal_subsystem_or_second_session(deployment):
    tty = deployment.ssh(TUNNEL_USER, "host", "-tt", command="guests")
    assert "PTY allocation request failed" in tty.stderr
    sftp = subprocess.run(["sftp", *deployment.ssh_options("host"), "-b", "-", f"{TUNNEL_USER}@{deployment.relay.address}"],
                          input="ls\n", capture_output=True, text=True, timeout=30)
    assert sftp.returncode != 0  # the subsystem request runs the forced command, which refuses it
    assert "uid=" not in sftp.stdout


def test_a_guest_key_cannot_set_the_list(deployment, everyone):
    result = deployment.relay_command("guests", _line(deployment, "stranger"), key="guest")
    assert result.returncode == 255 and DENIED in result.stderr.decode()


# --- the end ---------------------------------------------------------------------


def test_the_end_moves_up_to_the_latest_and_no_further(deployment):
    deadline_file = "/var/lib/pairing/live/deadline"
    ends, latest = map(int, deployment.relay_command("end").stdout.split())
    assert abs(ends - (time.time() + 60 * 60)) < 300 and abs(latest - (time.time() + 180 * 60)) < 300
    assert int(deployment.relay.read(deadline_file)) == ends
    wanted = ends + 3600
    moved = deployment.relay_command(f"end {wanted}")
    assert moved.returncode == 0 and moved.stdout.decode().split() == [str(wanted), str(latest)]
    assert int(deployment.relay.read(deadline_file)) == wanted
    capped = deployment.relay_command(f"end {latest + 86400}")
    assert capped.stdout.decode().split() == [str(latest), str(latest)]
    assert int(deployment.relay.read(deadline_file)) == latest
    past = deployment.relay_command(f"end {int(time.time()) - 10}")
    assert past.returncode == 1 and "that end has passed" in past.stderr.decode()
    assert int(deployment.relay.read(deadline_file)) == latest
    # pairing-ttl reads the moved end, and powers off at neither while both lie ahead.
    check = deployment.relay.run(["/usr/local/sbin/pairing-ttl", "check"], check=False)
    assert check.returncode == 0 and "powering off" not in check.stdout
    deployment.relay_command(f"end {ends}")
