"""`pairing invite`: what a guest needs, from the stack outputs. Only OpenSSH on their side."""

from __future__ import annotations

import os
from pathlib import Path

from .outputs import StackOutputs
from .sshkeys import parse_public_key


def write_invite(outputs: StackOutputs, path: Path) -> str:
    """Write the guest's ssh config (both hops pinned inline) and return what to tell the guest."""
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_text(outputs.guestSshConfig)
    os.chmod(temp, 0o644)
    os.replace(temp, path)
    host_key = parse_public_key(outputs.hostSshdKey)
    return "\n".join(
        [
            f"wrote {path}: send it to your guest (it holds no secret). They run:",
            f"    ssh -F {path.name} pairing",
            "or, with no file at all (OpenSSH 8.5+):",
            f"    {outputs.guestCommand}",
            "Both hops are pinned; to double-check by voice or chat:",
            f"    relay {outputs.relayAddress}: {outputs.relayHostKeyFingerprint}",
            f"    host sshd:   {host_key.fingerprint}",
            f"The relay ends at {outputs.expiresAt}.",
        ]
    )
