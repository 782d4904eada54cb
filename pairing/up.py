"""`pairing up` and `pairing down`: the whole session in one command each.

Planning (flags -> keys -> validated stack config) is plain code with no
Pulumi in it, so a bad flag stops everything before any cloud call. Doing
(create/select the stack, set its config, update, destroy) goes through
Pulumi's Automation API over this very project.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from . import backend as backends
from .authorized_keys import AuthorizedKeysFile
from .doctor import aws_profile_config, check_pulumi, report, run_checks
from .hook import HostOptions, PreflightError, SingleHook, fido_refusal, lock_path, run, system_sshd
from .invite import write_invite
from .keysources import KeySourceError, keys_from, keys_from_all
from .outputs import OutputsError, StackOutputs
from .stack_cli import PROJECT_DIR
from .settings import LOCAL_SSHD_KEY, NAMESPACE, ConfigError, Settings, parse_setting, settings_from, system_sshd_key
from .sshkeys import is_fido, shorten

STACK_PREFIX = "pair"
# What `pairing up` cannot do without; a missing OpenSSH 8.5 only matters to guests.
REQUIRED_CHECKS = {"python", "pulumi", "aws credentials", "sshd", "tmux", "identity"}


def default_stack(user: str | None = None, host: str | None = None) -> str:
    """The stack `pairing up` and `down` use unless told: one per host user and machine, so
    teammates sharing a backend (S3, Pulumi Cloud) never update each other's relay."""
    def part(text: str) -> str:
        return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "x"

    return "-".join([STACK_PREFIX, part(user or getpass.getuser()), part((host or socket.gethostname()).split(".")[0])])


def up_arguments(say: Callable[[str], None]) -> dict:
    """What `pairing up` asks of the Automation API's Stack.up.

    refresh: the relay ends itself after its TTL, behind Pulumi's back; without a refresh the
    next `pairing up` would take the dead relay's outputs (or fail reading an instance EC2
    has forgotten). Refreshed, it is replaced; a living relay with unchanged settings is not.
    """
    return {"refresh": True, "on_output": say}


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


def stack_config(args, home: Path, environ: dict[str, str]) -> dict[str, str]:
    """Flags -> the stack's config, in the form `pulumi config` keeps it. Every problem is found, not only the
    first: UpError's text is one line each, naming the flag as typed and the fix."""
    problems: list[str] = []
    if not args.guest:
        problems.append("no --guest: give at least one guest: --guest gh:USER, --guest ~/their_key.pub "
                        "or --guest 'ssh-ed25519 AAAA...'")
    host_key = args.host_key or default_host_key(home)
    if host_key is None:
        problems.append(no_host_key(home))
    found: dict[str, list] = {}
    for key, flag, sources in (("guestKeys", "--guest", args.guest or []), ("viewerKeys", "--viewer", args.viewer or []),
                               ("hostPublicKey", "--host-key", [str(host_key)] if host_key else [])):
        try:
            found[key] = keys_from(sources[0]) if key == "hostPublicKey" and sources else keys_from_all(sources)
        except KeySourceError as exc:
            problems.append(f"{flag} {exc}")
    raw: dict[str, object] = {}
    if "guestKeys" in found and found["guestKeys"]:
        raw["guestKeys"] = [k.line for k in found["guestKeys"]]
    if "viewerKeys" in found:
        raw["viewerKeys"] = [k.line for k in found["viewerKeys"]]
    if found.get("hostPublicKey"):
        raw["hostPublicKey"] = found["hostPublicKey"][0].line
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
    elif not AWS_REGION_NAME.fullmatch(region):
        problems.append(f"{where}: {shorten(region)!r} is not an AWS region name; use e.g. eu-central-1")
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


# --- doing, through the Automation API -----------------------------------


def require_pulumi() -> None:
    check = check_pulumi()
    if not check.ok:
        raise UpError(f"{check.detail}; {check.fix} (pairing doctor checks everything)")


def workspace_options(backend: backends.Backend) -> dict:
    """The Automation API workspace's settings for this backend (LocalWorkspace and its Options take the same)."""
    return {"env_vars": backend.env,
            "secrets_provider": "passphrase" if "PULUMI_CONFIG_PASSPHRASE_FILE" in backend.env else None}


def open_stack(name: str, backend: backends.Backend, create: bool):
    from pulumi import automation as auto

    backends.prepare(backend)
    options = auto.LocalWorkspaceOptions(**workspace_options(backend))
    try:
        if create:
            return auto.create_or_select_stack(stack_name=name, work_dir=str(PROJECT_DIR), opts=options)
        return auto.select_stack(stack_name=name, work_dir=str(PROJECT_DIR), opts=options)
    except auto.StackNotFoundError:
        raise UpError(f"there is no stack {name!r} in {backend.describe()}; nothing to do") from None


