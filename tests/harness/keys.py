"""Real keys for tests, made by the real ssh-keygen in temp folders (never committed)."""

from __future__ import annotations

import base64
import hashlib
import os
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


def _string(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


def _fido_blob(comment: str) -> bytes:
    point = hashlib.sha256(comment.encode()).digest()  # any 32 bytes: no token will be asked to sign
    return _string(b"sk-ssh-ed25519@openssh.com") + _string(point) + _string(b"ssh:")


def fido_public_line(comment: str = "token@test") -> str:
    """An sk-ssh-ed25519 public key line as `ssh-keygen -t ed25519-sk` writes it. No token exists
    here, so there is no private half: enough for what must be refused before any signing."""
    return f"sk-ssh-ed25519@openssh.com {base64.b64encode(_fido_blob(comment)).decode()} {comment}"


def fido_private_file(folder: Path, comment: str = "token@test") -> Path:
    """An sk-ssh-ed25519 private key file as ssh-keygen writes it (`ssh-keygen -y` reads it back): the
    token's key handle stands in the file, so its key handle here is random bytes no token knows."""
    public = _fido_blob(comment)
    check = os.urandom(4)
    private = (check + check + public + bytes([1]) + _string(os.urandom(64)) + _string(b"")
               + _string(comment.encode()))
    private += bytes(range(1, 8 - len(private) % 8 + 1)) if len(private) % 8 else b""
    raw = (b"openssh-key-v1\0" + _string(b"none") + _string(b"none") + _string(b"") + (1).to_bytes(4, "big")
           + _string(public) + _string(private))
    body = base64.b64encode(raw).decode()
    lines = [body[i:i + 70] for i in range(0, len(body), 70)]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "id_ed25519_sk"
    path.write_text("\n".join(["-----BEGIN OPENSSH PRIVATE KEY-----", *lines, "-----END OPENSSH PRIVATE KEY-----", ""]))
    path.chmod(0o600)
    return path
