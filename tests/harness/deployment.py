"""A whole pairing deployment on this machine: the relay from the harness
booted on our own rendered user data, the host's private sshd, and the stack
outputs the program would export for them, ready for the hook and guests."""

from __future__ import annotations

import datetime as dt
import json
import os
import select
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from pairing.accounts import TUNNEL_USER
from pairing.names import NamedKey, roster
from pairing.outputs import StackOutputs, render_outputs
from pairing.relay_guests import guest_list
from pairing.relay_documents import RelayHostKey, user_data
from pairing.settings import Settings, settings_from
from pairing.sshkeys import PublicKey, parse_public_key

from .host import HostSshd, stop_process, wait_until
from .keys import KeyFile, make_key
from .relay import Relay
from .rootfs import DEFAULT_SUITE

# OpenSSH clients in tests read nothing of the machine's own ~/.ssh or /etc/ssh.
CLIENT_ISOLATION = ["-F", "/dev/null", "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
                    "-o", "GlobalKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=yes",
                    "-o", "ConnectTimeout=10"]


@dataclass
class Deployment:
    folder: Path
    keys: dict[str, KeyFile]
    settings: Settings
    relay_key: KeyFile
    relay: Relay
    host_sshd: HostSshd
    authorized_keys: Path
    launched: str = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))

    @property
    def relay_public_key(self) -> PublicKey:
        return parse_public_key(self.relay_key.public_line)

    def outputs(self) -> dict:
        """What `pulumi stack output --json --show-secrets` would print for this relay."""
        return render_outputs(
            self.settings, relay_address=self.relay.address, relay_host_key=self.relay_public_key,
            instance_id="i-harness", launch_time=self.launched,
        )

    def outputs_file(self, name: str = "outputs.json", **changes) -> Path:
        path = self.folder / name
        path.write_text(json.dumps({**self.outputs(), **changes}))
        return path

    @property
    def stack_outputs(self) -> StackOutputs:
        return StackOutputs.from_json(self.outputs())

    @property
    def known_hosts(self) -> Path:
        """The relay's pinned key, as a client's known_hosts file."""
        path = self.folder / "relay_known_hosts"
        path.write_text(self.outputs()["relayKnownHosts"])
        return path

    def ssh_options(self, key: str) -> list[str]:
        """Real OpenSSH options: one of our keys, the relay's key pinned."""
        return [*CLIENT_ISOLATION, "-o", f"UserKnownHostsFile={self.known_hosts}", "-i", str(self.keys[key].path)]

    def ssh_argv(self, user: str, key: str, *options: str, command: str | None = None) -> list[str]:
        return ["ssh", *self.ssh_options(key), *options, f"{user}@{self.relay.address}", *([command] if command else [])]

    def ssh(self, user: str, key: str, *options: str, command: str | None = None, timeout: float = 30) -> subprocess.CompletedProcess:
        return subprocess.run(self.ssh_argv(user, key, *options, command=command), capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL, env=client_env())


    @contextmanager
    def openssh_tunnel(self, port: int) -> Iterator[subprocess.Popen]:
        """The host's key holding -R localhost:PORT -> the host's sshd with OpenSSH itself, its forced command
        asked for nothing; stopped after."""
        argv = self.ssh_argv(TUNNEL_USER, "host", "-N", "-o", "ExitOnForwardFailure=yes",
                             "-R", f"localhost:{port}:127.0.0.1:{self.host_sshd.port}")
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            wait_until(lambda: f":{port} " in self.relay.run(["ss", "-Hltn"]).stdout or process.poll() is not None,
                       20, "the tunnel key's listen on the relay")
            assert process.poll() is None, process.stderr.read().decode()
            yield process
        finally:
            stop_process(process)

    def set_guests(self, guests: list[NamedKey] | None = None) -> subprocess.CompletedProcess:
        """The relay's live guest list, as `pairing host` sets it at start (default: the settings' guests),
        through the tunnel key's one command, with OpenSSH."""
        chosen = roster(self.settings.guest_keys, self.settings.viewer_keys) if guests is None else guests
        return self.relay_command("guests", guest_list(chosen, self.settings.host_public_key))

    def relay_command(self, command: str, stdin: bytes = b"", key: str = "host") -> subprocess.CompletedProcess:
        """`ssh tunnel@relay COMMAND` with the host's key (its forced command gets COMMAND), stdin given."""
        return subprocess.run(self.ssh_argv(TUNNEL_USER, key, command=command), input=stdin, capture_output=True,
                              timeout=30, env=client_env())


def client_env() -> dict[str, str]:
    """No agent and no display reach the clients: only the keys a test names."""
    return {k: v for k, v in os.environ.items() if k not in ("SSH_AUTH_SOCK", "SSH_AGENT_PID", "DISPLAY")}


def first_line(argv: list[str], timeout: float = 20) -> tuple[str, str]:
    """Start a client, return (its first stdout line, its stderr) and stop it."""
    process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env=client_env())
    line = b""
    try:
        deadline = time.monotonic() + timeout
        while not line.endswith(b"\n") and time.monotonic() < deadline:
            if select.select([process.stdout], [], [], 0.2)[0]:
                chunk = os.read(process.stdout.fileno(), 1)
                if not chunk:
                    break
                line += chunk
    finally:
        process.kill()
        _, err = process.communicate()
    return line.decode(errors="replace").strip(), err.decode(errors="replace")


def deploy(folder: Path, keys: dict[str, KeyFile], suite: str = DEFAULT_SUITE, sshd_key_kind: str = "ed25519",
           relay_key_kind: str = "ed25519", **config) -> Deployment:
    """Boot a relay on the rendered user data for these keys and settings (caller exits .relay).

    sshd_key_kind, relay_key_kind: the types (ssh-keygen -t) of the host sshd's and the relay's host keys.
    Pulumi makes the relay's an ED25519 key; another kind stands for a relay given by an --outputs file.
    """
    authorized_keys = folder / "home" / ".ssh" / "authorized_keys"
    host_sshd = HostSshd(folder / "host-sshd", authorized_keys, key_kind=sshd_key_kind)
    raw = {
        "guestKeys": [keys["guest"].public_line, keys["guest2"].public_line],
        "viewerKeys": [keys["viewer"].public_line],
        "hostPublicKey": keys["host"].public_line,
        "hostSshdKey": host_sshd.host_key.public_line,
        "hostUser": "root",
        **config,
    }
    settings = settings_from(raw)
    # The user data files the key under ed25519 (cloud-init writes it to ssh_host_ed25519_key, the
    # one HostKey of the relay's sshd), but sshd takes a key's type from the key: an RSA key there
    # is the one key an RSA relay presents.
    relay_key = make_key(folder / "relay-key", "ssh_host_ed25519_key", relay_key_kind)
    document = user_data(settings, RelayHostKey(relay_key.path.read_text(), relay_key.public_line))
    relay = Relay(document, suite=suite)
    deployment = Deployment(folder, keys, settings, relay_key, relay, host_sshd, authorized_keys)
    # Every test finds the guests let on, as a `pairing host` would leave them (a test may set others).
    relay.on_boot = lambda: _checked(deployment.set_guests())
    return deployment


def _checked(result: subprocess.CompletedProcess) -> None:
    if result.returncode != 0:
        raise RuntimeError(f"the relay refused the guest list: {result.stderr.decode(errors='replace')}")
