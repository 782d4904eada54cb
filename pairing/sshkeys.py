"""OpenSSH public key lines: parsing, checking and fingerprints.

cryptography does the actual decoding; this module only decides which keys
pairing accepts and how they are shown back to a person.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import load_ssh_public_key

from .text import unprintable

# Key types a current OpenSSH accepts by default. DSA is gone from OpenSSH
# (disabled in 7.0, removed in 9.8), so it is refused with its own message.
ACCEPTED_TYPES = (
    "ssh-ed25519",
    "sk-ssh-ed25519@openssh.com",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ecdsa-sha2-nistp256@openssh.com",
    "ssh-rsa",
)
MIN_RSA_BITS = 2048
# The fix for a key too old or too weak: said to whoever owns it (keysources words it for a guest's).
NEW_KEY = "make one with: ssh-keygen -t ed25519"


class InvalidKey(ValueError):
    """A key line that pairing will not use; the message says why and what to do."""


@dataclass(frozen=True)
class PublicKey:
    kind: str
    blob: str  # base64, exactly as given
    comment: str = ""

    @property
    def line(self) -> str:
        """The key as one authorized_keys / .pub line, comment kept."""
        return f"{self.kind} {self.blob} {self.comment}".rstrip()

    @property
    def bare(self) -> str:
        """Type and base64 only: what known_hosts and identity comparisons need."""
        return f"{self.kind} {self.blob}"

    @property
    def fingerprint(self) -> str:
        digest = hashlib.sha256(base64.b64decode(self.blob)).digest()
        return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")

    @property
    def short(self) -> str:
        """A recognisable abbreviation for messages: type, ends of the blob, comment."""
        label = f"{self.kind} {self.blob[:12]}...{self.blob[-8:]}"
        return f"{label} ({self.comment})" if self.comment else label


def _canonical_base64(blob: str) -> bool:
    """Exactly what ssh-keygen writes. Lenient decoders skip stray characters, so one key could
    be spelt many ways: sshd would refuse the line, and a duplicate would go unnoticed."""
    try:
        return base64.b64encode(base64.b64decode(blob, validate=True)).decode() == blob
    except (binascii.Error, ValueError):
        return False


def shorten(text: str, limit: int = 48) -> str:
    """Abbreviate arbitrary user input for a one-line message."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse_public_key(text: str) -> PublicKey:
    """Parse one OpenSSH public key line, refusing what pairing must not use.

    Raises InvalidKey with a message meant to be prefixed by the setting's name.
    """
    line = text.strip()
    if line.startswith("-----BEGIN") and "PRIVATE KEY" in line:  # OpenSSH's and the PEM kinds
        raise InvalidKey("that is a PRIVATE key; paste the one line of the .pub file instead, and keep the private key secret")
    if not line:
        raise InvalidKey("the key line is empty; paste the one line of a .pub file")
    if unprintable(line) is not None:
        raise InvalidKey(f"{shorten(line)!r} spans several lines or has control or format characters "
                         f"(U+{ord(unprintable(line)):04X}); give one key per list entry, as its .pub file has it")
    kind, _, rest = line.partition(" ")
    blob, _, comment = rest.strip().partition(" ")
    if kind == "ssh-dss":
        raise InvalidKey(f"DSA keys are refused (OpenSSH removed them); {NEW_KEY}")
    if kind not in ACCEPTED_TYPES:
        raise InvalidKey(
            f"{shorten(line)!r} is not an OpenSSH public key line; expected e.g. 'ssh-ed25519 AAAA... you@laptop' "
            "(no options in front, no certificates)"
        )
    if not _canonical_base64(blob):
        raise InvalidKey(f"{shorten(line)!r} is not a valid {kind} key (its base64 is damaged); copy the .pub line again, whole")
    try:
        key = load_ssh_public_key(f"{kind} {blob}".encode())
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise InvalidKey(f"{shorten(line)!r} is not a valid {kind} key ({exc}); copy the .pub line again, whole") from None
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < MIN_RSA_BITS:
        raise InvalidKey(
            f"RSA key of {key.key_size} bits is too short (minimum {MIN_RSA_BITS}); {NEW_KEY}"
        )
    return PublicKey(kind, blob, comment.strip())


# --- keys as SSH libraries hold them -------------------------------------------------
# Shared by the hook's preflight (hook/preflight.py) and both carriers of the tunnel
# (tunnel/pinning.py, tunnel/via_openssh.py). "key" below is any object with paramiko's get_name() and
# get_base64() (a paramiko PKey, or an ssh-agent's key): nothing here needs paramiko.

# How a server proves it holds a key of each kind. An RSA key is an "ssh-rsa" key but
# signs as rsa-sha2-512/256: SHA-1 "ssh-rsa" signatures are gone from OpenSSH (8.8)
# and paramiko 5, which refuses the name outright.
HOST_KEY_ALGORITHMS = {"ssh-rsa": ("rsa-sha2-512", "rsa-sha2-256")}

# FIDO keys sign on a hardware token, which only OpenSSH's ssh can drive.
FIDO_TYPES = ("sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com")


def host_key_algorithms(pinned: tuple[PublicKey, ...] | list[PublicKey]) -> list[str]:
    """The host key algorithms to offer a server so that it shows one of these keys."""
    names = (name for key in pinned for name in HOST_KEY_ALGORITHMS.get(key.kind, (key.kind,)))
    return list(dict.fromkeys(names))


def public_key_of(key) -> PublicKey:
    """The public half of a library's key. Its kind is the key's type, never a signature algorithm:
    the type is the first field of the blob, which is what an OpenSSH .pub line names too."""
    blob = key.get_base64()
    raw = base64.b64decode(blob)
    length = int.from_bytes(raw[:4], "big")
    return PublicKey(raw[4:4 + length].decode("ascii", "replace"), blob)


def is_key(key, public: PublicKey) -> bool:
    """Whether a library's key is this public key: the same blob, which holds the type and the key."""
    return base64.b64decode(key.get_base64()) == base64.b64decode(public.blob)


def is_fido(public: PublicKey) -> bool:
    return public.kind in FIDO_TYPES


def public_half(private_text: str) -> PublicKey | None:
    """The public key an OpenSSH private key file carries in the clear, passphrase or not
    (None for other formats, e.g. PEM): which key a file is, without asking for its passphrase."""
    lines = private_text.strip().splitlines()
    if len(lines) < 3 or lines[0] != "-----BEGIN OPENSSH PRIVATE KEY-----":
        return None
    try:
        raw = base64.b64decode("".join(lines[1:-1]), validate=True)
    except (binascii.Error, ValueError):
        return None
    magic = b"openssh-key-v1\0"
    if not raw.startswith(magic):
        return None
    at = len(magic)
    for _ in range(3):  # cipher name, KDF name, KDF options
        at += 4 + int.from_bytes(raw[at:at + 4], "big")
    at += 4  # the number of keys: one, as ssh-keygen writes
    length = int.from_bytes(raw[at:at + 4], "big")
    blob = raw[at + 4:at + 4 + length]
    if len(blob) != length or length < 4:
        return None
    kind_length = int.from_bytes(blob[:4], "big")
    return PublicKey(blob[4:4 + kind_length].decode("ascii", "replace"), base64.b64encode(blob).decode())
