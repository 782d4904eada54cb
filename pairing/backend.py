"""Which Pulumi backend and secrets passphrase pairing's commands use.

A user already logged in to a backend (or with PULUMI_BACKEND_URL set, or
--backend given) keeps it: S3 or Pulumi Cloud let a team share stacks.
Anyone else gets a local file backend under their home, with a passphrase
secrets provider whose passphrase is made once and kept with mode 600, so
no account is needed to start.
"""

from __future__ import annotations

import glob
import json
import os
import secrets
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path


def data_dir(home: Path | None = None) -> Path:
    base = os.environ.get("XDG_DATA_HOME") if home is None else None
    return Path(base) / "pairing" if base else (home or Path.home()) / ".local" / "share" / "pairing"


@dataclass(frozen=True)
class Backend:
    url: str | None  # None: the one the user is logged in to
    env: dict[str, str]  # to pass to the Pulumi CLI / Automation API

    def describe(self) -> str:
        return self.url or "the backend you are logged in to"


def logged_in_backend(home: Path) -> str | None:
    try:
        current = json.loads((home / ".pulumi" / "credentials.json").read_text()).get("current")
    except (OSError, ValueError, AttributeError):
        return None
    return current or None


def choose(flag: str | None = None, home: Path | None = None, environ: dict[str, str] | None = None) -> Backend:
    """The backend for this run, without creating anything."""
    home = home or Path.home()
    environ = dict(os.environ if environ is None else environ)
    if flag:
        return Backend(flag, {"PULUMI_BACKEND_URL": flag})
    if environ.get("PULUMI_BACKEND_URL") or logged_in_backend(home):
        return Backend(None, {})
    state = data_dir(home) / "state"
    env = {"PULUMI_BACKEND_URL": f"file://{state}"}
    if not (environ.get("PULUMI_CONFIG_PASSPHRASE") or environ.get("PULUMI_CONFIG_PASSPHRASE_FILE")):
        env["PULUMI_CONFIG_PASSPHRASE_FILE"] = str(data_dir(home) / "passphrase")
    return Backend(env["PULUMI_BACKEND_URL"], env)


def prepare(backend: Backend) -> None:
    """Make the local state folder and the passphrase file (once, mode 600) if this backend uses them."""
    if backend.url and backend.url.startswith("file://") and "PULUMI_BACKEND_URL" in backend.env:
        state = Path(backend.url[len("file://"):])
        private_folder(state.parent)  # ~/.local/share/pairing: the state and the passphrase, ours alone
        private_folder(state)
    passphrase = backend.env.get("PULUMI_CONFIG_PASSPHRASE_FILE")
    if passphrase:
        ensure_passphrase(Path(passphrase))


def private_folder(path: Path) -> None:
    """A folder only we can enter (0700); one we made looser before is tightened."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = path.stat()
    if info.st_uid == os.geteuid() and stat.S_IMODE(info.st_mode) & 0o077:
        path.chmod(stat.S_IMODE(info.st_mode) & 0o700)


def ensure_passphrase(path: Path) -> None:
    """Made once, whole or not at all (temp file, then linked in); an empty one (a crash
    between create and write, before any stack could use it) is made again."""
    private_folder(path.parent)
    try:
        if path.stat().st_size > 0:
            return  # made on an earlier run: the stack's secrets depend on it
    except FileNotFoundError:
        pass
    fd, temp = tempfile.mkstemp(prefix=".passphrase.", dir=path.parent)  # mode 600
    try:
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(32) + "\n")
            out.flush()
            os.fsync(out.fileno())
        try:
            os.link(temp, path)  # never over a passphrase another run made meanwhile
        except FileExistsError:
            if path.stat().st_size == 0:
                os.replace(temp, path)
    finally:
        Path(temp).unlink(missing_ok=True)


def has_stack(backend: Backend, stack: str, home: Path | None = None,
              environ: dict[str, str] | None = None) -> bool | None:
    """Whether a file backend holds state for this stack (Pulumi's layout: .pulumi/stacks/PROJECT/STACK.json,
    or the older .pulumi/stacks/STACK.json, maybe .gz); None for a backend only the Pulumi CLI can read."""
    home = home or Path.home()
    environ = dict(os.environ if environ is None else environ)
    url = backend.url or environ.get("PULUMI_BACKEND_URL") or logged_in_backend(home)
    if not url or not url.startswith("file://"):
        return None
    path = url[len("file://"):]
    root = home / path[1:].lstrip("/") if path == "~" or path.startswith("~/") else Path(path)  # Pulumi's ~: home
    name = glob.escape(stack.rsplit("/", 1)[-1])  # org/project/stack or stack
    stacks = root / ".pulumi" / "stacks"
    return any(stacks.glob(f"{name}.json*")) or any(stacks.glob(f"*/{name}.json*"))
