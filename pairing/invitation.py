"""What the invite tells the guest in words: the comment lines at the top of their `pairing.conf`.

Pure and small: validated facts in (names from pairing.names.roster, the host's account, a checked
machine name, fingerprints, the end time), lines of text out. guest_documents renders each one as a
comment, through printable(), so none can become a second ssh_config line.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from .names import NamedKey
from .shared_ports import SharedPort, another_with_ssh, header

LEAVE = "To leave: detach with C-b d (Ctrl-b, then d), or close the terminal; the host's session goes on."


@dataclass(frozen=True)
class Invitation:
    host_user: str  # the account the guest lands as (a checked setting)
    machine: str | None  # the host's name, checked as a host name, or None when it is not one
    guests: tuple[NamedKey, ...]  # everyone invited, from names.roster
    relay: str | None  # what the guest's ssh reaches first: "relay 203.0.113.10"; None: `pairing direct`
    relay_fingerprint: str | None
    host_fingerprint: str
    expires_at: datetime | None  # aware, UTC; None: no relay, it lasts while `pairing direct` runs
    file_name: str  # what the guest gives -F: this file's name
    known_hosts: str | None = None  # the .known_hosts file this config names, if any
    guest: NamedKey | None = None  # `pairing invite --for NAME`: the one guest this is for
    shared: tuple[SharedPort, ...] = ()  # the host's ports this invite opens (its LocalForward lines)
    shared_viewers: bool = False  # whether viewers may open them too


def _role(typing: bool) -> str:
    return "may type" if typing else "may only watch (read-only)"


def _who(guests: tuple[NamedKey, ...], typing: bool) -> str:
    names = [g.name for g in guests if g.typing == typing]
    return ", ".join(names) if names else "nobody"


def notes(invitation: Invitation) -> list[str]:
    """The header, one line per entry, without the leading '# '."""
    i = invitation
    where = f"{i.host_user}'s tmux session" + (f" on {i.machine}" if i.machine else "")
    if i.guest is None:
        whom = [f"Who may type: {_who(i.guests, True)}. Who may only watch: {_who(i.guests, False)}."]
    else:
        whom = [f"For {i.guest.name}, who {_role(i.guest.typing)}; your key: {i.guest.key.fingerprint}",
                "    (see yours with: ssh-keygen -lf YOUR_KEY.pub)"]
    files = ([f"It names {i.known_hosts}, relative to the folder you run ssh in: keep both files there."]
             if i.known_hosts else ["Needs OpenSSH 8.5+ (Linux, macOS). On Windows or older: ask your host for "
                                    "`pairing invite --known-hosts`."])
    if i.relay is None:  # pairing direct: one hop, straight to the host's sshd
        ends = ["It works while your host's `pairing direct` runs; there is no relay."]
        pins = ["The host's key is pinned below; to double-check with your host by voice or chat:"]
        elsewhere = ["names (this file reads it last; its own lines above win). A key elsewhere: add -i PATH",
                     f"(ssh -F {i.file_name} -i PATH pairing), or ssh-add PATH first."]
    else:
        ends = [f"The relay, and this invitation, end at {i.expires_at:%Y-%m-%dT%H:%M:%SZ} (UTC)."]
        pins = ["Both hops are pinned below; to double-check with your host by voice or chat:",
                f"    {i.relay}: {i.relay_fingerprint}"]
        elsewhere = ["names (this file reads it last; its own lines above win). A key elsewhere: ssh-add PATH first, or",
                     "add `Host pairing pairing-relay` + `IdentityFile PATH` to ~/.ssh/config (ssh -i reaches only the",
                     "second hop, not the relay)."]
    return [
        f"pairing: an invitation to join {where}.",
        f"Connect, in the folder holding this file:  ssh -F {i.file_name} pairing",
        *files,
        *whom,
        *ends,
        *pins,
        f"    host sshd: {i.host_fingerprint}",
        LEAVE,
        *header(i.shared, i.shared_viewers, another_with_ssh(i.shared, i.file_name)),
        "Your key: ssh offers the usual ones: ~/.ssh/id_*, your ssh-agent, and what your own ~/.ssh/config",
        *elsewhere,
    ]
