"""The stack outputs: the contract between `pulumi up` and everything after it.

The Pulumi program exports exactly OUTPUT_NAMES (render_outputs). The hook and the
guest invite read them back (stack_cli: `pulumi stack output --json --show-secrets`, or a file
holding that JSON, perhaps from a shared state backend or someone else's hands) through
StackOutputs.from_json, which treats them as input: every fact is checked by the same
parsers as the settings and typed once; the derived documents (guestSshConfig,
guestCommand, relayHostKeyFingerprint) are never read back, but rendered again.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, fields
from datetime import datetime, timedelta, timezone
from typing import Any

from . import guest_documents
from .guest_documents import known_hosts_pattern
from .names import GuestNameError, roster
from .settings import ConfigError, Settings, as_int, parse_setting, refuse_duplicate_keys
from .sshkeys import InvalidKey, PublicKey, parse_public_key, shorten

RELAY_SSH_PORT = 22
# What the program exports: the facts below, plus documents derived from them for people who
# use Pulumi alone. The hook reads the facts only and renders its own documents.
OUTPUT_NAMES = (
    "relayAddress", "relayPort", "tunnelPort", "relayKnownHosts", "relayHostKeyFingerprint", "guestSshConfig",
    "guestCommand", "hostUser", "tmuxSession", "hostSshdKey", "hostPublicKey", "guestKeys", "viewerKeys",
    "expiresAt", "instanceId", "relayIpv6Address",
)
# Outputs an older stack (or an --outputs file from one) may lack: absent or null reads as None.
OPTIONAL = frozenset({"relayIpv6Address"})
REREAD = "read them again (pulumi stack output --json --show-secrets), or correct the --outputs file"
# A DNS name as ssh takes it: letters, digits and inner hyphens per label. Never a leading
# "-" (an ssh option) and nothing ssh_config or a shell would read as syntax.
HOST_NAME = re.compile(r"(?=.{1,253}\.?$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                       r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?")
INSTANCE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")


class OutputsError(ValueError):
    """Outputs that cannot be used; the message says which and what to do."""


@dataclass(frozen=True)
class StackOutputs:
    """The stack outputs as the hook uses them: each one checked, typed, and read nowhere else."""

    relay_address: str
    relay_port: int
    tunnel_port: int
    relay_host_keys: tuple[PublicKey, ...]
    host_user: str
    tmux_session: str
    host_sshd_key: PublicKey
    host_public_key: PublicKey
    guest_keys: tuple[PublicKey, ...]
    viewer_keys: tuple[PublicKey, ...]
    expires_at: datetime  # aware, UTC
    instance_id: str
    relay_ipv6_address: str | None = None  # also relay_address when allowedCidrs are IPv6 only

    @classmethod
    def from_json(cls, data: Any, source: str = "the stack outputs") -> "StackOutputs":
        """Validate what `pulumi stack output --json` gave (or a file holding it), field by field."""
        if not isinstance(data, dict):
            raise OutputsError(f"{source} holds a JSON {_json_kind(data)}, not the object of "
                               f"`pulumi stack output --json --show-secrets`; {REREAD}")
        missing = [name for name in READERS if name not in OPTIONAL and data.get(name) in (None, "")]
        if missing:
            raise OutputsError(
                f"{source} lack {', '.join(missing)}; run `pulumi up` to completion first "
                "(or give --outputs a file from `pulumi stack output --json --show-secrets`)"
            )
        values = {}
        for name, (field_name, read) in READERS.items():
            try:
                values[field_name] = read(data.get(name), values)
            except ValueError as exc:
                raise OutputsError(f"{source}: output {name}: {exc}; {REREAD}") from None
        try:
            refuse_duplicate_keys(values["guest_keys"], values["viewer_keys"], values["host_public_key"], "output ")
        except ConfigError as exc:
            raise OutputsError(f"{source}: {exc}; {REREAD}") from None
        try:  # each guest's name is its key's comment: one name, one key (names.roster)
            roster(values["guest_keys"], values["viewer_keys"])
        except GuestNameError as exc:
            raise OutputsError(f"{source}: output guestKeys, viewerKeys: {exc}") from None
        return cls(**values)

    @property
    def relay_fingerprint(self) -> str:
        return self.relay_host_keys[0].fingerprint

    @property
    def guest_route(self) -> guest_documents.GuestRoute:
        """The facts the guest's documents are made from."""
        return guest_documents.GuestRoute(
            relay_address=self.relay_address, relay_port=self.relay_port, relay_host_key=self.relay_host_keys[0],
            tunnel_port=self.tunnel_port, host_user=self.host_user, host_sshd_key=self.host_sshd_key,
        )


def _json_kind(data: Any) -> str:
    return {list: "list", str: "string", bool: "boolean", type(None): "null"}.get(type(data), "number")


# --- one reader per output: raw JSON value (and the fields read so far) -> typed value, or ValueError(fix) ---


