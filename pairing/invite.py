"""`pairing invite`: what a guest needs, from the stack outputs. Only OpenSSH on their side."""

from __future__ import annotations

import os
from pathlib import Path

from . import guest_documents
from .outputs import StackOutputs
from .sshkeys import parse_public_key


def write_invite(outputs: StackOutputs, path: Path, known_hosts: bool = False) -> str:
    """Write the guest's ssh config and return what to tell the guest.

    known_hosts: for guests with OpenSSH before 8.5, the keys of both hops go in
    a file of their own beside the config (PATH.known_hosts), which it names.
    """
    if known_hosts:
        keys_path = path.with_suffix(".known_hosts")
        route = outputs.guest_route
        _write(keys_path, guest_documents.known_hosts_file(route))
        _write(path, guest_documents.ssh_config(route, known_hosts=keys_path.name))
        sent = [
            f"wrote {path} and {keys_path}: send both to your guest (they hold no secret). In the folder",
            "holding both (the config names the other file), with any OpenSSH since 7.3, they run:",
            f"    ssh -F {path.name} pairing",
        ]
    else:
        _write(path, outputs.guestSshConfig)
        sent = [
            f"wrote {path}: send it to your guest (it holds no secret). They run:",
            f"    ssh -F {path.name} pairing",
            "or, with no file at all (OpenSSH 8.5+):",
            f"    {outputs.guestCommand}",
        ]
    host_key = parse_public_key(outputs.hostSshdKey)
    return "\n".join(
        [
            *sent,
            "Both hops are pinned; to double-check by voice or chat:",
            f"    relay {outputs.relayAddress}: {outputs.relayHostKeyFingerprint}",
            f"    host sshd:   {host_key.fingerprint}",
            f"The relay ends at {outputs.expiresAt}.",
        ]
    )


def _write(path: Path, text: str) -> None:
    """Atomically, readable by all: it holds public keys and addresses only."""
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_text(text)
    os.chmod(temp, 0o644)
    os.replace(temp, path)
