"""`pairing direct`'s memory, one small JSON file per tmux session (its name and socket) in that session's
private sshd folder (hook/own_sshd.sshd_folder, mode 700): the address and port its invites name, so that a
restart listens where the invites already sent point, and the guests it was given, so that `pairing invite`
and `pairing status` can speak of a running session without Pulumi.

Written atomically once the run's own sshd holds the port; read back as input (each field parsed again),
and believed as a running session only while a `pairing direct` holds that folder's lock.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import tempfile
from argparse import ArgumentTypeError
from dataclasses import dataclass
from pathlib import Path

from . import arg_types
from .hook.lock import HookStatus, read_state
from .hook.own_sshd import lock_path, state_base
from .hook.ports import endpoint
from .names import NamedKey, roster
from .settings import _tmux_session
from .sshkeys import InvalidKey, PublicKey, parse_public_key

FILE_NAME = "direct.json"


@dataclass(frozen=True)
class DirectRecord:
    """A `pairing direct` session: where its sshd listens and whom it lets in."""

    session: str
    tmux_socket: str | None
    address: str  # an IP address, as sshd's ListenAddress has it
    port: int
    guest_keys: tuple[PublicKey, ...] = ()  # each key's comment is its guest's name (guest_flags.named_keys)
    viewer_keys: tuple[PublicKey, ...] = ()

    @property
    def endpoint(self) -> str:
        return endpoint(self.address, self.port)

    @property
    def guests(self) -> tuple[NamedKey, ...]:
        return roster(self.guest_keys, self.viewer_keys)

    def render(self) -> str:
        return json.dumps({"session": self.session, "tmux_socket": self.tmux_socket, "address": self.address,
                           "port": self.port, "guests": [k.line for k in self.guest_keys],
                           "viewers": [k.line for k in self.viewer_keys]}, indent=1) + "\n"

    @classmethod
    def parse(cls, text: str) -> DirectRecord | None:
        """The file's fields, each checked as a flag would be; None if any is not."""
        try:
            data = json.loads(text)
            socket_path = data.get("tmux_socket")
            socket_path = None if socket_path is None else arg_types.socket_path(socket_path)
            port = data["port"]
            if type(port) is not int or not 0 < port < 65536:  # not a bool either
                return None
            return cls(_tmux_session(data["session"]), socket_path, str(ipaddress.ip_address(data["address"])), port,
                       tuple(parse_public_key(line) for line in data.get("guests", [])),
                       tuple(parse_public_key(line) for line in data.get("viewers", [])))
        except (ValueError, TypeError, KeyError, AttributeError, InvalidKey, ArgumentTypeError):
            return None


def record_path(session: str, tmux_socket: str | None, make: bool = True) -> Path:
    return lock_path(session, tmux_socket, make).with_name(FILE_NAME)


def remembered(session: str, tmux_socket: str | None) -> DirectRecord | None:
    """What the last `pairing direct` of this session wrote, if anything (and it parses)."""
    try:
        return DirectRecord.parse(record_path(session, tmux_socket, make=False).read_text())
    except (OSError, UnicodeDecodeError):
        return None


def remember(record: DirectRecord) -> None:
    """Atomically (a reader sees the old file or the new one), mode 600 in the session's private folder."""
    path = record_path(record.session, record.tmux_socket)
    fd, temp = tempfile.mkstemp(prefix=f".{FILE_NAME}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(record.render())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


@dataclass(frozen=True)
class RunningDirect:
    record: DirectRecord
    hook: HookStatus  # running, with the lock holder's pid and its record


def running() -> list[RunningDirect]:
    """Every `pairing direct` of this user running now (its folder's lock held, by a `direct` run)."""
    found = []
    for path in sorted((state_base() / "sshd").glob(f"*/{FILE_NAME}")):
        try:
            record = DirectRecord.parse(path.read_text())
        except (OSError, UnicodeDecodeError):
            continue
        if record is None or record_path(record.session, record.tmux_socket, make=False) != path:
            continue
        hook = read_state(path.with_name("authorized_keys"))
        if hook.running and (hook.record is None or hook.record.command == "direct"):
            found.append(RunningDirect(record, hook))
    return found
