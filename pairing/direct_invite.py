"""A `pairing direct` session's invites: the file `pairing direct` writes, and `pairing invite`'s for a running
direct session (--for NAME, --known-hosts, --putty KEY.ppk), with no Pulumi. One hop, straight to the host's
sshd at the address and port the session's record holds (direct_state), its key pinned.
"""

from __future__ import annotations

import dataclasses
import os
import pwd
from pathlib import Path

from . import guest_documents, putty
from .backend import data_dir
from .direct_state import DirectRecord, RunningDirect, running
from .guest_documents import DirectRoute
from .hook.sshd import SshdError, host_key
from .invitation import LEAVE, Invitation, notes
from .invite import InviteError, guest_in, machine_name, write_shareable
from .names import NamedKey
from .shared_ports import SharedPort
from .sshkeys import PublicKey
from .text import printable


def route(record: DirectRecord, key: PublicKey) -> DirectRoute:
    return DirectRoute(record.address, record.port, pwd.getpwuid(os.geteuid()).pw_name, key)


def direct_command(record: DirectRecord, key: PublicKey) -> str:
    return guest_documents.direct_command(route(record, key))


def direct_invitation(record: DirectRecord, key: PublicKey, file_name: str, known_hosts: str | None = None,
                      guest: NamedKey | None = None, shared: tuple[SharedPort, ...] = (),
                      shared_viewers: bool = False) -> Invitation:
    return Invitation(host_user=route(record, key).host_user, machine=machine_name(), guests=record.guests, relay=None,
                      relay_fingerprint=None, host_fingerprint=key.fingerprint, expires_at=None, file_name=file_name,
                      known_hosts=known_hosts, guest=guest, shared=shared, shared_viewers=shared_viewers)


def write_direct_config(record: DirectRecord, key: PublicKey, path: Path, invitation: Invitation) -> None:
    """The guest's ssh config (and its .known_hosts when the invitation names one), with the LocalForward lines
    of the ports the invitation shares."""
    way = dataclasses.replace(route(record, key), shared=invitation.shared)
    if invitation.known_hosts:
        write_shareable(path.with_name(invitation.known_hosts), guest_documents.known_hosts_file(way))
    write_shareable(path, guest_documents.direct_config(way, notes(invitation), invitation.known_hosts))


def the_running_one(session: str | None) -> RunningDirect | None:
    """The running `pairing direct` meant (--session, else the only one); None when none runs."""
    found = [r for r in running() if session in (None, r.record.session)]
    if len(found) > 1:
        raise InviteError(f"several `pairing direct` sessions run ({', '.join(r.record.session for r in found)}); "
                          "say which with --session NAME")
    return found[0] if found else None


def _key() -> PublicKey:
    try:
        return host_key(data_dir())
    except SshdError as exc:
        raise InviteError(str(exc)) from None


def write_direct_invite(record: DirectRecord, path: Path, known_hosts: bool = False, for_name: str | None = None) -> str:
    """`pairing invite` for a running `pairing direct`: write the file(s), return what to tell the guest."""
    key = _key()
    guest = guest_in(record.guests, for_name) if for_name is not None else None
    keys_path = path.with_suffix(".known_hosts") if known_hosts else None
    invitation = direct_invitation(record, key, path.name, keys_path.name if keys_path else None, guest)
    write_direct_config(record, key, path, invitation)
    whose = f" for {guest.name}" if guest else ""
    if keys_path:
        sent = [f"wrote {path} and {keys_path}{whose}: send both to your guest (they hold no secret). In the folder",
                "holding both (the config names the other file), with any OpenSSH since 7.3, Windows 10/11's too, they run:",
                f"    ssh -F {path.name} pairing"]
    else:
        sent = [f"wrote {path}{whose}: send it to your guest (it holds no secret). They run:",
                f"    ssh -F {path.name} pairing",
                "or, with no file at all (OpenSSH 8.5+):",
                f"    {direct_command(record, key)}",
                "A guest on Windows, or with OpenSSH before 8.5: pairing invite --known-hosts (two files)."]
    return "\n".join([*sent, f"Straight to your sshd at {record.endpoint} (`pairing direct --session {record.session}`), "
                      "no relay; to double-check by voice or chat:", f"    host sshd: {key.fingerprint}"])


def putty_direct_invite(record: DirectRecord, key_path: str) -> str:
    """`pairing invite --putty KEY.ppk` for a running `pairing direct`: plink straight to the host's sshd."""
    way = route(record, _key())
    return "\n".join(printable(line, "the PuTTY guest's instructions") for line in [
        f"For a guest with PuTTY holding {key_path} (plink on their PATH; a key with a passphrase: load it",
        "into Pageant and leave out -i), in the folder the key's path is relative to:",
        f"    {putty.direct_plink_command(way, key_path)}",
        "or in PuTTY's window:",
        *(f"    {step}" for step in putty.direct_window_steps(way, key_path)),
        "The host's key is pinned (plink refuses any other); to double-check by voice or chat:",
        f"    host sshd: {way.host_sshd_key.fingerprint}",
        f"It works while your `pairing direct` runs; there is no relay. {LEAVE}",
    ])
