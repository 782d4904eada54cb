"""Smoke checks of the relay harness itself: real cloud-init, real sshd, real ssh client."""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

import pytest

from tests.harness import SUITES, CloudInitError, Relay


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("keys")
    paths = {name: directory / name for name in ("host", "client")}
    for name, path in paths.items():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(path)], check=True)
    return paths


def pair_user_data(keys: dict[str, Path], **extra: object) -> str:
    client = keys["client"].with_suffix(".pub").read_text().strip()
    document = {
        "users": [{
            "name": "pair",
            "lock_passwd": True,
            "shell": "/usr/sbin/nologin",
            "ssh_authorized_keys": [
                f'restrict,port-forwarding,permitopen="localhost:1337",command="/usr/sbin/nologin" {client}'
            ],
        }],
        "ssh_deletekeys": True,
        "ssh_keys": {
            "ed25519_private": keys["host"].read_text(),
            "ed25519_public": keys["host"].with_suffix(".pub").read_text().strip(),
        },
        "write_files": [{
            "path": "/etc/ssh/sshd_config.d/10-pairing.conf",
            "content": "HostKey /etc/ssh/ssh_host_ed25519_key\nPasswordAuthentication no\n",
        }],
        **extra,
    }
    return "#cloud-config\n" + json.dumps(document)  # JSON is YAML


def ssh(relay: Relay, keys: dict[str, Path], tmp_path: Path, *args: str) -> list[str]:
    known_hosts = tmp_path / "known_hosts"
    host = relay.address if relay.port == 22 else f"[{relay.address}]:{relay.port}"
    known_hosts.write_text(f"{host} {keys['host'].with_suffix('.pub').read_text()}")
    return [
        "ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
        "-o", f"UserKnownHostsFile={known_hosts}", "-o", "ConnectTimeout=10", "-p", str(relay.port),
        "-i", str(keys["client"]), *args, f"pair@{relay.address}",
    ]


def assert_gone(relay: Relay, pids: list[int]) -> None:
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    assert relay._net.name not in netns
    assert f"{relay._net.host_if}@" not in links
    assert str(relay.workdir) not in Path("/proc/self/mountinfo").read_text()
    assert not relay.workdir.exists()
    assert not [pid for pid in pids if Path(f"/proc/{pid}").exists()]


@pytest.mark.parametrize("suite", SUITES)
def test_pinned_host_key_auth_and_forwarding(suite: str, keys: dict[str, Path], tmp_path: Path) -> None:
    with Relay(pair_user_data(keys), suite=suite) as relay:
        pids = [relay._sandbox.pid]
        result = subprocess.run(
            ssh(relay, keys, tmp_path, "-W", "localhost:1337"),
            check=False, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60,
        )
        print(f"{suite}: up in {relay.up_seconds:.2f}s, stages {relay.stage_seconds}")
        assert "Connection refused" in result.stderr, result.stderr  # past auth, at the forward
        assert "Accepted publickey for pair" in relay.sshd_log()
        assert relay.read("/etc/hostname").strip() == "relay"
    assert_gone(relay, pids)


def wait_for_pair_processes(relay: Relay, present: bool) -> None:
    test = "pgrep -u pair >/dev/null" if present else "! pgrep -u pair >/dev/null"
    relay.run(["sh", "-c", f"until {test}; do sleep 0.1; done"], timeout=30)


def test_faults(keys: dict[str, Path], tmp_path: Path) -> None:
    with Relay(pair_user_data(keys)) as relay:
        sessions = []

        def session(*options: str) -> subprocess.Popen[str]:
            sessions.append(subprocess.Popen(
                ssh(relay, keys, tmp_path, "-N", *options), stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
            ))
            wait_for_pair_processes(relay, present=True)
            return sessions[-1]

        try:
            killed = session()
            relay.kill_connections_of("pair")
            assert killed.wait(timeout=30) == 255
            wait_for_pair_processes(relay, present=False)

            alive = session("-o", "ServerAliveInterval=1", "-o", "ServerAliveCountMax=2")
            relay.restart_sshd()
            assert alive.poll() is None, "a restart of sshd must spare established sessions"

            probe = socket.create_connection((relay.address, relay.port), timeout=5)
            assert probe.makefile("rb").readline().startswith(b"SSH-")
            relay.cut_network()
            probe.sendall(b"SSH-2.0-probe\r\n")  # queued, never delivered, never reset
            probe.settimeout(2)
            with pytest.raises(socket.timeout):
                probe.recv(1)
            with pytest.raises(socket.timeout):
                socket.create_connection((relay.address, relay.port), timeout=2)
            assert "Timeout, server" in alive.communicate(timeout=30)[1]
            relay.restore_network()
            probe.settimeout(30)
            assert probe.recv(1), "after restore the retransmitted data gets an answer"
            probe.close()
        finally:
            for proc in sessions:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()


def test_failed_stage_raises_and_cleans_up() -> None:
    relay = Relay("#cloud-config\nruncmd:\n  - [sh, -c, 'echo boom >&2; exit 3']\n")
    with pytest.raises(CloudInitError, match="scripts-user|runcmd|modules-final"):
        relay.__enter__()
    # This relay's own namespace, veth and root are gone (other relays may be running).
    assert_gone(relay, [relay._sandbox.pid])


def test_relays_run_side_by_side(keys: dict[str, Path], tmp_path: Path) -> None:
    with Relay(pair_user_data(keys)) as first, Relay(pair_user_data(keys)) as second:
        assert first.address != second.address
        for relay in (first, second):
            result = subprocess.run(
                ssh(relay, keys, tmp_path, "-W", "localhost:1337"),
                check=False, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60,
            )
            assert "Connection refused" in result.stderr, result.stderr

# The full QEMU boot is exercised with the project's own user data in test_ttl.py.
