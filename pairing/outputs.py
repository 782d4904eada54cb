"""The stack outputs: the contract between `pulumi up` and everything after it.

The Pulumi program exports exactly these names; the host hook and the guest
invite read them back (from `pulumi stack output --json --show-secrets` or a
file holding that JSON) through StackOutputs.from_json.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Mapping

from .sshkeys import InvalidKey, PublicKey, parse_public_key


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
        values = {f.name: (int(data[f.name]) if f.type == "int" else str(data[f.name])) for f in fields(cls)}
        return cls(**values)

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
