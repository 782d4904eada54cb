"""The stack outputs: the contract between `pulumi up` and everything after it.

The Pulumi program exports exactly these names; the host hook and the guest
invite read them back (from `pulumi stack output --json --show-secrets` or a
file holding that JSON) through StackOutputs.from_json.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass, fields
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Mapping

from . import guest_documents
from .settings import Settings
from .sshkeys import InvalidKey, PublicKey, parse_public_key

RELAY_SSH_PORT = 22


class OutputsError(ValueError):
    """Outputs that cannot be used; the message says which and what to do."""


@dataclass(frozen=True)
class StackOutputs:
    relayAddress: str
    relayPort: int
    tunnelPort: int
    relayKnownHosts: str
    relayHostKeyFingerprint: str
    guestSshConfig: str
    guestCommand: str
    hostUser: str
    tmuxSession: str
    hostSshdKey: str
    hostPublicKey: str
    guestKeys: tuple[str, ...]
    viewerKeys: tuple[str, ...]
    expiresAt: str
    instanceId: str

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def from_json(cls, data: Mapping[str, Any], source: str = "the stack outputs") -> "StackOutputs":
        missing = [name for name in cls.names() if data.get(name) in (None, "")]
        if missing:
            raise OutputsError(
                f"{source} lack {', '.join(missing)}; run `pulumi up` to completion first "
                "(or give --outputs a file from `pulumi stack output --json --show-secrets`)"
            )
        return cls(**{f.name: _typed(f.type, f.name, data[f.name]) for f in fields(cls)})

    @property
    def guest_route(self) -> guest_documents.GuestRoute:
        """The facts the guest's documents are made from, read back from the outputs."""
        try:
            sshd_key = parse_public_key(self.hostSshdKey)
        except InvalidKey as exc:
            raise OutputsError(f"hostSshdKey: {exc}") from None
        return guest_documents.GuestRoute(
            relay_address=self.relayAddress, relay_port=self.relayPort, relay_host_key=self.relay_host_keys[0],
            tunnel_port=self.tunnelPort, host_user=self.hostUser, host_sshd_key=sshd_key,
        )

    def keys(self, name: str) -> tuple[PublicKey, ...]:
        """guestKeys or viewerKeys, parsed."""
        try:
            return tuple(parse_public_key(line) for line in getattr(self, name))
        except InvalidKey as exc:
            raise OutputsError(f"{name}: {exc}") from None

    @property
    def relay_host_keys(self) -> list[PublicKey]:
        """The pinned relay keys, from the known_hosts text."""
        keys = []
        for line in self.relayKnownHosts.splitlines():
            if line.strip() and not line.startswith("#"):
                _pattern, _, key = line.strip().partition(" ")
                try:
                    keys.append(parse_public_key(key))
                except InvalidKey as exc:
                    raise OutputsError(f"relayKnownHosts: {exc}") from None
        if not keys:
            raise OutputsError("relayKnownHosts holds no key; run `pulumi up` again")
        return keys


def _typed(kind: str, name: str, value: Any) -> Any:
    try:
        if kind == "int":
            return int(value)
        if kind.startswith("tuple"):
            if not isinstance(value, list):
                raise TypeError
            return tuple(str(v) for v in value)
        return str(value)
    except (TypeError, ValueError):
        raise OutputsError(f"output {name} is {value!r}, not a {kind}; read the outputs again with `pulumi stack output --json`") from None


def expires_at(launch_time: str, ttl_minutes: int) -> str:
    """When the relay ends itself: its launch plus the TTL, ISO 8601 UTC.

    The relay counts from its first boot, a few seconds after launch, so this
    is on the safe side by those seconds.
    """
    launched = datetime.fromisoformat(launch_time.replace("Z", "+00:00")).astimezone(timezone.utc)
    return (launched + timedelta(minutes=ttl_minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")


def render_outputs(
    settings: Settings, *, relay_address: str, relay_host_key: PublicKey, instance_id: str, launch_time: str,
    relay_port: int = RELAY_SSH_PORT,
) -> dict[str, Any]:
    """Every stack output, from the settings and what AWS reports about the instance."""
    route = guest_documents.GuestRoute(
        relay_address=relay_address,
        relay_port=relay_port,
        relay_host_key=relay_host_key,
        tunnel_port=settings.tunnel_port,
        host_user=settings.host_user,
        host_sshd_key=settings.host_sshd_key,
    )
    outputs = {
        "relayAddress": relay_address,
        "relayPort": relay_port,
        "tunnelPort": settings.tunnel_port,
        "relayKnownHosts": guest_documents.relay_known_hosts(relay_address, relay_port, relay_host_key),
        "relayHostKeyFingerprint": relay_host_key.fingerprint,
        "guestSshConfig": guest_documents.ssh_config(route),
        "guestCommand": guest_documents.command(route),
        "hostUser": settings.host_user,
        "tmuxSession": settings.tmux_session,
        "hostSshdKey": settings.host_sshd_key.bare,
        "hostPublicKey": settings.host_public_key.bare,
        "guestKeys": [k.line for k in settings.guest_keys],
        "viewerKeys": [k.line for k in settings.viewer_keys],
        "expiresAt": expires_at(launch_time, settings.ttl_minutes),
        "instanceId": instance_id,
    }
    assert set(outputs) == set(StackOutputs.names())
    return outputs


PROJECT_DIR = Path(__file__).resolve().parent.parent


def read_outputs(file: Path | None = None, stack: str | None = None, env: Mapping[str, str] | None = None) -> StackOutputs:
    """The outputs from a JSON file, or from the Pulumi CLI for a stack (default: the selected one)."""
    if file is not None:
        try:
            data = json.loads(Path(file).read_text())
        except (OSError, ValueError) as exc:
            raise OutputsError(f"--outputs {file}: cannot read it as JSON ({exc})") from None
        return StackOutputs.from_json(data, source=str(file))
    if shutil.which("pulumi") is None:
        raise OutputsError("the Pulumi CLI is not installed; install it, or pass --outputs FILE (JSON from `pulumi stack output --json --show-secrets`)")
    argv = ["pulumi", "stack", "output", "--json", "--show-secrets"] + (["--stack", stack] if stack else [])
    cwd = PROJECT_DIR if (PROJECT_DIR / "Pulumi.yaml").exists() else None
    result = subprocess.run(argv, capture_output=True, text=True, cwd=cwd, env={**os.environ, **(env or {})})
    if result.returncode != 0:
        detail = (result.stderr.strip().splitlines() or ["no message"])[-1]
        raise OutputsError(f"`{' '.join(argv)}` failed: {detail}")
    return StackOutputs.from_json(json.loads(result.stdout), source=f"stack {stack or '(selected)'}")