def _setting(key: str):
    """The settings' own parser for an output that is a setting read back."""
    return lambda raw, _values: parse_setting(key, raw)


def _relay_address(raw: Any, _values: dict) -> str:
    text = raw if isinstance(raw, str) else ""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        if HOST_NAME.fullmatch(text):
            return text
        raise ValueError(f"{shorten(raw)!r} is neither an IP address nor a host name") from None
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id:
        raise ValueError(f"{text!r} has a zone; give the relay's global address")
    if address.is_unspecified or address.is_multicast:
        raise ValueError(f"{text!r} is not the address of one machine")
    return str(address)


def _relay_ipv6_address(raw: Any, _values: dict) -> str | None:
    if raw in (None, ""):
        return None
    try:
        address = ipaddress.IPv6Address(raw if isinstance(raw, str) else "")
    except ValueError:
        raise ValueError(f"{shorten(raw)!r} is not an IPv6 address") from None
    if address.scope_id or address.is_unspecified or address.is_multicast or address.is_loopback:
        raise ValueError(f"{raw!r} is not the global address of one machine")
    return str(address)


def _port(raw: Any, _values: dict) -> int:
    port = as_int(raw)
    if not 1 <= port <= 65535:
        raise ValueError(f"{port} is out of range; a TCP port is 1 to 65535")
    return port


def _relay_known_hosts(raw: Any, values: dict) -> tuple[PublicKey, ...]:
    """Lines `PATTERN KEY` for the relay's address and port only; the keys are what matters."""
    if not isinstance(raw, str):
        raise ValueError("is not known_hosts text")
    expected = known_hosts_pattern(values["relay_address"], values["relay_port"])
    keys = []
    for line in raw.split("\n"):
        if not line.strip() or line.startswith("#"):
            continue
        pattern, _, key = line.strip().partition(" ")
        if pattern != expected:
            raise ValueError(f"names {shorten(pattern)!r}, not the relay ({expected})")
        try:
            keys.append(parse_public_key(key))
        except InvalidKey as exc:
            raise ValueError(str(exc)) from None
    if not keys:
        raise ValueError("holds no key")
    return tuple(keys)


def _expires_at(raw: Any, _values: dict) -> datetime:
    try:
        when = datetime.fromisoformat(raw.replace("Z", "+00:00")) if isinstance(raw, str) else None
    except ValueError:
        when = None
    if when is None:
        raise ValueError(f"{shorten(raw)!r} is not an ISO 8601 time such as 2026-11-26T19:30:37Z")
    if when.tzinfo is None:
        raise ValueError(f"{raw!r} has no time zone; write it in UTC, e.g. {raw}Z")
    return when.astimezone(timezone.utc)


def _instance_id(raw: Any, _values: dict) -> str:
    if not isinstance(raw, str) or not INSTANCE_ID.fullmatch(raw):
        raise ValueError(f"{shorten(raw)!r} is not an instance id such as i-0123456789abcdef0")
    return raw


# Output name -> (field, reader), in the order they are read (the known_hosts reader needs the address).
READERS = {
    "relayAddress": ("relay_address", _relay_address),
    "relayPort": ("relay_port", _port),
    "tunnelPort": ("tunnel_port", _setting("tunnelPort")),
    "relayKnownHosts": ("relay_host_keys", _relay_known_hosts),
    "hostUser": ("host_user", _setting("hostUser")),
    "tmuxSession": ("tmux_session", _setting("tmuxSession")),
    "hostSshdKey": ("host_sshd_key", _setting("hostSshdKey")),
    "hostPublicKey": ("host_public_key", _setting("hostPublicKey")),
    "guestKeys": ("guest_keys", _setting("guestKeys")),
    "viewerKeys": ("viewer_keys", _setting("viewerKeys")),
    "expiresAt": ("expires_at", _expires_at),
    "instanceId": ("instance_id", _instance_id),
    "relayIpv6Address": ("relay_ipv6_address", _relay_ipv6_address),
}
assert [field for field, _ in READERS.values()] == [f.name for f in fields(StackOutputs)], "READERS and StackOutputs disagree"


def expires_at(launch_time: str, ttl_minutes: int) -> str:
    """When the relay ends itself: its launch plus the TTL, ISO 8601 UTC.

    The relay counts from its first boot, a few seconds after launch, so this
    is on the safe side by those seconds.
    """
    launched = datetime.fromisoformat(launch_time.replace("Z", "+00:00")).astimezone(timezone.utc)
    return (launched + timedelta(minutes=ttl_minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")


def render_outputs(
    settings: Settings, *, relay_address: str, relay_host_key: PublicKey, instance_id: str, launch_time: str,
    relay_port: int = RELAY_SSH_PORT, relay_ipv6_address: str | None = None,
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
        "relayKnownHosts": guest_documents.known_hosts_line(known_hosts_pattern(relay_address, relay_port), relay_host_key) + "\n",
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
        "relayIpv6Address": relay_ipv6_address,
    }
    assert tuple(outputs) == OUTPUT_NAMES
    return outputs
