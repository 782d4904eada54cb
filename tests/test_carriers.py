"""The tunnel end to end, for each carrier: `pairing host --tunnel paramiko` and
`--tunnel openssh` (a supervised `ssh -N -R`), each in a session of its own with
the same real relay, sshd and tmux. A guest types and sees the host, `pairing
status` shows the tunnel, the tunnel comes back after a SIGKILLed hook, a
restarted or killed relay sshd and a network cut, waits out a port still held,
says and survives the host's sshd going down, and a second hook for the same
relay refuses. What only one carrier has: test_openssh_tunnel.py. Fixtures:
conftest.py."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time

import pytest

from . import harness
from pairing.forced_command import guest_line
from pairing.sshkeys import parse_public_key

from .harness import ORIGINAL_KEYS, ORIGINAL_MODE, PROJECT, Hook, client_env, join, wait_until


@pytest.fixture(scope="module", params=["paramiko", "openssh"])
def pairing(keys, tmp_path_factory, request):
    """One session per carrier: the hooks of its tests carry the tunnel with it."""
    yield from harness.pairing_session(keys, tmp_path_factory, tunnel=request.param)


def test_guest_types_and_sees_the_host(pairing, hook, guests):
    guest = join(pairing, guests, "guest")
    guest.type("echo typed-by-guest-$((6*7))")
    wait_until(lambda: "typed-by-guest-42" in pairing.host_screen(), 10, "the guest's command to run in the host's pane")
    pairing.host_types("echo typed-by-host-$((5*5))")
    wait_until(lambda: "typed-by-host-25" in guest.screen, 10, "the host's output on the guest's screen")
    wait_until(lambda: "1 typing, 0 watching" in hook.text, 10, "the status line to count the guest")
    assert "guest joined the session (typing)" in hook.text  # its key's comment guest@test made a name
    guest.disconnect()
    wait_until(lambda: "guest left the session" in hook.text, 10, "the hook to say the guest left")


def test_status_shows_the_running_tunnel(pairing, guests):
    def status(held: bool = True) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "pairing", "status", "--outputs", str(pairing.outputs),
             "--authorized-keys", str(pairing.deployment.authorized_keys), "--tmux-socket", str(pairing.host_tmux.socket)],
            cwd=PROJECT, env=pairing.hook_env(), capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
        assert result.returncode == (0 if held else 3), result.stderr  # status.HELD, NOT_HELD
        return result.stdout

    hook = pairing.start_hook()
    hook.wait_for("ready: guests can join now")
    join(pairing, guests, "guest")
    shown = status()
    assert "tunnel  up since " in shown and f"(pairing host --tunnel {pairing.tunnel}, pid {hook.process.pid})" in shown
    assert "guests  1 typing, 0 watching" in shown
    assert hook.stop() == 0, hook.text
    assert f"tunnel  not held: run pairing host --outputs {pairing.outputs} --tmux-socket " in status(held=False)
    assert not list((pairing.folder / "home" / ".local" / "state" / "pairing").glob("*"))  # nothing left behind


def test_sigkill_then_restart_restores_authorized_keys(pairing):
    first = pairing.start_hook()
    first.wait_for("ready: guests can join now")
    content, _ = pairing.authorized_keys()
    assert content.startswith(ORIGINAL_KEYS) and b'command="exec ' in content and b' --tmux-socket ' in content
    assert first.stop(signal.SIGKILL) == -signal.SIGKILL
    # The crash left the block; the next start replaces it (and waits out the
    # relay's hold on the dead connection's port), then a clean exit removes it.
    second = pairing.start_hook()
    second.wait_for("ready: guests can join now", timeout=60)
    content, _ = pairing.authorized_keys()
    assert content.count(b"# >>> pairing") == 1
    assert second.stop() == 0, second.text
    assert pairing.authorized_keys() == (ORIGINAL_KEYS, ORIGINAL_MODE)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["restarted", "killed"])
def test_tunnel_returns_after_relay_sshd_restart(pairing, hook, guests, sig):
    after = len(hook.text)
    pairing.deployment.relay.restart_sshd(sig)
    pairing.deployment.relay.kill_connections_of("tunnel")  # a restarted machine drops them too
    began = time.monotonic()
    hook.wait_for("tunnel back up", timeout=30, after=after)
    print(f"tunnel back {time.monotonic() - began:.1f} s after the relay's sshd restarted")
    guest = join(pairing, guests, "guest")
    guest.type("echo after-restart-$((9*9))")
    wait_until(lambda: "after-restart-81" in pairing.host_screen(), 10, "the guest's line after the restart")


def test_tunnel_returns_after_network_cut(pairing, hook, guests):
    after = len(hook.text)
    relay = pairing.deployment.relay
    cut = time.monotonic()
    relay.cut_network()
    try:
        hook.wait_for("the relay stopped answering", timeout=20, after=after)
        detected = time.monotonic() - cut
    finally:
        relay.restore_network()
    restored = time.monotonic()
    hook.wait_for("tunnel back up", timeout=40, after=after)
    print(f"dead relay detected after {detected:.1f} s; tunnel back {time.monotonic() - restored:.1f} s after the network returned")
    assert detected <= 15
    guest = join(pairing, guests, "guest")
    guest.type("echo after-cut-$((10*10))")
    wait_until(lambda: "after-cut-100" in pairing.host_screen(), 10, "the guest's line after the cut")


def test_waits_while_the_relay_still_holds_the_port(pairing):
    """A dead earlier connection keeps the port on the relay for a while; the hook waits it out."""
    deployment = pairing.deployment
    holder = subprocess.Popen(
        deployment.ssh_argv("tunnel", "host", "-N", "-o", "ExitOnForwardFailure=yes",
                            "-R", f"localhost:{deployment.settings.tunnel_port}:127.0.0.1:9"),
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        wait_until(lambda: f":{deployment.settings.tunnel_port} " in deployment.relay.run(["ss", "-Hltn"]).stdout,
                   20, "the other connection to hold the port")
        hook = pairing.start_hook()
        hook.wait_for("is still held by the previous connection")
    finally:
        holder.kill()
        holder.wait()
    hook.wait_for("ready: guests can join now", timeout=30)
    assert hook.stop() == 0, hook.text
    assert pairing.authorized_keys() == (ORIGINAL_KEYS, ORIGINAL_MODE)


def test_host_sshd_down_is_said_and_survived(pairing, hook, guests):
    host_sshd = pairing.deployment.host_sshd
    after = len(hook.text)
    host_sshd.stop()
    try:
        refused = pairing.guest("guest")
        guests.append(refused)
        refused.connect()
        wait_until(lambda: "GUEST-SSH-EXITED" in refused.screen, 30, "the guest's ssh to give up")
        hook.wait_for(f"your sshd at 127.0.0.1:{host_sshd.port} does not answer (Connection refused); start it",
                      timeout=10, after=after)
        assert "GUEST-SSH-EXITED 255" in refused.screen
    finally:
        host_sshd.start()
    guest = join(pairing, guests, "guest")
    hook.wait_for(f"your sshd at 127.0.0.1:{host_sshd.port} answers again", timeout=10, after=after)
    guest.type("echo sshd-back-$((13*13))")
    wait_until(lambda: "sshd-back-169" in pairing.host_screen(), 10, "the guest's line once sshd is back")
    assert hook.text[after:].count("does not answer") == 1  # said once per outage, not per attempt
    assert "reconnecting" not in hook.text[after:]


def test_second_hook_for_the_same_relay_refuses(pairing, hook, tmp_path):
    """Another authorized_keys (another user, --authorized-keys), so no local lock stops it:
    the relay's port, held by a live connection, does."""
    other = tmp_path / "other-home" / ".ssh" / "authorized_keys"
    other.parent.mkdir(parents=True, mode=0o700)
    other.write_bytes(ORIGINAL_KEYS)
    argv = pairing.hook_argv()
    argv[argv.index("--authorized-keys") + 1] = str(other)
    after = len(hook.text)
    second = Hook(pairing.folder / "hooks", argv, pairing.hook_env())
    try:
        second.wait_for("is still held by the previous connection", timeout=30)
        began = time.monotonic()
        assert second.process.wait(60) == 1, second.text
    finally:
        second.stop()
    print(f"the second hook gave up {time.monotonic() - began:.1f} s after first finding the port taken")
    assert "another `pairing host` for this relay is running (on this machine or another); stop it first" in second.text
    assert other.read_bytes() == ORIGINAL_KEYS
    assert "reconnecting" not in hook.text[after:]  # the first one held on throughout


