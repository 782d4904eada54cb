"""Guests' names: what the hook's terminal, `pairing who` and the control commands call a guest.

A guest's name travels as its key's comment, through the stack config and the
outputs, so whoever holds only the outputs (`pairing host --outputs`) knows it too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
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


@dataclass(frozen=True)
class NamedKey:
    """One guest of this run: what it is called, its key, whether it may type."""

    name: str
    key: PublicKey
    typing: bool


def roster(guest_keys: Sequence[PublicKey], viewer_keys: Sequence[PublicKey]) -> tuple[NamedKey, ...]:
    """Every guest named by its key's comment; a key whose comment is not a name, or
    repeats an earlier one (outputs from before names, a hand-written --outputs file),
    is `guest-N` / `viewer-N` instead, N counting keys of that role from 1."""
    taken: set[str] = set()
    named = []
    for role, keys, typing in (("guest", guest_keys, True), ("viewer", viewer_keys, False)):
        for number, key in enumerate(keys, 1):
            name = key.comment if is_name(key.comment) and key.comment not in taken else f"{role}-{number}"
            while name in taken:  # a comment already called someone guest-2
                name += "_"
            taken.add(name)
            named.append(NamedKey(name, key, typing))
    return tuple(named)
