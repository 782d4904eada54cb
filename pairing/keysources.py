"""Where `pairing up` gets guests' keys: files, literal lines, GitHub/GitLab users.

A source is one command-line value:
    ~/keys/alice.pub or ./team_keys      a file of key lines (# comments allowed)
    'ssh-ed25519 AAAA... bob@laptop'     a literal key line
    gh:octocat / github:octocat          the user's public keys on GitHub
    gl:someone / gitlab:someone          the user's public keys on GitLab
"""

from __future__ import annotations

import os
import re
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

from .sshkeys import ACCEPTED_TYPES, InvalidKey, PublicKey, parse_public_key, shorten

# Overridable so tests can serve .keys pages from a local HTTP server.
KEY_PAGES = {
    "github": os.environ.get("PAIRING_GITHUB_KEYS_URL", "https://github.com/{user}.keys"),
    "gitlab": os.environ.get("PAIRING_GITLAB_KEYS_URL", "https://gitlab.com/{user}.keys"),
}
PREFIXES = {"gh": "github", "github": "github", "gl": "gitlab", "gitlab": "gitlab"}
# GitHub and GitLab user names: letters, digits, '-', '_' and '.'.
USER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
FETCH_TIMEOUT = 10  # seconds for the whole page, however slowly it arrives
PAGE_LIMIT = 1 << 20  # a keys page is a few lines; more is not one


class KeySourceError(ValueError):
    """A source that gave no usable key; the message names it and the fix."""


def keys_from(source: str) -> list[PublicKey]:
    """The keys one source stands for, each checked."""
    prefix, colon, rest = source.partition(":")
    if colon and prefix in PREFIXES:
        return _from_site(PREFIXES[prefix], rest)
    if source.split(" ", 1)[0] in ACCEPTED_TYPES or "PRIVATE KEY" in source:
        return [_parse(source, "the key given")]
    return _from_file(Path(source).expanduser())


def _parse(line: str, where: str) -> PublicKey:
    try:
        return parse_public_key(line)
    except InvalidKey as exc:
        raise KeySourceError(f"{where}: {exc}") from None


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def _from_file(path: Path) -> list[PublicKey]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise KeySourceError(
            f"{shorten(str(path))}: no such file; give a .pub file, a key line, gh:USER or gl:USER"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise KeySourceError(f"{path}: cannot read it ({exc})") from None
    keys = [_parse(line, f"{path}, line {n}") for n, line in enumerate(_lines(text), 1)]
    if not keys:
        raise KeySourceError(f"{path} holds no key line; give the guest's .pub file")
    return keys


def _from_site(site: str, user: str) -> list[PublicKey]:
    if not USER_NAME.fullmatch(user):
        raise KeySourceError(f"{site}:{shorten(user)}: not a {site} user name")
    url = KEY_PAGES[site].format(user=user)
    try:
        text = _fetch(url).decode("utf-8", "replace")
    except _TooSlow:
        raise KeySourceError(f"{site}:{user}: {url} did not answer within {FETCH_TIMEOUT} s; try again, "
                             "or give their .pub file") from None
    except _TooLarge:
        raise KeySourceError(f"{site}:{user}: {url} sent more than {PAGE_LIMIT // 1024} KiB, which is no keys "
                             "page; give their .pub file") from None
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            raise KeySourceError(f"{site}:{user}: no such {site} user ({url} answered 404)") from None
        raise KeySourceError(f"{site}:{user}: {url} answered {exc.code} {exc.reason}; try again, or give their .pub file") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise KeySourceError(f"{site}:{user}: cannot fetch {url} ({reason}); give their .pub file instead") from None
    lines = _lines(text)
    if not lines:
        raise KeySourceError(
            f"{site}:{user} has no public SSH keys on {site}; ask them to add one, or give their .pub file"
        )
    keys = []
    for line in lines:
        key = _parse(line, f"{site}:{user} ({url})")
        # The pages carry no comments; name the key after its source, for authorized_keys readers.
        keys.append(PublicKey(key.kind, key.blob, key.comment or f"{site}:{user}"))
    return keys


class _TooSlow(Exception):
    pass


class _TooLarge(Exception):
    pass


def _fetch(url: str) -> bytes:
    """The page, whole, within FETCH_TIMEOUT in all: urlopen's timeout is per read, so a
    page dripping a byte a second would otherwise hold `pairing up` for as long as it likes."""
    deadline = time.monotonic() + FETCH_TIMEOUT
    try:
        with urllib.request.urlopen(url, timeout=FETCH_TIMEOUT) as response:
            body = b""
            # The connection's socket, to shorten each read's timeout to the time left (CPython's
            # HTTPResponse reads through a SocketIO; without it, each read keeps urlopen's timeout).
            sock = getattr(getattr(response.fp, "raw", None), "_sock", None)
            while len(body) <= PAGE_LIMIT:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise _TooSlow
                if sock is not None:
                    sock.settimeout(left)
                chunk = response.read1(64 * 1024)
                if not chunk:
                    return body
                body += chunk
    except (socket.timeout, TimeoutError):
        raise _TooSlow from None
    raise _TooLarge


def keys_from_all(sources: list[str]) -> list[PublicKey]:
    """Every source's keys, in order, each key once."""
    seen: dict[str, PublicKey] = {}
    for source in sources:
        for key in keys_from(source):
            seen.setdefault(key.blob, key)
    return list(seen.values())
