"""`pairing invite`: what a guest needs, from the stack outputs. Only OpenSSH on their side.

Every document is rendered here from the validated facts of the outputs; none of the
outputs' own text (guestSshConfig, guestCommand) is copied into a guest's file.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path

from . import backend as backends
from . import guest_documents
from .outputs import OutputsError, StackOutputs
from .stack_cli import read_outputs


def write_invite(outputs: StackOutputs, path: Path, known_hosts: bool = False, ipv6: bool = False) -> str:
    """Write the guest's ssh config and return what to tell the guest.

    known_hosts: for guests with OpenSSH before 8.5, the keys of both hops go in
    a file of their own beside the config (PATH.known_hosts), which it names.
    ipv6: the relay's IPv6 address in place of its IPv4 one, for a guest on an IPv6-only
    network (the relay's key is pinned under an alias, so the pin is the same).
    """
    route = outputs.guest_route
    if ipv6:
        if outputs.relay_ipv6_address is None:
            raise OutputsError("this relay has no IPv6 address (the outputs lack relayIpv6Address: a stack from "
                               "before pairing gave relays one); run `pairing up` again, or leave out --ipv6")
        route = dataclasses.replace(route, relay_address=outputs.relay_ipv6_address)
    if known_hosts:
        keys_path = path.with_suffix(".known_hosts")
        config = guest_documents.ssh_config(route, known_hosts=keys_path.name)
        write_shareable(keys_path, guest_documents.known_hosts_file(route))
        write_shareable(path, config)
        sent = [
            f"wrote {path} and {keys_path}: send both to your guest (they hold no secret). In the folder",
            "holding both (the config names the other file), with any OpenSSH since 7.3, they run:",
            f"    ssh -F {path.name} pairing",
        ]
    else:
        write_shareable(path, guest_documents.ssh_config(route))
        sent = [
            f"wrote {path}: send it to your guest (it holds no secret). They run:",
            f"    ssh -F {path.name} pairing",
            "or, with no file at all (OpenSSH 8.5+):",
            f"    {guest_documents.command(route)}",
        ]
    return "\n".join(
        [
            *sent,
            "Both hops are pinned; to double-check by voice or chat:",
            f"    relay {route.relay_address}: {outputs.relay_fingerprint}",
            f"    host sshd:   {outputs.host_sshd_key.fingerprint}",
            f"The relay ends at {outputs.expires_at:%Y-%m-%dT%H:%M:%SZ}.",
        ]
    )


def write_shareable(path: Path, text: str) -> None:
    """Atomically, readable by all (it holds public keys and addresses only). The temp file is
    made fresh with O_EXCL (mkstemp), so a planted file or symlink in its place is never followed."""
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as out:
            os.fchmod(out.fileno(), 0o644)
            out.write(text)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def cmd_invite(args) -> int:
    outputs = read_outputs(args.outputs, args.stack, backends.choose(args.backend).env)
    print(write_invite(outputs, args.invite, args.known_hosts, args.ipv6))
    return 0
