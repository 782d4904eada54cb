"""Stack configuration -> validated Settings.

Every `pairing:` config key is declared once, in SETTINGS below, with its type,
default and help. Everything downstream (relay documents, resources, outputs,
`pairing up`) works from a Settings value and never reads config itself, so a
bad value is refused here, in one line, before any resource is registered.
"""

from __future__ import annotations

import getpass
import ipaddress
import json
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable, Mapping

from .instance_types import ARCHITECTURE_OF_FAMILY, instance_type as _instance_type
from .sshkeys import InvalidKey, PublicKey, parse_public_key, shorten

NAMESPACE = "pairing"
LOCAL_SSHD_KEY = Path("/etc/ssh/ssh_host_ed25519_key.pub")

# A security group takes 60 inbound rules per address family by default (Amazon VPC
# quotas: "enforced separately for IPv4 rules and IPv6 rules"); each CIDR is one rule.
RULES_PER_FAMILY = 60
AMI_ID = re.compile(r"ami-[0-9a-f]{8,17}")
# Names that go into authorized_keys commands and tmux targets: no quoting games.
SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,31}")
POSIX_USER = re.compile(r"[a-z_][a-z0-9_.-]{0,31}")
WHOLE_NUMBER = re.compile(r"-?[0-9]{1,18}")  # longer is out of every range, and int() limits digits
LINE_BREAK = re.compile(r"\r\n|\r|\n")


class ConfigError(ValueError):
    """One line naming the setting, the bad value and the fix."""


# --- value parsers: raw config value -> typed value, or ValueError(fix) ---


def _as_list(raw: Any) -> list:
    """Config lists arrive as JSON from Pulumi, or as one string from a person."""
    if isinstance(raw, str):
        text = raw.strip()
        if text.startswith("["):
            try:
                raw = json.loads(text)
            except (json.JSONDecodeError, RecursionError):
                raise ValueError("is not a valid JSON list; write it as a YAML list in the stack file") from None
        else:
            # Only real line breaks: str.splitlines() also splits at U+2028, \x85 and the like.
            return [line for line in LINE_BREAK.split(text) if line.strip()]
    if not isinstance(raw, list):
        raise ValueError("must be a list")
    return raw


def as_int(raw: Any) -> int:
    # ASCII digits only: str.isdigit() also takes "²" and "١٣٣٧".
    if isinstance(raw, bool) or not isinstance(raw, (int, str)) or not WHOLE_NUMBER.fullmatch(str(raw).strip()):
        raise ValueError(f"{shorten(raw)!r} is not a whole number")
    return int(raw)


def _keys(raw: Any) -> tuple[PublicKey, ...]:
    entries = _as_list(raw)
    keys = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, str):
            raise ValueError(f"entry {index + 1} is not a key line")
        try:
            keys.append(parse_public_key(entry))
        except InvalidKey as exc:
            prefix = f"entry {index + 1}: " if len(entries) > 1 else ""
            raise ValueError(prefix + str(exc)) from None
    return tuple(keys)


def _guest_keys(raw: Any) -> tuple[PublicKey, ...]:
    keys = _keys(raw)
    if not keys:
        raise ValueError("is empty; add at least one guest's public key (their ~/.ssh/id_ed25519.pub line)")
    return keys


def _one_key(raw: Any) -> PublicKey:
    if not isinstance(raw, str):
        raise ValueError("must be one public key line")
    try:
        return parse_public_key(raw)
    except InvalidKey as exc:
        raise ValueError(str(exc)) from None


def _cidrs(raw: Any) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    networks = []
    for entry in _as_list(raw):
        networks.append(_cidr(str(entry).strip()))
    if not networks:
        raise ValueError("is empty, so nobody could reach the relay; use your guests' addresses, or 0.0.0.0/0")
    networks = list(dict.fromkeys(networks))
    for version in (4, 6):
        count = sum(1 for n in networks if n.version == version)
        if count > RULES_PER_FAMILY:
            raise ValueError(
                f"{count} IPv{version} CIDRs, over the {RULES_PER_FAMILY} inbound rules per address family a security "
                "group takes (EC2's default quota); merge them into fewer, wider CIDRs"
            )
    return tuple(networks)


