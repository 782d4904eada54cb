"""The stack outputs are input: whoever can edit a shared state backend or hand over an
`--outputs` file must get neither a shell on the host nor code run on a guest's machine.

Each hostile output is given to the real `pairing host` and `pairing invite` commands: the
answer is one line naming the output, exit 2, and nothing written. The renderers refuse
control characters themselves, whatever their caller checked.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pairing.forced_command import guest_line
from pairing.guest_documents import GuestRoute, command, ssh_config
from pairing.outputs import OutputsError, StackOutputs, render_outputs
from pairing.settings import settings_from
from pairing.sshkeys import PublicKey, parse_public_key
from pairing.text import UnsafeText

from .harness import PROJECT

pytestmark = pytest.mark.pure  # needs neither root nor the relay tools (tests/conftest.py)

LAUNCHED = "2026-11-26T15:00:00Z"


@pytest.fixture(scope="module")
def good(keys) -> dict:
    """Outputs as the program renders them for a relay at 203.0.113.10."""
    settings = settings_from({
        "guestKeys": [keys["guest"].public_line], "viewerKeys": [keys["viewer"].public_line],
        "hostPublicKey": keys["host"].public_line, "hostSshdKey": keys["sshd"].public_line, "hostUser": "alice",
    })
    return render_outputs(settings, relay_address="203.0.113.10", relay_host_key=parse_public_key(keys["stranger"].public_line),
                          instance_id="i-0123456789abcdef0", launch_time=LAUNCHED)


def pairing_cli(*argv: str, cwd: Path, home: Path) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "PYTHONPATH": str(PROJECT)}
    return subprocess.run([sys.executable, "-m", "pairing", *argv], cwd=cwd, env=env, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=60)


def hostile(good: dict, keys, name: str) -> object:
    """One output changed the way an attacker (or a careless hand) would."""
    guest, viewer = good["guestKeys"][0], good["viewerKeys"][0]
    return {
        "tmuxSession": "pair\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHBhaXJpbmcgZXhhbXBsZSBzc2hkOyByZXBsYWNlLS0t bare",
        "hostUser": "alice\nMatch exec \"touch /tmp/pwned\"",
        "relayAddress": "203.0.113.10\n    ProxyCommand sh -c 'touch /tmp/pwned'",
        "relayPort": 65558,
        "tunnelPort": 22,
        "relayKnownHosts": f"evil.example.net {parse_public_key(keys['stranger'].public_line).bare}\n",
        "viewerKeys": [viewer, guest],
        "guestKeys": [guest + "\r\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHBhaXJpbmcgZXhhbXBsZSBzc2hkOyByZXBsYWNlLS0t x"],
        "expiresAt": "2026-11-26T19:00:00",
        "instanceId": "i-1; rm -rf ~",
    }[name]


# name -> the one line the user reads (after "pairing host: ")
REFUSALS = {
    "tmuxSession": "output tmuxSession: 'pair ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHBh...' is not usable as a "
                   "session name; use letters, digits, - and _ only",
    "hostUser": "output hostUser: 'alice Match exec \"touch /tmp/pwned\"' is not a login name; use the host "
                "account's name, e.g. alice",
    "relayAddress": "output relayAddress: \"203.0.113.10 ProxyCommand sh -c 'touch /tmp/p...\" is neither an IP "
                    "address nor a host name",
    "relayPort": "output relayPort: 65558 is out of range; a TCP port is 1 to 65535",
    "tunnelPort": "output tunnelPort: 22 is out of range; use an unprivileged port from 1024 to 65535, e.g. 1337",
    "relayKnownHosts": "output relayKnownHosts: names 'evil.example.net', not the relay (203.0.113.10)",
    "viewerKeys": "output viewerKeys: ssh-ed25519 ",
    "guestKeys": "output guestKeys: ",
    "expiresAt": "output expiresAt: '2026-11-26T19:00:00' has no time zone; write it in UTC, e.g. 2026-11-26T19:00:00Z",
    "instanceId": "output instanceId: 'i-1; rm -rf ~' is not an instance id such as i-0123456789abcdef0",
}
REREAD = "read them again (pulumi stack output --json --show-secrets), or correct the --outputs file"


@pytest.mark.parametrize("name", REFUSALS)
@pytest.mark.parametrize("command_name", ["host", "invite"])
def test_hostile_outputs_are_refused_before_anything_is_written(good, keys, tmp_path, name, command_name):
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps({**good, name: hostile(good, keys, name)}))
    ssh = tmp_path / "home" / ".ssh"
    ssh.mkdir(parents=True)
    (ssh / "authorized_keys").write_bytes(b"ssh-ed25519 AAAA mine\n")
    before = sorted(p.name for p in tmp_path.rglob("*"))
    extra = ["--authorized-keys", str(ssh / "authorized_keys")] if command_name == "host" else []
    result = pairing_cli(command_name, "--outputs", str(outputs), *extra, cwd=tmp_path, home=tmp_path / "home")
    assert result.returncode == 2, result
    assert result.stdout == ""
    line = result.stderr
    assert line.count("\n") == 1 and "Traceback" not in line, line
    assert line.startswith(f"pairing {command_name}: {outputs}: {REFUSALS[name]}"), line
    assert line.rstrip("\n").endswith(REREAD), line
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # no invite, no temp file, no state
    assert (ssh / "authorized_keys").read_bytes() == b"ssh-ed25519 AAAA mine\n"


def test_one_key_two_roles_is_refused(good, keys):
    with pytest.raises(OutputsError, match=r"^x: output viewerKeys: ssh-ed25519 \S+ \(guest@test\) is listed also in "
                                           r"output guestKeys; give each key one role only; read them again"):
        StackOutputs.from_json({**good, "viewerKeys": good["guestKeys"]}, source="x")


@pytest.mark.parametrize("data, kind", [([], "list"), ("x", "string"), (3, "number"), (None, "null")])
def test_outputs_that_are_not_an_object(tmp_path, data, kind):
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps(data))
    result = pairing_cli("status", "--outputs", str(outputs), cwd=tmp_path, home=tmp_path)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (f"pairing status: {outputs} holds a JSON {kind}, not the object of `pulumi stack output "
                             f"--json --show-secrets`; {REREAD}\n")


def test_status_reads_a_valid_expiry(good, tmp_path):
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps(good))
    result = pairing_cli("status", "--outputs", str(outputs), cwd=tmp_path, home=tmp_path)
    assert result.returncode == 4, result.stderr  # expired (status.EXPIRED)
    assert "ends    2026-11-26T19:00:00Z (expired: the relay has ended itself; " in result.stdout


def test_the_invite_renders_its_own_config_and_ssh_runs_nothing_from_the_outputs(good, tmp_path):
    """guestSshConfig and guestCommand are derived outputs: an edited one is never copied to a guest."""
    canary = tmp_path / "pwned"
    evil = {**good,
            "guestSshConfig": f'Match exec "touch {canary}"\nHost pairing\n    ProxyCommand touch {canary}\n',
            "guestCommand": f"touch {canary}"}
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps(evil))
    result = pairing_cli("invite", "--outputs", str(outputs), cwd=tmp_path, home=tmp_path)
    assert result.returncode == 0, result.stderr
    config = (tmp_path / "pairing.conf").read_text()
    body = lambda text: [line for line in text.splitlines() if not line.startswith("# ")]  # noqa: E731 (the header differs)
    assert body(config) == body(good["guestSshConfig"]) and "touch" not in result.stdout
    assert "Match" not in config and "ProxyCommand" not in config
    # The guest's OpenSSH reads the whole file (and would run any exec) before connecting anywhere.
    parsed = subprocess.run(["ssh", "-G", "-F", str(tmp_path / "pairing.conf"), "pairing"], capture_output=True,
                            text=True, timeout=30, env={**os.environ, "HOME": str(tmp_path)})
    assert parsed.returncode == 0, parsed.stderr
    assert "proxyjump pairing-relay" in parsed.stdout and "hostname localhost" in parsed.stdout
    assert not canary.exists()


def test_the_invite_does_not_follow_a_planted_temp_file(good, tmp_path):
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps(good))
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    (tmp_path / ".pairing.conf.tmp").symlink_to(victim)  # the old fixed temp name
    result = pairing_cli("invite", "--outputs", str(outputs), cwd=tmp_path, home=tmp_path)
    assert result.returncode == 0, result.stderr
    assert victim.read_text() == "precious\n"
    assert (tmp_path / "pairing.conf").read_text().endswith(good["guestSshConfig"].split("\n", 1)[1])  # after its header
    assert sorted(p.name for p in tmp_path.iterdir()) == [".pairing.conf.tmp", "outputs.json", "pairing.conf", "victim"]


# --- the renderers refuse on their own --------------------------------------------------

KEY = PublicKey("ssh-ed25519", "AAAAC3NzaC1lZDI1NTE5AAAAIHBhaXJpbmcgZXhhbXBsZSBzc2hkOyByZXBsYWNlLS0t")


@pytest.mark.parametrize("bad", ["\n", "\r", "\x00", "\u2028", "\u202e", "\u200b", "\ufeff"])
def test_renderers_refuse_what_validation_would_have(bad):
    route = GuestRoute("203.0.113.10", 22, KEY, 1337, "alice", KEY)
    for broken in (
        lambda: guest_line(PublicKey(KEY.kind, KEY.blob, f"a{bad}b"), "tmux attach -t =pair"),
        lambda: guest_line(KEY, f"tmux attach -t =pair{bad}"),
        lambda: ssh_config(GuestRoute(f"203.0.113.10{bad}", 22, KEY, 1337, "alice", KEY)),
        lambda: ssh_config(GuestRoute("203.0.113.10", 22, KEY, 1337, f"alice{bad}", KEY)),
        lambda: command(GuestRoute("203.0.113.10", 22, KEY, 1337, f"alice{bad}", KEY)),
    ):
        with pytest.raises(UnsafeText, match="control or format character"):
            broken()
    assert ssh_config(route) and command(route)  # the same renderers, given clean values


def test_a_backslash_is_kept_as_sshd_reads_it():
    """Inside an authorized_keys option only \\" is an escape: a backslash stays one backslash."""
    line = guest_line(KEY, 'printf "%s\\n" x')
    assert line.startswith('restrict,pty,command="printf \\"%s\\n\\" x" ')
    with pytest.raises(UnsafeText, match="ends in a backslash"):
        guest_line(KEY, "tmux attach -t pair\\")


