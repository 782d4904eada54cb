"""Which Pulumi backend and secrets passphrase pairing's commands use.

A user already logged in to a backend (or with PULUMI_BACKEND_URL set, or
--backend given) keeps it: S3 or Pulumi Cloud let a team share stacks.
Anyone else gets a local file backend under their home, with a passphrase
secrets provider whose passphrase is made once and kept with mode 600, so
no account is needed to start.
"""

from __future__ import annotations

import json
import os
import secrets
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
        Path(backend.url[len("file://"):]).mkdir(mode=0o700, parents=True, exist_ok=True)
    passphrase = backend.env.get("PULUMI_CONFIG_PASSPHRASE_FILE")
    if passphrase:
        ensure_passphrase(Path(passphrase))


def ensure_passphrase(path: Path) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return  # made on an earlier run: the stack's secrets depend on it
    with os.fdopen(fd, "w") as out:
        out.write(secrets.token_urlsafe(32) + "\n")
