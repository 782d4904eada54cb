"""`pairing up` and `pairing down`: the whole session in one command each.

Planning (flags -> keys -> validated stack config: pairing/up_plan.py) is plain code
with no Pulumi in it, so a bad flag stops everything before any cloud call. Doing
(create/select the stack, set its config, update, destroy) goes through Pulumi's
Automation API over this very project.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable

from . import backend as backends, project, warm
from .authorized_keys import AuthorizedKeysFile
from .doctor import check_pulumi, report, run_checks
from .hook import HostOptions, PreflightError, SingleHook, lock_path, reserved_ports, run, system_sshd
from .hook.recording import check_target
from .hook.tmux_server import chosen_server
from .invite import check_folder, write_invite
from .outputs import OutputsError, StackOutputs
from .settings import NAMESPACE
from .shared_ports import from_flags
from .up_plan import UpError, UpPlan, plan, stack_config

# What `pairing up` cannot do without; a missing OpenSSH 8.5 only matters to guests.
REQUIRED_CHECKS = {"python", "pulumi", "aws credentials", "sshd", "terminals", "tmux", "identity"}


def up_arguments(say: Callable[[str], None]) -> dict:
    """What `pairing up` asks of the Automation API's Stack.up.

    refresh: the relay ends itself after its TTL, behind Pulumi's back; without a refresh the
    next `pairing up` would take the dead relay's outputs (or fail reading an instance EC2
    has forgotten). Refreshed, it is replaced; a living relay with unchanged settings is not.
    """
    return {"refresh": True, "on_output": say}


# --- doing, through the Automation API -----------------------------------


def require_aws_extra() -> None:
    """Pulumi's Python packages, the aws extra: one line naming what is missing, before any is imported."""
    missing = project.missing_cloud_packages()
    if missing:
        raise UpError(project.cloud_packages_line(missing))


def require_pulumi() -> None:
    """The aws extra, then the Pulumi CLI: one line each, before any of them is used."""
    require_aws_extra()
    check = check_pulumi()
    if not check.ok:
        raise UpError(f"{check.detail}; {check.fix} (pairing doctor checks everything)")


def workspace_options(backend: backends.Backend) -> dict:
    """The Automation API workspace's settings for this backend (LocalWorkspace and its Options take the same)."""
    return {"env_vars": {**backend.env, **project.interpreter_env()},
            "secrets_provider": "passphrase" if "PULUMI_CONFIG_PASSPHRASE_FILE" in backend.env else None}


def open_stack(name: str, backend: backends.Backend, create: bool):
    from pulumi import automation as auto

    backends.prepare(backend)
    options = auto.LocalWorkspaceOptions(**workspace_options(backend))
    work_dir = str(project.work_dir())
    try:
        if create:
            return auto.create_or_select_stack(stack_name=name, work_dir=work_dir, opts=options)
        return auto.select_stack(stack_name=name, work_dir=work_dir, opts=options)
    except auto.StackNotFoundError:
        raise UpError(f"there is no stack {name!r} in {backend.describe()}; nothing to do") from None


def deploy(up_plan: UpPlan, say: Callable[[str], None] = print) -> StackOutputs:
    """Create or update the relay; a second run with the same settings changes nothing."""
    require_pulumi()
    from pulumi import automation as auto

    stack = open_stack(up_plan.stack, up_plan.backend, create=True)
    say(f"stack {up_plan.stack!r} in {up_plan.backend.describe()}")
    stack.set_all_config({key: auto.ConfigValue(value=value) for key, value in up_plan.config.items()})
    stack.up(**up_arguments(say))
    outputs = {name: output.value for name, output in stack.outputs().items()}
    try:
        read = StackOutputs.from_json(outputs, source=f"stack {up_plan.stack}")
    except OutputsError as exc:
        raise UpError(str(exc)) from None
    # For the next `pairing up`, which reuses this relay while it lives and its settings stand (warm.py).
    warm.record_relay(up_plan.stack, up_plan.backend.describe(), up_plan.settings, up_plan.config.get("aws:region"),
                      outputs)
    return read