def deploy(up_plan: UpPlan, say: Callable[[str], None] = print) -> StackOutputs:
    """Create or update the relay; a second run with the same settings changes nothing."""
    from pulumi import automation as auto

    require_pulumi()
    stack = open_stack(up_plan.stack, up_plan.backend, create=True)
    say(f"stack {up_plan.stack!r} in {up_plan.backend.describe()}")
    stack.set_all_config({key: auto.ConfigValue(value=value) for key, value in up_plan.config.items()})
    stack.up(**up_arguments(say))
    outputs = {name: output.value for name, output in stack.outputs().items()}
    try:
        return StackOutputs.from_json(outputs, source=f"stack {up_plan.stack}")
    except OutputsError as exc:
        raise UpError(str(exc)) from None


def destroy(stack_name: str, backend: backends.Backend, authorized_keys: Path | None,
            say: Callable[[str], None] = print) -> None:
    """authorized_keys None: the hook ran its own sshd and left nothing in ~/.ssh to clean."""
    # The guests' keys first: they need no Pulumi, and must not outlive a failed destroy.
    if authorized_keys is not None:
        remove_guest_keys(authorized_keys, say)
    require_pulumi()
    stack = open_stack(stack_name, backend, create=False)
    stack.destroy(on_output=say)
    say(f"destroyed the relay of stack {stack_name!r}: instance, its network, security group and host key")


def remove_guest_keys(authorized_keys: Path, say: Callable[[str], None] = print) -> None:
    """The block a crashed `pairing host` left behind; never the block of one still running."""
    if not Path(os.path.realpath(authorized_keys)).parent.is_dir():
        say(f"no guest keys were left in {authorized_keys}")
        return
    try:
        lock = SingleHook(authorized_keys, command="down")  # held while we edit, so no hook starts meanwhile
    except PreflightError:
        say(f"left the guest keys in {authorized_keys}: a `pairing host` is still running (it removes them when it stops)")
        return
    try:
        if AuthorizedKeysFile(authorized_keys).remove():
            say(f"removed the guest keys block that was left in {authorized_keys}")
        else:
            say(f"no guest keys were left in {authorized_keys}")
    finally:
        lock.release()


def ask_to_destroy(keep: bool) -> bool:
    """After the hook stops: destroy unless --keep; on a terminal, ask (default yes)."""
    if keep:
        return False
    if not sys.stdin.isatty():
        return True
    try:
        answer = input("Destroy the relay now? [Y/n] ").strip().lower()
    except EOFError:
        return True
    return answer in ("", "y", "yes")


def cmd_up(args) -> int:
    # First of all: a session already running for this authorized_keys (its relay, its invite)
    # is left alone. The lock is held from here to the hook's end, so no second run slips in.
    # Without --target, the lock is on the own sshd's folder for the tmux session (settings' default: pair).
    args.target, args.authorized_keys = system_sshd(args.target, args.authorized_keys)
    own = args.target is None
    lock = SingleHook(lock_path(args.session or "pair", args.tmux_socket) if own else args.authorized_keys, command="up")
    try:
        if not own:
            AuthorizedKeysFile(args.authorized_keys).check_owner()
        # Flags, keys and settings first, all of them: a user learns of a bad flag before installing anything.
        config = stack_config(args, Path.home(), dict(os.environ))
        identity = args.identity or (args.host_key.with_suffix("") if args.host_key else None)
        checks = run_checks(args.target, identity, sshd_key_given=bool(args.sshd_key))
        print(report(checks))
        failed = [c for c in checks if not c.ok and c.name in REQUIRED_CHECKS]
        if failed:
            names = ", ".join(dict.fromkeys(c.name for c in failed))
            raise UpError(f"stopped before creating anything: {len(failed)} required "
                          f"check{'s' if len(failed) > 1 else ''} failed ({names}); fix each FAIL line above")
        up_plan = plan(args, config=config)
    except BaseException:
        lock.release()
        raise
    # From here a relay may exist: whatever ends the run (Ctrl-C during the update, a
    # refused preflight, the hook's own end), the host is asked what to do with it.
    try:
        outputs = deploy(up_plan)
        print(write_invite(outputs, args.invite))
        return run(HostOptions(outputs, identity, args.target, args.authorized_keys, args.tmux_socket, args.tunnel,
                               invite=args.invite), lock=lock)
    finally:
        lock.release()  # before destroy, which takes it to clean up the guests' keys
        if ask_to_destroy(args.keep):
            destroy(args.stack, up_plan.backend, None if own else args.authorized_keys)
        else:
            print(f"the relay keeps running until its TTL; end it with: pairing down --stack {args.stack}")


def cmd_down(args) -> int:
    destroy(args.stack, backends.choose(args.backend), args.authorized_keys)
    return 0
