"""`pairing up`'s plan: flags -> keys -> validated stack config, with no Pulumi in it.

Every flag is checked here, all of them, each problem said as the flag was typed, so a bad
flag stops `pairing up` before the machine is checked and before anything is touched. The
doing (the Automation API) is pairing/up.py's.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from . import backend as backends
from .doctor import aws_profile_config
from .hook import fido_refusal
from .guest_flags import named_keys
from .keysources import KeySourceError, keys_from
from .regions import AUTO, NoRegionAnswered, known_regions, nearest
from .settings import LOCAL_SSHD_KEY, NAMESPACE, ConfigError, Settings, parse_setting, settings_from, system_sshd_key
from .sshkeys import is_fido, shorten
from .text import did_you_mean

STACK_PREFIX = "pair"


def default_stack(user: str | None = None, host: str | None = None) -> str:
    """The stack `pairing up` and `down` use unless told: one per host user and machine, so
    teammates sharing a backend (S3, Pulumi Cloud) never update each other's relay."""
    def part(text: str) -> str:
        return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "x"

    return "-".join([STACK_PREFIX, part(user or getpass.getuser()), part((host or socket.gethostname()).split(".")[0])])



class UpError(RuntimeError):
    """One line: what stopped `pairing up`/`down` and the fix. Nothing was created or changed."""


@dataclass(frozen=True)
class UpPlan:
    stack: str
    backend: backends.Backend
    config: dict[str, str]  # full config keys -> values as Pulumi stores them (lists as JSON)
    settings: Settings


def default_host_key(home: Path) -> Path | None:
    for name in ("id_ed25519", "id_ecdsa", "id_rsa"):
        if (home / ".ssh" / f"{name}.pub").exists():
            return home / ".ssh" / f"{name}.pub"
    return None


def no_host_key(home: Path) -> str:
    """The fix when ~/.ssh has no .pub: a private key without it gets its public half back (a new key would
    offer to overwrite it), else a new key."""
    for name in ("id_ed25519", "id_ecdsa", "id_rsa"):
        if (home / ".ssh" / name).is_file():
            key = home / ".ssh" / name
            return f"no public key for {key}; write it: ssh-keygen -y -f {key} > {key}.pub, or pass --host-key FILE.pub"
    return f"no public key in {home / '.ssh'}; make one (ssh-keygen -t ed25519) or pass --host-key FILE.pub"


# Each setting a flag of `pairing up` sets: errors name the flag the user typed, not the config key.
FLAG_OF = {
    "guestKeys": "--guest", "viewerKeys": "--viewer", "hostPublicKey": "--host-key", "allowedCidrs": "--allow",
    "ttlMinutes": "--ttl", "tunnelPort": "--port", "instanceType": "--instance-type", "tmuxSession": "--session",
    "hostSshdKey": "--sshd-key",
}
AWS_REGION_NAME = re.compile(r"[a-z]{2}(-[a-z0-9]+){1,3}")  # eu-central-1, us-gov-west-1, ap-southeast-5


