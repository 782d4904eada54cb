"""Guests' names: what the hook's terminal, `pairing who` and the control commands call a guest.

A guest's name travels as its key's comment, through the stack config and the
outputs, so whoever holds only the outputs (`pairing host --outputs`) knows it too.

Where a name comes from (`--guest`/`--viewer`, see pairing/guest_flags.py):
    alice=SOURCE        alice, as given (alice, alice-2, ... if the source holds several keys)
    gh:alice, gl:alice  alice (alice-2, alice-3 for their further keys)
    a file, a key line  each key's comment made a name (from_comment), else the file's stem, else guest/viewer
A name not given is made unique with -2, -3, ...; a name given twice is refused. A comment never takes a
name: the name a comment makes is the key's only if no NAME= gives it and no site's user has it, and
two keys whose comments make one name are refused, whatever their order (a key's comment is its
owner's to write: mallory's key can say alice@laptop).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from .sshkeys import PublicKey

NAME_RULE = "lowercase letters, digits, '.', '_' and '-', at most 32 characters"
_NAME = re.compile(r"[a-z0-9._-]{1,32}")


class GuestNameError(ValueError):
    """A name that cannot be a guest's; the message says which rule it breaks."""


def is_name(text: str) -> bool:
    return _NAME.fullmatch(text) is not None


def check_name(text: str) -> str:
    """`text` if it is a guest name, else GuestNameError naming the rule."""
    if not is_name(text):
        raise GuestNameError(f"{text!r} is not a guest name: use {NAME_RULE}")
    return text


def split_name(value: str) -> tuple[str | None, str]:
    """`NAME=SOURCE` -> (NAME, SOURCE); any other value -> (None, value). Sources hold '=' too (a key line's
    base64 padding or comment, a URL's query, a file's name), so what comes before the first '=' is a name
    only if it holds no '/', ':' or '~' (a path, a URL, gh:USER), no word starting with AAAA (a key line's
    base64) and no PRIVATE KEY, and the whole value is not an existing file. It need not be a valid name:
    `Al Ice=gh:alice` is the name `Al Ice`, refused by check_name with the rule."""
    value = value.strip()
    head, equals, rest = value.partition("=")
    if not equals or _SOURCE_PART.search(head) or _exists(value):
        return None, value
    return head.strip(), rest.strip()


_SOURCE_PART = re.compile(r"[/:~]|\bAAAA|PRIVATE KEY")


def _exists(value: str) -> bool:
    try:
        return Path(value).expanduser().exists()
    except (OSError, ValueError, RuntimeError):  # a NUL, a name too long, ~nosuchuser
        return False


def from_comment(comment: str) -> str | None:
    """A key's comment (or a file's stem) made a name: lowercased, cut at the first '@' (user@host, an
    e-mail address), each run of spaces made one '-': 'Alice@laptop' -> 'alice', 'Work Laptop' ->
    'work-laptop'. None if what is left breaks the rule (e.g. 'o'brien', or over 32 characters)."""
    text = "-".join(comment.lower().split("@", 1)[0].split())
    return text if is_name(text) else None


def unique(base: str, taken: set[str]) -> str | None:
    """`base`, else base-2, base-3, ...: the first not taken; None if that is over 32 characters."""
    name, number = base, 1
    while name in taken:
        number += 1
        name = f"{base}-{number}"
    return name if is_name(name) else None


@dataclass(frozen=True)
class NamedKey:
    """One guest of this run: what it is called, its key, whether it may type."""

    name: str
    key: PublicKey
    typing: bool


def roster(guest_keys: Sequence[PublicKey], viewer_keys: Sequence[PublicKey]) -> tuple[NamedKey, ...]:
    """Every guest named by its key's comment (`pairing up` makes it the name; a hand-written --outputs
    file's alice@laptop is made alice, see from_comment); a key whose comment makes no name is `guest-N` /
    `viewer-N` instead, N counting keys of that role from 1, never a name a comment claims. Two keys whose
    comments claim one name: GuestNameError, one line naming both (no order decides who is who)."""
    roles = [(role, number, key, typing)
             for role, keys, typing in (("guest", guest_keys, True), ("viewer", viewer_keys, False))
             for number, key in enumerate(keys, 1)]
    claimed: dict[str, PublicKey] = {}
    for _, _, key, _ in roles:
        name = from_comment(key.comment)
        if name in claimed:
            raise GuestNameError(f"the keys {claimed[name].fingerprint} and {key.fingerprint} both claim the name "
                                 f"{name} by their comment; give each key its own comment "
                                 "(pairing up --guest NAME=SOURCE does)")
        if name is not None:
            claimed[name] = key
    taken, named = set(claimed), []
    for role, number, key, typing in roles:
        name = from_comment(key.comment)
        if name is None:  # guest-2-2 if a comment already called someone guest-2
            name = unique(f"{role}-{number}", taken)
            taken.add(name)
        named.append(NamedKey(name, key, typing))
    return tuple(named)