def test_bulk_crosses_byte_for_byte_both_ways(pairing, tmp_path):
    """Megabytes each way through the tunnel, in order. From the guest, paramiko's thread writes each
    packet on at once or, when the host's sshd lags or the window is due, leaves it to the buffer:
    the switch between the two must not reorder a byte. (The host's key, which the relay admits for
    the self-test, stands in for a guest whose forced command sums what it gets, or sends a file.)"""
    payload = tmp_path / "payload"
    payload.write_bytes(os.urandom(8 << 20))
    command = f'if [ "$SSH_ORIGINAL_COMMAND" = send ]; then cat {payload}; else sha256sum; fi'
    line = guest_line(parse_public_key(pairing.deployment.keys["host"].public_line), command)
    keys_file = pairing.deployment.authorized_keys
    keys_file.write_bytes(ORIGINAL_KEYS + b"\n" + line.encode() + b"\n")
    hook = pairing.start_hook()
    try:
        hook.wait_for("ready: guests can join now")
        guest = pairing.guest("bulk", key="host")
        with payload.open("rb") as sent:
            summed = subprocess.run([*guest.command("-T"), "sum"], stdin=sent, capture_output=True, timeout=120,
                                    env=client_env())
        assert summed.stdout.split()[:1] == [hashlib.sha256(payload.read_bytes()).hexdigest().encode()], \
            summed.stderr + guest.log.read_bytes()
        received = subprocess.run([*guest.command("-T"), "send"], stdin=subprocess.DEVNULL, capture_output=True,
                                  timeout=120, env=client_env())
        assert received.stdout == payload.read_bytes(), guest.log.read_text()
    finally:
        assert hook.stop() == 0, hook.text
        keys_file.write_bytes(ORIGINAL_KEYS)
        keys_file.chmod(ORIGINAL_MODE)
    assert "Traceback" not in hook.text, hook.text