def _cidr(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    example = "write e.g. 203.0.113.7/32 or 2001:db8::/48"
    if "/" not in text:
        raise ValueError(f"{shorten(text)!r} has no prefix length; {example}")
    if "%" in text:  # Python reads fe80::%eth0/64 as a network; no security group does
        raise ValueError(f"{shorten(text)!r} names a zone (%...), which no CIDR has; {example}")
    try:
        return ipaddress.ip_network(text)
    except ValueError:
        pass
    try:
        loose = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ValueError(f"{shorten(text)!r} is not an IPv4 or IPv6 CIDR; {example}") from None
    raise ValueError(f"{text!r} has host bits set; did you mean {loose}?")


def _tunnel_port(raw: Any) -> int:
    port = as_int(raw)
    if not 1024 <= port <= 65535:
        raise ValueError(f"{port} is out of range; use an unprivileged port from 1024 to 65535, e.g. 1337")
    return port


def _relay_image(raw: Any) -> str | None:
    if raw is None:
        return None
    if not isinstance(raw, str) or not AMI_ID.fullmatch(raw.strip()):
        raise ValueError(f"{shorten(raw)!r} is not an AMI id such as ami-0123456789abcdef0")
    return raw.strip()


def _minutes(limit: int, limit_text: str) -> Callable[[Any], int]:
    def parse(raw: Any) -> int:
        minutes = as_int(raw)
        if not 1 <= minutes <= limit:
            raise ValueError(f"{minutes} is out of range; use 1 to {limit} minutes ({limit_text})")
        return minutes
    return parse


_ttl_minutes, _max_ttl_minutes = _minutes(1440, "24 hours"), _minutes(7 * 1440, "7 days")


def _host_user(raw: Any) -> str:
    if not isinstance(raw, str) or not POSIX_USER.fullmatch(raw):
        raise ValueError(f"{shorten(raw)!r} is not a login name; use the host account's name, e.g. alice")
    return raw


def _tmux_session(raw: Any) -> str:
    if not isinstance(raw, str) or not SAFE_NAME.fullmatch(raw):
        raise ValueError(f"{shorten(raw)!r} is not usable as a session name; use letters, digits, - and _ only")
    return raw


def _local_sshd_key() -> str | None:
    """The key of `pairing host`'s own sshd (made the first time, under the data folder), which guests
    pin for the second hop. (`pairing up --target` sets the system sshd's, system_sshd_key().)"""
    from .backend import data_dir
    from .hook.sshd import SshdError, host_key  # late: the hook's package imports the settings

    try:
        return host_key(data_dir()).line
    except (SshdError, OSError):
        return None


def system_sshd_key() -> str | None:
    """The system sshd's key, for `--target`: what guests pin when the system's sshd serves them."""
    try:
        return LOCAL_SSHD_KEY.read_text().strip()
    except OSError:
        return None


def _sshd_key(raw: Any) -> PublicKey:
    if raw is None:
        raise ValueError(
            "is not set and the key of pairing's own sshd could not be made or read; run `pairing sshd-key` to see "
            "why, or set it to your sshd's host key line (ssh-keyscan -t ed25519 localhost)"
        )
    return _one_key(raw)


@dataclass(frozen=True)
class Setting:
    key: str
    parse: Callable[[Any], Any]
    default: Callable[[], Any] | None  # None: required
    help: str


# The one place each config key, its type and its default are defined.
SETTINGS: tuple[Setting, ...] = (
    Setting("guestKeys", _guest_keys, None, "guests who may type: OpenSSH public key lines, at least one"),
    Setting("viewerKeys", _keys, lambda: [], "guests who may only watch: OpenSSH public key lines"),
    Setting("hostPublicKey", _one_key, None, "the host's public key: the reverse tunnel's login (and a guest's, for its self-test)"),
    Setting("allowedCidrs", _cidrs, lambda: ["0.0.0.0/0"], "IPv4/IPv6 CIDRs that may reach the relay's port 22"),
    Setting("tunnelPort", _tunnel_port, lambda: 1337, "the reverse tunnel's port on the relay (1024-65535)"),
    Setting("instanceType", _instance_type, lambda: "t3.micro", "EC2 instance type; t4g.* runs on arm64"),
    Setting("ttlMinutes", _ttl_minutes, lambda: 240,
            "the relay terminates itself this many minutes after boot (pairing extend moves it)"),
    Setting("maxTtlMinutes", _max_ttl_minutes, lambda: 1440,
            "the latest end `pairing extend` may move the relay's to, in minutes after boot (at least ttlMinutes)"),
    Setting("hostUser", _host_user, getpass.getuser, "the host account guests land in"),
    Setting("tmuxSession", _tmux_session, lambda: "pair", "the host's tmux session guests attach to"),
    Setting("hostSshdKey", _sshd_key, _local_sshd_key, "the host sshd's host key, pinned by guests (default: pairing's own, `pairing sshd-key`)"),
    Setting("relayImage", _relay_image, lambda: None,
            "an AMI id to boot instead of the newest Debian 13 found on the first deploy (pin, or opt into a new one)"),
)


@dataclass(frozen=True)
class Settings:
    guest_keys: tuple[PublicKey, ...]
    viewer_keys: tuple[PublicKey, ...]
    host_public_key: PublicKey
    allowed_cidrs: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    tunnel_port: int
    instance_type: str
    ttl_minutes: int
    max_ttl_minutes: int
    host_user: str
    tmux_session: str
    host_sshd_key: PublicKey
    relay_image: str | None = None

    @property
    def architecture(self) -> str:
        return ARCHITECTURE_OF_FAMILY[self.instance_type.split(".")[0]]


def _field_name(key: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", key).lower()


assert [_field_name(s.key) for s in SETTINGS] == [f.name for f in fields(Settings)], "SETTINGS and Settings disagree"


SETTING = {setting.key: setting for setting in SETTINGS}


def parse_setting(key: str, raw: Any) -> Any:
    """One setting's value, checked by the same parser config goes through (ValueError: the fix)."""
    return SETTING[key].parse(raw)


def settings_from(raw: Mapping[str, Any]) -> Settings:
    """Validate raw config values (key -> str, list or int; absent = default)."""
    unknown = sorted(set(raw) - {s.key for s in SETTINGS})
    if unknown:
        known = ", ".join(s.key for s in SETTINGS)
        name = unknown[0] if re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", str(unknown[0])) else repr(shorten(unknown[0]))
        raise ConfigError(f"{NAMESPACE}:{name}: unknown setting; the settings are: {known}")
    values = {}
    for setting in SETTINGS:
        name = f"{NAMESPACE}:{setting.key}"
        if raw.get(setting.key) is None:
            if setting.default is None:
                raise ConfigError(f"{name}: missing; set it: pulumi config set {name} ... ({setting.help})")
            value = setting.default()
        else:
            value = raw[setting.key]
        try:
            values[_field_name(setting.key)] = setting.parse(value)
        except ValueError as exc:
            raise ConfigError(f"{name}: {exc}") from None
    refuse_duplicate_keys(values["guest_keys"], values["viewer_keys"], values["host_public_key"], NAMESPACE + ":")
    if values["max_ttl_minutes"] < values["ttl_minutes"]:
        raise ConfigError(f"{NAMESPACE}:maxTtlMinutes: {values['max_ttl_minutes']} is under {NAMESPACE}:ttlMinutes "
                          f"({values['ttl_minutes']}); the latest end cannot come before the end: raise it")
    return Settings(**values)


def refuse_duplicate_keys(guests: tuple[PublicKey, ...], viewers: tuple[PublicKey, ...], host: PublicKey,
                          prefix: str) -> None:
    """One key, one role: a key listed twice would get two sets of rights (prefix: how the names are shown)."""
    seen: dict[str, str] = {}
    roles = [("guestKeys", k) for k in guests] + [("viewerKeys", k) for k in viewers] + [("hostPublicKey", host)]
    for setting, key in roles:
        if key.blob in seen:
            where = "twice" if seen[key.blob] == setting else f"also in {prefix}{seen[key.blob]}"
            raise ConfigError(f"{prefix}{setting}: {key.short} is listed {where}; give each key one role only")
        seen[key.blob] = setting


