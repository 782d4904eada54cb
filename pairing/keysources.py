"""Where `pairing up` gets guests' keys: files, literal lines, GitHub/GitLab users.

A source is one command-line value, as people paste and type it (whitespace around it is dropped):
    ~/keys/alice.pub or ./team_keys      a file of key lines (# comments allowed)
    'ssh-ed25519 AAAA... bob@laptop'     a literal key line
    gh:octocat / github:octocat          the user's public keys on GitHub (gh:@octocat too)
    gl:someone / gitlab:someone          the user's public keys on GitLab (gl:@someone too)
    https://github.com/octocat.keys      the same pages by their address (https://gitlab.com/USER.keys)

Errors say what is wrong with the source and the fix; the caller puts the flag and the value as typed in front.
"""

from __future__ import annotations

import os
import re
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .sshkeys import ACCEPTED_TYPES, NEW_KEY, InvalidKey, PublicKey, parse_public_key, shorten

# Overridable so tests can serve .keys pages from a local HTTP server.
KEY_PAGES = {
    "github": os.environ.get("PAIRING_GITHUB_KEYS_URL", "https://github.com/{user}.keys"),
    "gitlab": os.environ.get("PAIRING_GITLAB_KEYS_URL", "https://gitlab.com/{user}.keys"),
}
PREFIXES = {"gh": "github", "github": "github", "gl": "gitlab", "gitlab": "gitlab"}
SITE_HOSTS = {"github.com": "github", "www.github.com": "github", "gitlab.com": "gitlab", "www.gitlab.com": "gitlab"}
SHORT = {"github": "gh", "gitlab": "gl"}
# GitHub and GitLab user names: letters, digits, '-', '_' and '.'.
USER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
# Base64 of an SSH key blob starts AAAA (its type's length): a pasted line of another type, with options
# in front, or the base64 alone is a key line gone wrong, not a file name.
_KEYISH = re.compile(r"(^|\s)AAAA[0-9A-Za-z+/]")
FETCH_TIMEOUT = 10  # seconds for the whole page, however slowly it arrives
PAGE_LIMIT = 1 << 20  # a keys page is a few lines; more is not one
FORMS = "a .pub file, a key line, gh:USER, gl:USER, https://github.com/USER.keys or https://gitlab.com/USER.keys"
# A guest's key is the guest's to replace: the host can only ask them.
GUEST_NEW_KEY = "ask your guest to make one with `ssh-keygen -t ed25519`"


class KeySourceError(ValueError):
    """A source that gave no usable key; the message says why and the fix (not the source: the caller does)."""


@dataclass(frozen=True)
class Found:
    """One source's keys and what names them (pairing.names.default_name): a site's user names all its keys;
    a file's or line's key is named by its comment, else by the file's stem."""

    keys: list[PublicKey]
    user: str | None = None
    stem: str | None = None


def keys_from(source: str, guest: bool = True) -> list[PublicKey]:
    """The keys one source stands for, each checked. guest: the key is a guest's (whose fix the messages say)."""
    return find(source, guest).keys


def find(source: str, guest: bool = True) -> Found:
    source = source.strip()
    prefix, colon, rest = source.partition(":")
    if not source:
        raise KeySourceError(f"is empty; give {FORMS}")
    if colon and prefix.lower() in PREFIXES:
        return _from_site(PREFIXES[prefix.lower()], prefix, rest.strip(), guest)
    if "://" in source or prefix.lower() in ("http", "https"):
        return _from_url(source, guest)
    try:
        path = Path(source).expanduser()
    except RuntimeError:  # ~someone with no such account
        raise KeySourceError("no such account as its ~USER names; give the file's full path") from None
    if source.split(None, 1)[0] in ACCEPTED_TYPES or "PRIVATE KEY" in source or (_KEYISH.search(source)
                                                                                 and not path.exists()):
        return Found([_parse(source, guest)])  # pasted, or nearly: the parser says what is wrong with it
    return Found(_from_file(path, guest), stem=path.name.removesuffix(".pub"))


def _parse(line: str, guest: bool, where: str = "") -> PublicKey:
    try:
        return parse_public_key(line)
    except InvalidKey as exc:
        reason = str(exc).replace(NEW_KEY, GUEST_NEW_KEY) if guest else str(exc)
        raise KeySourceError(where + reason) from None


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def _from_file(path: Path, guest: bool) -> list[PublicKey]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise KeySourceError(f"no such file; give {FORMS}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise KeySourceError(f"cannot read it ({exc})") from None
    keys = [_parse(line, guest, f"line {n}: ") for n, line in enumerate(_lines(text), 1)]
    if not keys:
        raise KeySourceError("holds no key line; give " + ("your guest's .pub file" if guest else "your .pub file"))
    return keys


def _from_url(url: str, guest: bool) -> Found:
    """A keys page by its address, of a supported site only: pairing fetches nothing else."""
    parts = urllib.parse.urlsplit(url)
    site = SITE_HOSTS.get((parts.hostname or "").lower()) if parts.scheme.lower() in ("http", "https") else None
    user = parts.path.strip("/").removesuffix(".keys")
    if site is None or not USER_NAME.fullmatch(user) or parts.query or parts.fragment:
        raise KeySourceError(f"not a keys page pairing fetches; give {FORMS}")
    return _from_site(site, SHORT[site], user, guest)


def _from_site(site: str, prefix: str, user: str, guest: bool) -> Found:
    user = user.removeprefix("@")  # as the sites show a user: @octocat
    if not user:
        raise KeySourceError(f"no user name after {prefix}:; write {prefix}:USER, their {site} user name, "
                             f"e.g. {prefix}:octocat")
    if not USER_NAME.fullmatch(user):
        raise KeySourceError(f"{shorten(user)!r} is not a {site} user name")
    url = KEY_PAGES[site].format(user=user)
    try:
        text = _fetch(url).decode("utf-8", "replace")
    except _TooSlow:
        raise KeySourceError(f"{url} did not answer within {FETCH_TIMEOUT} s; try again, "
                             "or give their .pub file") from None
    except _TooLarge:
        raise KeySourceError(f"{url} sent more than {PAGE_LIMIT // 1024} KiB, which is no keys "
                             "page; give their .pub file") from None
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            raise KeySourceError(f"no such {site} user ({url} answered 404)") from None
        raise KeySourceError(f"{url} answered {exc.code} {exc.reason}; try again, or give their .pub file") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise KeySourceError(f"cannot fetch {url} ({reason}); give their .pub file instead") from None
    lines = _lines(text)
    if not lines:
        raise KeySourceError(f"{site} has no public SSH keys for {user}; ask them to add one, or give their .pub file")
    return Found([_parse(line, guest, f"{url}: ") for line in lines], user=user)


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