@pytest.mark.parametrize("flag, value, message", [
    ("--tmux-socket", "/tmp/pair\n.sock", "argument --tmux-socket: '/tmp/pair .sock' is not a usable path (it holds "
                                         "control or format characters, or a backslash); leave --tmux-socket out "
                                         "(pairing runs a tmux server of its own), or give a socket in a folder "
                                         "only you can write"),
    ("--tmux-socket", "/tmp/a\\b.sock", "argument --tmux-socket: '/tmp/a\\\\b.sock' is not a usable path"),
    ("--target", "localhost\n:22", "argument --target: 'localhost :22' is not HOST:PORT, e.g. localhost:22"),
    ("--target", "-oProxyCommand=x:22", "argument --target: '-oProxyCommand=x:22' is not HOST:PORT, e.g. localhost:22"),
])
def test_flags_that_reach_documents_are_checked(tmp_path, flag, value, message):
    result = pairing_cli("host", "--outputs", str(tmp_path / "none.json"), f"{flag}={value}", cwd=tmp_path, home=tmp_path)
    assert result.returncode == 2 and result.stdout == "", result
    assert result.stderr.splitlines()[-1].startswith(f"pairing host: error: {message}"), result.stderr


@pytest.mark.parametrize("target, from_loopback", [
    ("localhost", True), ("LOCALHOST", True), ("127.1", True), ("127.0.0.1", True), ("::1", True),
    ("::ffff:127.0.0.1", True), ("192.0.2.10", False), ("2001:db8::1", False),
])
def test_guest_keys_work_only_through_the_tunnel_for_every_spelling_of_loopback(good, tmp_path, target, from_loopback):
    """A loopback target means every guest arrives from loopback: their keys are then refused from anywhere else."""
    from pairing.hook import HostOptions, guest_lines

    options = HostOptions(StackOutputs.from_json(good), None, (target, 22), tmp_path / "authorized_keys")
    lines = guest_lines(options)
    assert len(lines) == 2
    assert all(line.startswith('restrict,pty,from="127.0.0.1,::1",command=') == from_loopback for line in lines), lines


