"""Real keys for tests, made by the real ssh-keygen in temp folders (never committed)."""

from __future__ import annotations

import base64
import hashlib
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class KeyFile:
    path: Path  # the private key

    @property
    def public_line(self) -> str:
        return Path(f"{self.path}.pub").read_text().strip()


def make_key(folder: Path, name: str, kind: str = "ed25519", bits: int | None = None) -> KeyFile:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    argv = ["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", f"{name}@test", "-f", str(path)]
    if bits:
        argv[4:4] = ["-b", str(bits)]
    subprocess.run(argv, check=True)
    return KeyFile(path)


def locked_copy(key: KeyFile, folder: Path, passphrase: str) -> Path:
    """A copy of the private key with a passphrase, made by ssh-keygen -p (the public half left beside it)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{key.path.name}-locked"
    path.write_bytes(key.path.read_bytes())
    path.chmod(0o600)
    subprocess.run(["ssh-keygen", "-q", "-p", "-P", "", "-N", passphrase, "-f", str(path)], check=True,
                   capture_output=True)
    return path


def fido_public_line(comment: str = "token@test") -> str:
    """An sk-ssh-ed25519 public key line as `ssh-keygen -t ed25519-sk` writes it. No token exists
    here, so there is no private half: enough for what must be refused before any signing."""
    def string(data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + data

    blob = string(b"sk-ssh-ed25519@openssh.com") + string(hashlib.sha256(comment.encode()).digest()) + string(b"ssh:")
    return f"sk-ssh-ed25519@openssh.com {base64.b64encode(blob).decode()} {comment}"
