"""`pairing invite`: what a guest needs, from the stack outputs. Only OpenSSH on their side.

Every document is rendered here from the validated facts of the outputs; none of the
outputs' own text (guestSshConfig, guestCommand) is copied into a guest's file.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import tempfile
from pathlib import Path
from typing import Sequence

from . import backend as backends
from . import guest_documents, putty
from .control_cli import Refused, find_hook
from .hook.control import ControlError, ask
from .invitation import LEAVE, Invitation, notes
from .names import NamedKey, roster
from .outputs import HOST_NAME, OutputsError, StackOutputs
from .shared_ports import ANOTHER_WITH_PLINK, ShareError, SharedPort, header, parse
from .sshkeys import shorten
from .stack_cli import read_outputs
from .text import did_you_mean, printable


class InviteError(ValueError):
    """A flag of `pairing invite` that cannot be followed; the message names it and the fix."""


def machine_name() -> str | None:
    """This machine's name for the guest's header, if it is a plain host name (it is read from outside)."""
    name = socket.gethostname()
    return name if HOST_NAME.fullmatch(name) else None


def guest_named(outputs: StackOutputs, name: str) -> NamedKey:
    """`--for NAME`: one of the guests the outputs name, else one line listing them."""
    return guest_in(roster(outputs.guest_keys, outputs.viewer_keys), name)


def guest_in(guests: Sequence[NamedKey], name: str) -> NamedKey:
    """`--for NAME`: one of `guests`, else one line listing them (and the nearest name, if one is near)."""
    found = [g for g in guests if g.name == name]
    if not found:
        raise InviteError(f"--for {shorten(name)!r}: no guest of that name{did_you_mean(name, [g.name for g in guests])}; "
                          f"the guests are {', '.join(g.name for g in guests)}")
    return found[0]


def guest_route(outputs: StackOutputs, ipv6: bool) -> guest_documents.GuestRoute:
    """The guest's route, to the relay's IPv6 address with ipv6."""
    if not ipv6:
        return outputs.guest_route
    if outputs.relay_ipv6_address is None:
        raise OutputsError("this relay has no IPv6 address (the outputs lack relayIpv6Address: a stack from "
                           "before pairing gave relays one); run `pairing up` again, or leave out --ipv6")
    return dataclasses.replace(outputs.guest_route, relay_address=outputs.relay_ipv6_address)


Shared = tuple[tuple[SharedPort, ...], bool]  # the host's shared ports, and whether viewers get them


def running_shares(outputs: StackOutputs) -> Shared:
    """What the running hook for this session shares now (`pairing share`), else nothing. Its answer is
    input like any other: each port parsed again."""
    try:
        answer = ask(find_hook(outputs.tmux_session, None), {"op": "who"}, timeout=3)
        ports = tuple(parse(f"{int(p['host'])}:{int(p['guest'])}") for p in answer.get("shared") or [])
    except (Refused, ControlError, ShareError, TypeError, KeyError, ValueError):
        return (), False
    return ports, answer.get("shared_viewers") is True


def _for(shared: Shared, guest: NamedKey | None) -> Shared:
    """An invite for one viewer opens nothing unless viewers get the ports."""
    ports, viewers = shared
    return ((), viewers) if guest is not None and not guest.typing and not viewers else shared


def write_invite(outputs: StackOutputs, path: Path, known_hosts: bool = False, ipv6: bool = False,
                 for_name: str | None = None, shared: Shared | None = None) -> str:
    """Write the guest's ssh config and return what to tell the guest.

    known_hosts: for guests with OpenSSH before 8.5, the keys of both hops go in
    a file of their own beside the config (PATH.known_hosts), which it names.
    ipv6: the relay's IPv6 address in place of its IPv4 one, for a guest on an IPv6-only
    network (the relay's key is pinned under an alias, so the pin is the same).
    for_name: that guest's own invite (their role, their key's fingerprint in the header).
    shared: the host's shared ports (`pairing up --share-port`); None: what the running hook shares.
    """
    guest = guest_named(outputs, for_name) if for_name is not None else None
    ports, viewers = _for(running_shares(outputs) if shared is None else shared, guest)
    route = dataclasses.replace(guest_route(outputs, ipv6), shared=ports)
    keys_path = path.with_suffix(".known_hosts") if known_hosts else None
    invitation = Invitation(
        host_user=outputs.host_user, machine=machine_name(), guests=roster(outputs.guest_keys, outputs.viewer_keys),
        relay=f"relay {route.relay_address}", relay_fingerprint=outputs.relay_fingerprint,
        host_fingerprint=outputs.host_sshd_key.fingerprint, expires_at=outputs.expires_at, file_name=path.name,
        known_hosts=keys_path.name if keys_path else None, guest=guest, shared=ports, shared_viewers=viewers,
    )
    config = guest_documents.ssh_config(route, invitation.known_hosts, notes(invitation))
    whose = f" for {guest.name}" if guest else ""
    if keys_path:
        write_shareable(keys_path, guest_documents.known_hosts_file(route))
        write_shareable(path, config)
        sent = [
            f"wrote {path} and {keys_path}{whose}: send both to your guest (they hold no secret). In the folder",
            "holding both (the config names the other file), with any OpenSSH since 7.3, Windows 10/11's too, they run:",
            f"    ssh -F {path.name} pairing",
        ]
    else:
        write_shareable(path, config)
        sent = [
            f"wrote {path}{whose}: send it to your guest (it holds no secret). They run:",
            f"    ssh -F {path.name} pairing",
            "or, with no file at all (OpenSSH 8.5+):",
            f"    {guest_documents.command(route)}",
            "A guest on Windows, or with OpenSSH before 8.5: pairing invite --known-hosts (two files).",
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


def putty_invite(outputs: StackOutputs, key_path: str, ipv6: bool = False) -> str:
    """`--putty KEY.ppk`: what to tell a guest with PuTTY. Writes nothing: the command is the whole invite."""
    ports, viewers = running_shares(outputs)
    route = dataclasses.replace(guest_route(outputs, ipv6), shared=ports)
    shared = header(ports, viewers, ANOTHER_WITH_PLINK)
    return "\n".join(printable(line, "the PuTTY guest's instructions") for line in [
        *shared,
        f"For a guest with PuTTY holding {key_path} (plink on their PATH; a key with a passphrase: load it",
        "into Pageant and leave out both -i), in the folder the key's path is relative to:",
        f"    {putty.plink_command(route, key_path)}",
        "or in PuTTY's window:",
        *(f"    {step}" for step in putty.window_steps(route, key_path)),
        "Both hops are pinned (plink refuses any other key); to double-check by voice or chat:",
        f"    relay {route.relay_address}: {outputs.relay_fingerprint}",
        f"    host sshd:   {outputs.host_sshd_key.fingerprint}",
        f"The relay ends at {outputs.expires_at:%Y-%m-%dT%H:%M:%SZ}. {LEAVE}",
    ])


def check_folder(path: Path) -> None:
    """--invite FILE's folder exists (checked before anything is touched): one line, not mkstemp's Errno."""
    folder = path.parent
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise InviteError(f"--invite {path}: the folder {folder} {what}; make it (mkdir -p {folder}) or give a "
                          "file in a folder that exists")


def write_shareable(path: Path, text: str) -> None:
    """Atomically, readable by all (it holds public keys and addresses only). The temp file is
    made fresh with O_EXCL (mkstemp), so a planted file or symlink in its place is never followed."""
    check_folder(path)
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
    """A running `pairing direct`'s invite (no Pulumi) unless --outputs is given; else the relay's."""
    from .direct_invite import putty_direct_invite, the_running_one, write_direct_invite  # it builds on this module

    key_path = putty.check_key_path(args.putty) if args.putty is not None else None  # before reading anything
    check_folder(args.invite)
    direct = the_running_one(args.session) if args.outputs is None else None
    if args.session is not None and direct is None:
        raise InviteError(f"--session {args.session}: no `pairing direct` runs for that tmux session; start it: "
                          f"pairing direct --session {args.session} --guest SOURCE --listen ADDRESS")
    if direct is not None:
        if args.ipv6:
            raise InviteError("--ipv6 is for a relay's invite; a `pairing direct` invite names the address it listens "
                              "on: give that --listen an IPv6 address instead")
        print(putty_direct_invite(direct.record, key_path) if key_path is not None else
              write_direct_invite(direct.record, args.invite, args.known_hosts, args.for_name))
        return 0
    try:
        outputs = read_outputs(args.outputs, args.stack, backends.choose(args.backend).env)
    except OutputsError as exc:  # a direct host may have meant theirs: say it is not running
        if args.outputs is None:
            raise OutputsError(f"{exc}; and no `pairing direct` runs as this user (its invite needs no Pulumi)") from None
        raise
    if key_path is not None:
        print(putty_invite(outputs, key_path, args.ipv6))
    else:
        print(write_invite(outputs, args.invite, args.known_hosts, args.ipv6, args.for_name))
    return 0
