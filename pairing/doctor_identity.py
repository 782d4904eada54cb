"""`pairing doctor`'s identity check: the host's private key, and that it is hostPublicKey's private half."""

from __future__ import annotations

import os
from pathlib import Path

from .check import Check
from .sshkeys import InvalidKey, PublicKey, parse_public_key, public_half, public_key_of

IDENTITIES = ("id_ed25519", "id_ecdsa", "id_rsa")


def check_identity(home: Path | None = None, given: Path | None = None, host_public_key: Path | None = None) -> Check:
    """given: the key of --identity (or --host-key's private half), which replaces the default search. It must
    be a private key, and the private half of hostPublicKey: host_public_key, the .pub `pairing up` publishes as it
    (--host-key; default: the first ~/.ssh/id_*.pub), when there is one."""
    folder = (home or Path.home()) / ".ssh"
    host_public_key = host_public_key or next(
        (folder / f"{name}.pub" for name in IDENTITIES if (folder / f"{name}.pub").is_file()), None)
    if given is not None:
        if not (given.is_file() and os.access(given, os.R_OK)):
            return Check("identity", False, f"{given} is not a readable file", "pass --identity with your private key")
        return _private_half_of(given, host_public_key)
    for name in IDENTITIES:
        if (folder / name).exists() and (folder / f"{name}.pub").exists():
            return _private_half_of(folder / name, host_public_key)
    for name in IDENTITIES:
        if (folder / name).is_file():  # its .pub is lost: write it from the key (a new key would overwrite this one)
            key = folder / name
            return Check("identity", False, f"{key} has no {key}.pub beside it",
                         f"write it: ssh-keygen -y -f {key} > {key}.pub")
    return Check("identity", False, f"no {', '.join(IDENTITIES)} key pair in {folder}",
                 "make one: ssh-keygen -t ed25519, or pass --identity PATH")


def _private_half_of(path: Path, host_public_key: Path | None) -> Check:
    """A private key, and hostPublicKey's (host_public_key's) if that is known: else FAIL with the fix."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError):
        return Check("identity", False, f"{path} is not an OpenSSH private key", "pass --identity with your private key")
    public = _public_key_line(text)
    if public is not None:
        private = path.with_suffix("") if path.suffix == ".pub" else None
        half = f"its private half ({private})" if private and private.is_file() else "your private key (not a .pub)"
        return Check("identity", False, f"{path} is a public key ({public.fingerprint}), which cannot log in to the "
                     "relay", f"pass --identity with {half}")
    found = _public_of_private(path, text)
    expected = _public_key_line(_read(host_public_key)) if host_public_key else None
    if found is not None and expected is not None and found.blob != expected.blob:
        return Check("identity", False, f"{path} is {found.fingerprint}, but hostPublicKey is {expected.fingerprint} "
                     f"({host_public_key})", f"pass --identity with the private key of {host_public_key}, or give "
                     f"pairing up --host-key with {path}'s own .pub")
    if found is None and "PRIVATE KEY" not in text:
        return Check("identity", False, f"{path} is not an OpenSSH private key", "pass --identity with your private key")
    return Check("identity", True, str(path))


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError):
        return ""


def _public_key_line(text: str) -> PublicKey | None:
    line = next((l for l in text.splitlines() if l.strip()), "")
    try:
        return parse_public_key(line)
    except InvalidKey:
        return None


def _public_of_private(path: Path, text: str) -> PublicKey | None:
    """Which key a private key file holds: OpenSSH's files say it in the clear; others are read, unless locked."""
    found = public_half(text)
    if found is not None:
        return found
    import paramiko
    from cryptography.exceptions import UnsupportedAlgorithm

    try:
        return public_key_of(paramiko.PKey.from_path(path))
    except (OSError, ValueError, TypeError, UnsupportedAlgorithm, paramiko.SSHException):
        return None  # a passphrase (TypeError in paramiko 5), a format paramiko lacks: which key stays unknown