def destroy(stack_name: str, backend: backends.Backend, authorized_keys: Path | None,
            say: Callable[[str], None] = print) -> None:
    """authorized_keys None: the hook ran its own sshd and left nothing in ~/.ssh to clean."""
    # The guests' keys first: they need no Pulumi, and must not outlive a failed destroy.
    if authorized_keys is not None:
        remove_guest_keys(authorized_keys, say)
    require_pulumi()
    stack = open_stack(stack_name, backend, create=False)
    stack.destroy(on_output=say)
    warm.forget_relay(stack_name, backend.describe())
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


def stopped(failed: list) -> UpError:
    names = ", ".join(dict.fromkeys(c.name for c in failed))
    return UpError(f"stopped before creating anything: {len(failed)} required "
                   f"check{'s' if len(failed) > 1 else ''} failed ({names}); fix each FAIL line above")


def cmd_up(args) -> int:
    # First of all: a session already running for this authorized_keys (its relay, its invite)
    # is left alone. The lock is held from here to the hook's end, so no second run slips in.
    # Without --target, the lock is on the own sshd's folder for the tmux session (settings' default: pair).
    check_target(args.record)
    check_folder(args.invite)  # said now, not after the relay is made
    args.target, args.authorized_keys = system_sshd(args.target, args.authorized_keys)
    own = args.target is None
    args.tmux_socket = chosen_server(args.session or "pair", args.tmux_socket)  # before the lock: it is keyed on it
    lock = SingleHook(lock_path(args.session or "pair", args.tmux_socket) if own else args.authorized_keys, command="up")
    try:
        if not own:
            AuthorizedKeysFile(args.authorized_keys).check_owner()
        # Flags, keys and settings first, all of them: a user learns of a bad flag before installing anything.
        config = stack_config(args, Path.home(), dict(os.environ))
        require_aws_extra()  # before doctor: nothing it says would let up go on without it
        tunnel_port = int(config.get(f"{NAMESPACE}:tunnelPort") or 1337)  # settings' default
        shared = from_flags(args.share_port, reserved_ports(tunnel_port, args.target))
        identity = args.identity or (args.host_key.with_suffix("") if args.host_key else None)
        checks = run_checks(args.target, identity, sshd_key_given=bool(args.sshd_key), host_public_key=args.host_key)
        print(report(checks))
        failed = [c for c in checks if not c.ok and c.name in REQUIRED_CHECKS]
        # A living relay with the same settings is reused: no Pulumi, no AWS call (warm.py).
        recorded = warm.record_path(args.stack, backends.choose(args.backend).describe()).exists()
        if any(c.name not in warm.NOT_NEEDED_WARM for c in failed) or (failed and not recorded):
            raise stopped(failed)
        up_plan = plan(args, config=config)
        reused = warm.reuse(up_plan.stack, up_plan.backend.describe(), up_plan.settings, config.get("aws:region"),
                            identity) if recorded else None
        if failed and not reused:
            raise stopped(failed)
    except BaseException:
        lock.release()
        raise
    # From here a relay may exist: whatever ends the run (Ctrl-C during the update, a
    # refused preflight, the hook's own end), the host is asked what to do with it.
    try:
        outputs = reused or deploy(up_plan)
        print(write_invite(outputs, args.invite, shared=(shared, args.share_port_viewers)))
        return run(HostOptions(outputs, identity, args.target, args.authorized_keys, args.tmux_socket, args.tunnel,
                               invite=args.invite, record=args.record, ask=args.ask, shared=shared,
                               share_viewers=args.share_port_viewers), lock=lock)
    finally:
        lock.release()  # before destroy, which takes it to clean up the guests' keys
        if ask_to_destroy(args.keep):
            destroy(args.stack, up_plan.backend, None if own else args.authorized_keys)
        else:
            print(f"the relay keeps running until its TTL; end it with: pairing down --stack {args.stack}")


def cmd_down(args) -> int:
    destroy(args.stack, backends.choose(args.backend), args.authorized_keys)
    return 0
