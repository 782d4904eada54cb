"""`--guest` / `--viewer` values (of `pairing up` and `pairing direct`) -> the guests' keys, each named.

Each value is `[NAME=]SOURCE` (pairing/names.py says where a name comes from, pairing/keysources.py what a
source is). Every key comes back with its name as its comment: that is how the name travels through the
stack config and outputs (pairing.names.roster reads it back). Every problem is one line naming the flag
and the value as typed, with the fix; all of them are found, not only the first.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from .keysources import Found, KeySourceError, find
from .names import GuestNameError, check_name, from_comment, split_name, unique
from .sshkeys import PublicKey, shorten
from .text import unprintable

_PLAIN = re.compile(r"[A-Za-z0-9_./@%+=,:~-]*[A-Za-z0-9_./@%+=,~-]")  # a trailing ':' (gh:) reads as ours


def as_typed(flag: str, value: str) -> str:
    """`--guest gh:alice`, or quoted as a shell would take it back: `--guest "Al ice=gh:alice"`. A value
    holding a control or format character is shown escaped (repr): it goes to a terminal."""
    text = shorten(value.strip(), 48 if " " in value.strip() else 200)  # a key line cut short, a path whole
    if unprintable(text) is not None:
        return f"{flag} {text!r}"
    if _PLAIN.fullmatch(text):
        return f"{flag} {text}"
    return f'{flag} "{text}"' if not set(text) & set('"$`\\!') else f"{flag} {shlex.quote(text)}"


@dataclass(frozen=True)
class _Value:
    flag: str
    typed: str
    name: str | None  # given with NAME=, checked
    source: str

    def __str__(self) -> str:
        return as_typed(self.flag, self.typed)


def named_keys(guests: list[str], viewers: list[str]) -> tuple[list[PublicKey], list[PublicKey], list[str]]:
    """The guests' and the viewers' keys (each key once per role, its first source naming it), and the
    problems, one line each. Names given are checked first, so a name a later value gives is not taken
    by an earlier value's key."""
    problems: list[str] = []
    given: dict[str, _Value] = {}
    found: list[tuple[_Value, Found]] = []
    for flag, values in (("--guest", guests), ("--viewer", viewers)):
        for typed in values:
            name, source = split_name(typed)
            value = _Value(flag, typed, name, source)
            if name is not None:
                try:
                    check_name(name)
                except GuestNameError as exc:
                    fixed = f"{from_comment(name) or 'alice'}={source}"
                    problems.append(f"{value}: {exc}; e.g. {as_typed(flag, fixed)}")
                    continue
                if name in given:
                    problems.append(f"{value}: the name {name} is taken ({given[name]}); give each guest "
                                    "their own name")
                    continue
                given[name] = value
            try:
                found.append((value, find(source)))
            except KeySourceError as exc:
                problems.append(f"{value}: {exc}")
    taken = set(given)
    named: dict[str, dict[str, PublicKey]] = {"--guest": {}, "--viewer": {}}
    for value, keys in found:
        role, first = named[value.flag], True
        for key in keys.keys:
            if key.blob in role:
                continue  # given twice: the first source names it
            name = value.name if value.name and first else unique(_base(value, keys, key), taken)
            if name is None:
                problems.append(f"{value}: {_base(value, keys, key)!r} is too long for a guest name (at most 32 "
                                f"characters, -2, -3 added for more keys); name them: "
                                f"{as_typed(value.flag, f'NAME={value.source}')}")
                continue
            taken.add(name)
            first = False
            role[key.blob] = PublicKey(key.kind, key.blob, name)
    return list(named["--guest"].values()), list(named["--viewer"].values()), problems


def _base(value: _Value, found: Found, key: PublicKey) -> str:
    """What a key is called before -2, -3 make it unique: the name given, the site's user, its comment,
    the file's stem, else its role."""
    if value.name:
        return value.name
    if found.user:
        return found.user.lower()
    return (from_comment(key.comment) or (found.stem and from_comment(found.stem))
            or value.flag.removeprefix("--"))
