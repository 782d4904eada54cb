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
    """The guests' and the viewers' keys, each named, and the problems, one line each. Names given are
    checked first, so a name a later value gives is not taken by an earlier value's key; a key two values
    give (twice, or in both roles) and a name two keys' comments claim are problems (_names says why)."""
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
    keys, twice = _each_key_once(found)
    problems += twice
    names, more = _names(keys, given)
    problems += more
    named: dict[str, list[PublicKey]] = {"--guest": [], "--viewer": []}
    for at, (value, _, key) in enumerate(keys):
        if at in names:
            named[value.flag].append(PublicKey(key.kind, key.blob, names[at]))
    return named["--guest"], named["--viewer"], problems


_Key = tuple[_Value, Found, PublicKey]


def _each_key_once(found: list[tuple[_Value, Found]]) -> tuple[list[_Key], list[str]]:
    """Every key with the value that gave it, in order; a key two values give (twice, or as --guest and
    --viewer: which rights?) is a problem, said at the second. A source that lists a key twice gives it once."""
    first: dict[str, _Value] = {}
    keys: list[_Key] = []
    problems: list[str] = []
    for value, source in found:
        for key in source.keys:
            earlier = first.setdefault(key.blob, value)
            if earlier is value:
                if all(k.blob != key.blob for v, _, k in keys if v is value):
                    keys.append((value, source, key))
            elif earlier.flag == value.flag:
                problems.append(f"{value}: the key {key.fingerprint} is given twice (also {earlier}); give it once")
            else:
                problems.append(f"{value}: the key {key.fingerprint} is also given as {earlier}; give each key one "
                                "role: --guest types, --viewer watches")
    return keys, problems


def _names(keys: list[_Key], given: dict[str, _Value]) -> tuple[dict[int, str], list[str]]:
    """Each key's name, by its place in `keys`, and the problems. In three passes, so that no order of the
    flags lets one key take another's name: a value's NAME= and a site's user (theirs, then -2, -3 for more
    keys); then the names keys' comments claim, each refused if it is taken or claimed twice (a comment is
    its key's owner's to write); then the rest (the file's stem, else the role) made unique."""
    names: dict[int, str] = {}
    problems: list[str] = []
    holder: dict[str, _Value] = dict(given)
    named_first: set[int] = set()  # the values (by id) whose NAME= went to their first key
    for at, (value, source, key) in enumerate(keys):
        if value.name and id(value) not in named_first:
            names[at] = value.name
            named_first.add(id(value))
        elif value.name or source.user:
            name = unique(value.name or source.user.lower(), set(holder))
            if name is None:
                problems.append(_too_long(value, value.name or source.user.lower()))
                continue
            names[at] = name
            holder[name] = value
    claims: dict[str, list[int]] = {}
    for at, (value, source, key) in enumerate(keys):
        claim = None if at in names or value.name or source.user else from_comment(key.comment)
        if claim is not None:
            claims.setdefault(claim, []).append(at)
    for claim, places in claims.items():
        value = keys[places[0]][0]
        name_it = as_typed(value.flag, f"NAME={value.source}")
        if claim in holder:
            problems.append(f"{value}: its key's comment claims the name {claim}, which {holder[claim]} has; "
                            f"name it: {name_it}")
        elif len(places) > 1:
            others = list(dict.fromkeys(str(keys[at][0]) for at in places))
            which = " and ".join(others) + (": two keys' comments" if len(others) == 1 else ": their keys' comments")
            problems.append(f"{which} claim the name {claim}; name each guest: {name_it}")
        else:
            names[places[0]] = claim
            holder[claim] = value
    claimed = {at for places in claims.values() for at in places}
    for at, (value, source, key) in enumerate(keys):
        if at in names or at in claimed:
            continue
        base = (source.stem and from_comment(source.stem)) or value.flag.removeprefix("--")
        name = unique(base, set(holder))
        if name is None:
            problems.append(_too_long(value, base))
            continue
        names[at] = name
        holder[name] = value
    return names, problems


def _too_long(value: _Value, base: str) -> str:
    return (f"{value}: {base!r} is too long for a guest name (at most 32 characters, -2, -3 added for more keys); "
            f"name them: {as_typed(value.flag, f'NAME={value.source}')}")
