"""The own-sshd mode of the hook (no --target): where its private sshd lives and what is checked first.

One folder per user and tmux session (its server's socket, tmux_server.py, and its name), under the user's state folder, mode 700:
the sshd's config, the guests' AuthorizedKeysFile, its PID file and log. The hook's lock is on this
folder, so a second `pairing host` or `pairing up` for the same session refuses before anything;
it is known before the relay is (`pairing up` takes the lock before it deploys).
"""

from __future__ import annotations

import hashlib
import os
import pwd
from pathlib import Path

from ..backend import data_dir
from ..sshkeys import PublicKey
from .preflight import PreflightError
from .sshd import SshdError, host_key, key_path


def state_base() -> Path:
    return Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "pairing"


def sshd_folder(session: str, tmux_socket: str, make: bool = True) -> Path:
    """The private sshd's folder for this tmux session (made mode 700, as are the folders above it
    that it makes: StrictModes refuses a group-writable parent, which a umask 002 would give)."""
    digest = hashlib.sha256(f"{tmux_socket}\0{session}".encode("utf-8", "surrogateescape")).hexdigest()[:12]
    folder = state_base() / "sshd" / f"{session[:32]}-{digest}"
    return private_folder(folder) if make else folder


def private_folder(folder: Path) -> Path:
    """`folder`, made mode 700 if absent, as is each folder above it that it makes."""
    for at in reversed([folder, *folder.parents]):
        if not at.exists():
            at.mkdir(mode=0o700)
    return folder


def lock_path(session: str, tmux_socket: str, make: bool = True) -> Path:
    """What SingleHook and read_state are given: the guests' file in the folder (the lock is its folder's)."""
    return sshd_folder(session, tmux_socket, make) / "authorized_keys"


def system_sshd(target: tuple[str, int] | None, authorized_keys: Path | None) -> tuple[tuple[str, int] | None, Path]:
    """`pairing host`/`up`'s mode from --target and --authorized-keys: either given means the system's sshd (at
    the target, else localhost:22; its keys in authorized_keys, else ~/.ssh's); neither, the hook's own
    (target None; the path is then unused)."""
    if target is None and authorized_keys is None:
        return None, Path.home() / ".ssh" / "authorized_keys"
    return target or ("localhost", 22), authorized_keys or Path.home() / ".ssh" / "authorized_keys"


def check_own_sshd(host_user: str, pinned: PublicKey) -> Path:
    """The account guests log in as is this one, and the key they pin is the own sshd's (made if absent).
    Returns the host key's path."""
    me = pwd.getpwuid(os.geteuid()).pw_name
    if os.geteuid() == 0:
        raise PreflightError("pairing host runs its own sshd as you, and it never lets root in; run it as your own "
                             "user, or pass --target HOST:PORT to use your system sshd")
    if host_user != me:
        raise PreflightError(
            f"guests will log in as {host_user!r} (pairing:hostUser), but pairing host runs as {me!r} and its own sshd "
            f"lets in only you; set pairing:hostUser to {me}, or pass --target HOST:PORT to use your system sshd")
    data = data_dir()
    try:
        key = host_key(data)
    except SshdError as exc:
        raise PreflightError(str(exc)) from None
    if key.blob != pinned.blob:
        raise PreflightError(
            f"guests will pin {pinned.fingerprint} (pairing:hostSshdKey), but pairing host's own sshd key is "
            f"{key.fingerprint} ({key_path(data)}); set pairing:hostSshdKey to the line `pairing sshd-key` prints "
            "and update the relay, or pass --target HOST:PORT to use your system sshd")
    return key_path(data)


def cmd_sshd_key(args) -> int:
    """`pairing sshd-key`: the own sshd's public host key line (made the first time), what guests pin."""
    try:
        print(host_key(data_dir()).line)
    except SshdError as exc:
        raise PreflightError(str(exc)) from None
    return 0