def test_relay_ipv6_address_is_optional_and_checked(good):
    """An older stack (or --outputs file) has no relayIpv6Address: still valid. A present one is an IPv6 address."""
    assert StackOutputs.from_json({k: v for k, v in good.items() if k != "relayIpv6Address"}).relay_ipv6_address is None
    assert StackOutputs.from_json({**good, "relayIpv6Address": None}).relay_ipv6_address is None
    assert StackOutputs.from_json({**good, "relayIpv6Address": "2001:DB8::1f"}).relay_ipv6_address == "2001:db8::1f"
    for bad, why in [("203.0.113.10", "is not an IPv6 address"), ("fe80::1%eth0", "is not the global address of one machine"),
                     ("2001:db8::1\n    ProxyCommand sh", "is not an IPv6 address"), (["2001:db8::1"], "is not an IPv6 address"),
                     ("::", "is not the global address of one machine"), ("ff02::1", "is not the global address of one machine")]:
        with pytest.raises(OutputsError, match=r"^x: output relayIpv6Address: .* " + why + "; read them again"):
            StackOutputs.from_json({**good, "relayIpv6Address": bad}, source="x")


def test_an_ipv6_invite_for_a_guest_on_an_ipv6_only_network(keys, tmp_path):
    settings = settings_from({"guestKeys": [keys["guest"].public_line], "hostPublicKey": keys["host"].public_line,
                              "hostSshdKey": keys["sshd"].public_line, "hostUser": "alice"})
    relay_key = parse_public_key(keys["stranger"].public_line)
    dual = render_outputs(settings, relay_address="203.0.113.10", relay_host_key=relay_key, instance_id="i-0abc",
                          launch_time=LAUNCHED, relay_ipv6_address="2001:db8:10::5")
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps(dual))
    result = pairing_cli("invite", "--ipv6", "--outputs", str(outputs), cwd=tmp_path, home=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"    relay 2001:db8:10::5: {relay_key.fingerprint}" in result.stdout
    assert "pair@2001:db8:10::5" in result.stdout  # the one-line command too
    parsed = subprocess.run(["ssh", "-G", "-F", str(tmp_path / "pairing.conf"), "pairing-relay"], capture_output=True,
                            text=True, timeout=30, env={**os.environ, "HOME": str(tmp_path)})
    assert "hostname 2001:db8:10::5" in parsed.stdout.splitlines(), parsed.stdout
    assert "hostkeyalias pairing-relay" in parsed.stdout.splitlines()  # pinned as before

    outputs.write_text(json.dumps({**dual, "relayIpv6Address": None}))
    result = pairing_cli("invite", "--ipv6", "--outputs", str(outputs), cwd=tmp_path, home=tmp_path)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == ("pairing invite: this relay has no IPv6 address (the outputs lack relayIpv6Address: a "
                             "stack from before pairing gave relays one); run `pairing up` again, or leave out --ipv6\n")


def test_two_keys_claiming_one_name_stop_pairing_host_before_anything(good, keys, tmp_path):
    """Issue 19, finding 7: outputs whose guestKeys/viewerKeys comments both make `alice`: one line, nothing started."""
    mallory = f"{parse_public_key(keys['guest'].public_line).bare} alice@laptop"
    alice = f"{parse_public_key(keys['viewer'].public_line).bare} alice@desk"
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps({**good, "guestKeys": [mallory], "viewerKeys": [alice]}))
    ssh = tmp_path / "home" / ".ssh"
    ssh.mkdir(parents=True)
    (ssh / "authorized_keys").write_bytes(b"ssh-ed25519 AAAA mine\n")
    before = sorted(p.name for p in tmp_path.rglob("*"))
    result = pairing_cli("host", "--outputs", str(outputs), "--authorized-keys", str(ssh / "authorized_keys"),
                         cwd=tmp_path, home=tmp_path / "home")
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        f"pairing host: {outputs}: output guestKeys, viewerKeys: the keys {parse_public_key(mallory).fingerprint} and "
        f"{parse_public_key(alice).fingerprint} both claim the name alice by their comment; give each key its own "
        "comment (pairing up --guest NAME=SOURCE does)\n")
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
    assert (ssh / "authorized_keys").read_bytes() == b"ssh-ed25519 AAAA mine\n"
