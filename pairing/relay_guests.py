"""The relay's live guest list and end, as the host sets them (the relay's side: cloud-init/pairing-guests).

The `tunnel` account's one command on the relay is pairing-guests (its forced command), with two verbs:
`guests` (the list on stdin) and `end [SECONDS]`. This module runs them over an SSH connection that logs in
with the host's identity and checks the relay's pinned key, as the tunnel does (tunnel/pinning.py). What
the relay says back is input: its end is parsed here into times, its refusals made printable.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Sequence

import paramiko

from .names import NamedKey
from .sshkeys import PublicKey
from .sshkeys import shorten
from .text import unprintable
from .tunnel.pinning import connect
from .tunnel.spec import Endpoint, HostKeyMismatch, reason

HOST_NAME = "pairing-host"  # the host's own key in the list (the hook's self-test logs in as a guest)
ANSWER_LIMIT = 4096
TIMEOUT = 15.0
_END = re.compile(r"([0-9]{1,12}) ([0-9]{1,12})\n?")


class RelayError(RuntimeError):
    """The relay could not be told (unreachable, refused): one line saying why."""


class OldRelay(RelayError):
    """A relay made before the live list (its guests are in its user data): it has no pairing-guests."""


@dataclass(frozen=True)
class RelayEnd:
    ends: dt.datetime  # when the relay powers itself off, UTC
    latest: dt.datetime  # the latest `end` may move it to (maxTtlMinutes after boot)


def guest_list(guests: Sequence[NamedKey], host_key: PublicKey) -> bytes:
    """One bare key line a guest (its name as the comment, which sshd's log shows), the host's key last."""
    lines = [f"{g.key.kind} {g.key.blob} {g.name}" for g in guests] + [f"{host_key.kind} {host_key.blob} {HOST_NAME}"]
    return "".join(line + "\n" for line in lines).encode()


class RelayGuests:
    """pairing-guests on one relay, as its tunnel account."""

    def __init__(self, endpoint: Endpoint, identity: paramiko.PKey) -> None:
        self.endpoint, self.identity = endpoint, identity

    def set_guests(self, guests: Sequence[NamedKey], host_key: PublicKey) -> int:
        """Replace the relay's guest list; returns how many keys it now holds."""
        answer = self._run("guests", guest_list(guests, host_key))
        count = answer.split(" ", 1)[0]
        if not count.isdigit():
            raise RelayError(f"the relay answered the guest list with {_shown(answer)!r}")
        return int(count)

    def end(self) -> RelayEnd:
        return _parse_end(self._run("end"))

    def move_end(self, when: dt.datetime) -> RelayEnd:
        """Ask for `when`; the relay caps it at its latest end and says where it is."""
        return _parse_end(self._run(f"end {int(when.timestamp())}"))

    def _run(self, command: str, stdin: bytes = b"") -> str:
        where = f"the relay at {self.endpoint.address}:{self.endpoint.port}"
        try:
            transport = connect(self.endpoint, self.identity)
        except HostKeyMismatch:
            raise
        except paramiko.AuthenticationException:
            raise RelayError(f"{where} refused the host's key as {self.endpoint.user}") from None
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise RelayError(f"cannot reach {where} ({reason(exc)})") from None
        try:
            try:
                channel = transport.open_session(timeout=TIMEOUT)
            except paramiko.ChannelException:
                # MaxSessions 0: the tunnel account of a relay from before the live list.
                raise OldRelay(f"{where} takes no guest list (made by an older pairing; its guests are the "
                               "ones it was made with): run `pulumi up` to replace it") from None
            channel.settimeout(TIMEOUT)
            channel.exec_command(command)
            channel.sendall(stdin)
            channel.shutdown_write()
            out, err = _read_all(channel.makefile("rb")), _read_all(channel.makefile_stderr("rb"))
            status = channel.recv_exit_status()
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise RelayError(f"{where} stopped answering ({reason(exc)})") from None
        finally:
            transport.close()
        said = _shown(err.decode(errors="replace").strip().splitlines()[-1] if err.strip() else "")
        if status != 0:
            if "pairing relay:" not in said:  # nologin's "This account is currently not available."
                raise OldRelay(f"{where} runs no pairing-guests ({said or f'exit {status}'}): made by an older "
                               "pairing; run `pulumi up` to replace it")
            raise RelayError(f"{where} refused {command.split()[0]!r}: {said.removeprefix('pairing relay: refused: ')}")
        return out.decode(errors="replace").strip()


def _read_all(stream) -> bytes:
    data = stream.read(ANSWER_LIMIT + 1)
    if len(data) > ANSWER_LIMIT:
        raise RelayError("the relay's answer is too long")
    return data


def _parse_end(answer: str) -> RelayEnd:
    match = _END.fullmatch(answer)
    if not match:
        raise RelayError(f"the relay answered `end` with {_shown(answer)!r}, not two times")
    ends, latest = (dt.datetime.fromtimestamp(int(n), dt.timezone.utc) for n in match.groups())
    return RelayEnd(ends, latest)


def _shown(text: str) -> str:
    """What the relay said, fit for one line of a terminal: its control characters made '?'."""
    return shorten("".join("?" if unprintable(c) else c for c in text), 160)