def stack_config(args, home: Path, environ: dict[str, str], say: Callable[[str], None] = print) -> dict[str, str]:
    """Flags -> the stack's config, in the form `pulumi config` keeps it. Every problem is found, not only the
    first: UpError's text is one line each, naming the flag as typed and the fix. `say`: --region auto's figures."""
    problems: list[str] = []
    if not args.guest:
        problems.append("no --guest: give at least one guest: --guest gh:USER, --guest ~/their_key.pub "
                        "or --guest 'ssh-ed25519 AAAA...'")
    host_key = args.host_key or default_host_key(home)
    if host_key is None:
        problems.append(no_host_key(home))
    # Each guest's key carries its name as its comment, into the config and the outputs (pairing.names).
    guests, viewers, named = named_keys(args.guest or [], args.viewer or [])
    problems += named
    raw: dict[str, object] = {"viewerKeys": [k.line for k in viewers]}
    if guests:
        raw["guestKeys"] = [k.line for k in guests]
    if host_key:
        try:
            raw["hostPublicKey"] = keys_from(str(host_key), guest=False)[0].line
        except KeySourceError as exc:
            problems.append(f"--host-key {host_key}: {exc}")
    optional = {
        "allowedCidrs": args.allow, "ttlMinutes": args.ttl, "tunnelPort": args.port,
        "instanceType": args.instance_type, "tmuxSession": args.session, "hostSshdKey": args.sshd_key,
    }
    for key, value in optional.items():
        if value is None:
            continue
        # One flag at a time through the setting's own parser, so each bad one is said (--allow: each entry).
        for typed in (value if isinstance(value, list) else [value]):
            try:
                parse_setting(key, [typed] if isinstance(value, list) else typed)
            except ValueError as exc:
                problems.append(f"{FLAG_OF[key]} {typed}: {exc}")
        raw[key] = value
    if args.sshd_key is None and getattr(args, "target", None) is not None:
        # --target: guests land on the system sshd, so they pin its key, not pairing's own (the default).
        raw["hostSshdKey"] = system_sshd_key()
        if raw["hostSshdKey"] is None:
            problems.append(f"--target: {LOCAL_SSHD_KEY} (your sshd's key, which guests pin) is not readable; "
                            "pass its key line with --sshd-key (ssh-keyscan -t ed25519 localhost)")
    config = {f"{NAMESPACE}:{key}": _config_text(value) for key, value in raw.items()}
    region, where = aws_region(args.region, environ, home)
    if region is None:
        problems.append("no AWS region: pass --region (e.g. --region eu-central-1), set AWS_REGION, "
                        "or set region in your AWS profile (aws configure set region eu-central-1)")
    elif region == AUTO and where == f"--region {AUTO}":
        if not problems:  # measured only once every other flag is good: it takes up to 3 s
            try:
                region, figures = nearest()
            except NoRegionAnswered as exc:
                problems.append(str(exc))
            else:
                say(figures)
                config["aws:region"] = region
    elif not AWS_REGION_NAME.fullmatch(region):
        problems.append(f"{where}: {shorten(region)!r} is not an AWS region name; use e.g. eu-central-1")
    elif region not in (regions := known_regions()) and regions:
        problems.append(f"{where}: {region!r} is not an AWS region{did_you_mean(region, regions)}; "
                        "use e.g. eu-central-1")
    else:
        config["aws:region"] = region
    if not problems:
        problems = _settings_problems(config, host_key)
    if problems:
        raise UpError("\n".join(problems))
    return config


def _settings_problems(config: dict[str, str], host_key: Path) -> list[str]:
    """The settings as a whole (e.g. one key given two roles), with the flags' names for the config keys.
    The own sshd's key is made on first use, a write: its stand-in here is the host's key, checked for real later."""
    view = program_view(config)
    view.setdefault("hostSshdKey", view["hostPublicKey"])
    try:
        settings = settings_from(view)
    except ConfigError as exc:
        return [re.sub(rf"{NAMESPACE}:(\w+)", lambda m: FLAG_OF.get(m[1], m[0]), str(exc))]
    if is_fido(settings.host_public_key):  # the hook would refuse it, after the deploy
        return [fido_refusal(f"--host-key {host_key}", settings.host_public_key)]
    return []


def aws_region(given: str | None, environ: dict[str, str], home: Path) -> tuple[str | None, str]:
    """--region, then AWS_REGION / AWS_DEFAULT_REGION, then the active profile's, as every AWS tool does.
    Returns the region and where it was found (for the message if it is no region name)."""
    if given:
        return given, f"--region {given}"
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        if environ.get(name):
            return environ[name], name
    profile, path, values = aws_profile_config(environ, home)
    region = values.get("region") or None
    return region, f"region in profile {profile!r} of {path}"


def _config_text(value: object) -> str:
    """Pulumi keeps config values as text: lists as JSON, numbers as digits."""
    return value if isinstance(value, str) else json.dumps(value)


def plan(args, home: Path | None = None, environ: dict[str, str] | None = None,
         config: dict[str, str] | None = None) -> UpPlan:
    """Everything `pairing up` will do, checked, before anything is done.
    config: what check_flags returned (so key pages are not fetched twice)."""
    home = home or Path.home()
    environ = dict(os.environ if environ is None else environ)
    config = config or stack_config(args, home, environ)
    try:
        settings = settings_from(program_view(config))
    except ConfigError as exc:
        raise UpError(str(exc)) from None
    return UpPlan(args.stack, backends.choose(args.backend, home, environ), config, settings)


def program_view(config: dict[str, str]) -> dict[str, str]:
    """The `pairing:` keys as the Pulumi program sees them (see program.stack_config)."""
    prefix = NAMESPACE + ":"
    return {key[len(prefix):]: value for key, value in config.items() if key.startswith(prefix)}
