"""`pairing host --tunnel openssh`: the same hook with OpenSSH's `ssh -N -R`
carrying the tunnel, through the same real relay, sshd and tmux.

The tunnel's end-to-end tests run for both carriers in test_carriers.py; here
is what only this carrier has (an ssh process to supervise and to take down
with the hook), and the tunnel's fatal errors, for both carriers in-process.
"""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import subprocess
import threading
from pathlib import Path
from types import SimpleNamespace

import paramiko
import pytest

from pairing.accounts import GUEST_USER, TUNNEL_USER
from pairing.hook import relay_endpoint
from pairing.tunnel import CARRIERS, ssh_argv
from pairing.sshkeys import parse_public_key
from pairing.tunnel import HostKeyMismatch, State, TunnelFatal, TunnelSpec

from . import harness
from .harness import children, wait_until


@pytest.fixture(scope="module")
def pairing(keys, tmp_path_factory):
    yield from harness.pairing_session(keys, tmp_path_factory, tunnel="openssh")


def command_line(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


def tunnel_ssh(hook) -> int:
    """The PID of the hook's `ssh -R` (its one ssh child)."""
    found = [pid for pid in children(hook.process.pid) if command_line(pid)[:1] == ["ssh"]]
    assert len(found) == 1, [command_line(pid) for pid in children(hook.process.pid)]
    return found[0]


def test_the_tunnel_is_an_ssh_that_ends_with_the_hook(pairing):
    hook = pairing.start_hook()
    hook.wait_for("ready: guests can join now")
    ssh = tunnel_ssh(hook)
    port = pairing.deployment.settings.tunnel_port
    # To the hook's own listener, which joins a channel to the host's sshd once it has spoken (tunnel/waiting.py).
    forward = next(word for word in command_line(ssh) if word.startswith(f"localhost:{port}:127.0.0.1:"))
    listener = int(forward.rpartition(":")[2])
    assert listener != pairing.deployment.host_sshd.port
    listening = subprocess.run(["ss", "-Hltnp", f"sport = :{listener}"], capture_output=True, text=True).stdout
    assert f"pid={hook.process.pid}," in listening, listening
    assert hook.stop() == 0, hook.text
    assert not alive(ssh)
    assert pairing.authorized_keys() == (harness.ORIGINAL_KEYS, harness.ORIGINAL_MODE)


def test_a_killed_hook_takes_its_ssh_along(pairing):
    """SIGKILL leaves no orphan holding the relay's port: the next hook gets it at once."""
    hook = pairing.start_hook()
    hook.wait_for("ready: guests can join now")
    ssh = tunnel_ssh(hook)
    hook.stop(signal.SIGKILL)
    wait_until(lambda: not alive(ssh), 10, "the hook's ssh to end with it")
    again = pairing.start_hook()
    again.wait_for("ready: guests can join now", timeout=30)
    assert "still held" not in again.text  # ssh closed its connection: the relay let go of the port at once
    assert again.stop() == 0, again.text
    assert pairing.authorized_keys() == (harness.ORIGINAL_KEYS, harness.ORIGINAL_MODE)


def test_ssh_is_told_nothing_but_the_forward(pairing, tmp_path):
    spec = spec_for(pairing, pairing.deployment.relay_public_key)
    argv = ssh_argv(spec, Path("/k/id"), Path("/k/known_hosts"))
    # No config file of the user's, and ssh takes the first value of an option: ours.
    assert argv[:5] == ["ssh", "-N", "-v", "-F", "/dev/null"]
    for option in ("StrictHostKeyChecking=yes", "UserKnownHostsFile=/k/known_hosts", "GlobalKnownHostsFile=/dev/null",
                   "BatchMode=yes", "IdentitiesOnly=yes", "IdentityFile=/k/id", "ExitOnForwardFailure=yes",
                   "ServerAliveInterval=3", "ServerAliveCountMax=3", "ForwardAgent=no", "ControlPath=none"):
        assert option in argv
    assert argv[-2:] == ["--", pairing.deployment.relay.address]


# --- fatal errors, the same for both carriers ---------------------------------------


def spec_for(pairing, relay_key, identity_key: str = "host") -> TunnelSpec:
    deployment = pairing.deployment
    key_file = deployment.keys[identity_key].path
    outputs = deployment.stack_outputs
    relay, probe = (dataclasses.replace(relay_endpoint(outputs, user), pinned=(relay_key,))
                    for user in (TUNNEL_USER, GUEST_USER))
    return TunnelSpec(relay=relay, probe=probe, tunnel_port=outputs.tunnel_port,
                      target=("127.0.0.1", deployment.host_sshd.port),
                      identity=paramiko.PKey.from_path(key_file), identity_file=key_file)


def run_tunnel(carrier: str, spec: TunnelSpec) -> BaseException | None:
    """The tunnel in this process until it gives up; what it raised (what the hook would report)."""
    raised = []
    tunnel = CARRIERS[carrier](spec, SimpleNamespace(tunnel_state=lambda state, detail: None, warning=lambda text: None))

    def hold() -> None:
        try:
            tunnel.run()
        except BaseException as exc:
            raised.append(exc)

    worker = threading.Thread(target=hold, daemon=True)
    worker.start()
    worker.join(60)
    if worker.is_alive():
        tunnel.stop()
        worker.join(30)
        pytest.fail(f"the {carrier} tunnel kept retrying instead of giving up")
    return raised[0] if raised else None


@pytest.fixture()
def no_home(monkeypatch, tmp_path):
    """The in-process tunnel's ssh reads nothing of this machine's user: no ~/.ssh, no agent."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)


def test_a_key_held_by_ssh_agent(pairing, no_home, tmp_path, monkeypatch):
    """No key file: ssh is pointed at the key's public half and takes the private one from a real ssh-agent."""
    sock = tmp_path / "agent.sock"
    started = subprocess.run(["ssh-agent", "-s", "-a", str(sock)], capture_output=True, text=True, check=True)
    pid = int(re.search(r"SSH_AGENT_PID=(\d+)", started.stdout)[1])
    try:
        monkeypatch.setenv("SSH_AUTH_SOCK", str(sock))
        subprocess.run(["ssh-add", "-q", str(pairing.deployment.keys["host"].path)], check=True, capture_output=True)
        spec = dataclasses.replace(spec_for(pairing, pairing.deployment.relay_public_key), identity_file=None)
        up = threading.Event()
        tunnel = CARRIERS["openssh"](spec, SimpleNamespace(tunnel_state=lambda state, detail: up.set() if state is State.UP else None, warning=lambda text: None))
        worker = threading.Thread(target=tunnel.run, daemon=True)
        worker.start()
        try:
            assert up.wait(30), "the tunnel did not come up with the agent's key"
        finally:
            tunnel.stop()
            worker.join(30)
    finally:
        os.kill(pid, signal.SIGTERM)


@pytest.mark.parametrize("carrier", sorted(CARRIERS))
def test_another_relay_key_is_fatal(pairing, carrier, no_home):
    stranger = parse_public_key(pairing.deployment.keys["stranger"].public_line)
    error = run_tunnel(carrier, spec_for(pairing, stranger))
    assert isinstance(error, HostKeyMismatch), error
    assert "This may be an attack" in str(error) and stranger.fingerprint in str(error)
    # The key the relay really showed, so the host can compare it with the outputs.
    assert pairing.deployment.relay_public_key.fingerprint in str(error)


@pytest.mark.parametrize("carrier", sorted(CARRIERS))
def test_a_refused_identity_is_fatal(pairing, carrier, no_home):
    error = run_tunnel(carrier, spec_for(pairing, pairing.deployment.relay_public_key, identity_key="stranger"))
    assert isinstance(error, TunnelFatal), error
    assert "the relay refused the key" in str(error) and "--identity" in str(error)

