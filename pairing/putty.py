"""`pairing invite --putty KEY.ppk`: the one plink command for a guest with PuTTY, and the same in PuTTY's window.

Both hops pinned with plink's -hostkey (a SHA256 fingerprint: PuTTY then checks only against it,
never its own host key cache); the relay hop is a local proxy command, `plink -nc`, through the
relay's port forward. Pure: validated route and key path in, text out.

The line must mean the same in cmd.exe, PowerShell and a POSIX shell: one pair of double quotes
around the proxy command and nothing any of them, or plink's own %- and backslash-escapes in a
proxy command, would act on. So the key's path is held to a plain character set, not escaped.
"""

from __future__ import annotations

import re

from .accounts import GUEST_USER
from .guest_documents import DirectRoute, GuestRoute
from .shared_ports import plink_forwards
from .sshkeys import shorten
from .text import UnsafeText, printable

# Letters, digits and . _ - / : (C:/Users/bob/key.ppk works on Windows too), never a leading "-".
KEY_PATH = re.compile(r"[A-Za-z0-9._/:][A-Za-z0-9._/:-]*")
PLAIN = re.compile(r"[A-Za-z0-9._/:+ -]+")  # every word of the command, and the proxy command with its spaces
# The name plink is given for the host: any but localhost, which PuTTY connects to straight, never through
# a proxy (its "Consider proxying local host connections" is off). The proxy command alone is dialled.
HOST_NAME = "pairing-host"


class PuttyKeyError(ValueError):
    """A --putty path the command cannot carry as it is; the message says what to give instead."""


def check_key_path(text: str) -> str:
    if KEY_PATH.fullmatch(text):
        return text
    raise PuttyKeyError(f"--putty {shorten(text)!r}: use a path of letters, digits and . _ - / : only (no spaces, "
                        "no ~; on Windows write / for \\), e.g. run the command in the key's folder and give --putty "
                        "KEY.ppk")


def _plain(word: str) -> str:
    if not PLAIN.fullmatch(word):
        raise UnsafeText(f"{word!r} does not belong in the plink command; refusing to write it")  # validated values never do
    return printable(word, "the plink command")


def relay_proxy(route: GuestRoute, key_path: str) -> str:
    """The relay hop: plink's own proxy command. -batch: it has no terminal to ask on."""
    words = ["plink", "-ssh", "-batch", "-i", key_path, "-l", GUEST_USER, "-P", str(route.relay_port),
             "-hostkey", route.relay_host_key.fingerprint, "-nc", f"localhost:{route.tunnel_port}", route.relay_address]
    return _plain(" ".join(words))


def plink_command(route: GuestRoute, key_path: str) -> str:
    """The whole command: the host's sshd through the relay, a terminal, both hops pinned."""
    words = ["plink", "-ssh", "-t", "-batch", "-i", key_path, "-l", route.host_user, "-P", str(route.tunnel_port),
             "-hostkey", route.host_sshd_key.fingerprint, *plink_forwards(route.shared), "-proxycmd", f'"{relay_proxy(route, key_path)}"', HOST_NAME]
    return printable(" ".join(_plain(w) if not w.startswith('"') else w for w in words), "the plink command")


def window_steps(route: GuestRoute, key_path: str) -> list[str]:
    """The same in PuTTY's configuration window: the settings plink is given, one by one."""
    return [
        f"Session: Host Name {HOST_NAME}, Port {route.tunnel_port}, Connection type SSH",
        f"Connection > Data: Auto-login username {route.host_user}",
        "Connection > Proxy: Proxy type Local, and as the local proxy command:",
        f"    {relay_proxy(route, key_path)}",
        f"Connection > SSH > Host keys: Manually configure host keys: add {route.host_sshd_key.fingerprint}",
        f"Connection > SSH > Auth > Credentials (Auth before PuTTY 0.77): Private key file {key_path}",
        *(f"Connection > SSH > Tunnels: Source port {p.guest}, Destination localhost:{p.host}, Local, then Add"
          for p in route.shared),
        "then Open (save the session first to use it again)",
    ]


def direct_plink_command(route: DirectRoute, key_path: str) -> str:
    """`pairing direct`'s: one hop, straight to the host's sshd, its key pinned; no proxy."""
    words = ["plink", "-ssh", "-t", "-batch", "-i", key_path, "-l", route.host_user, "-P", str(route.port),
             "-hostkey", route.host_sshd_key.fingerprint, route.address]
    return printable(" ".join(_plain(w) for w in words), "the plink command")


def direct_window_steps(route: DirectRoute, key_path: str) -> list[str]:
    return [
        f"Session: Host Name {_plain(route.address)}, Port {route.port}, Connection type SSH",
        f"Connection > Data: Auto-login username {_plain(route.host_user)}",
        f"Connection > SSH > Host keys: Manually configure host keys: add {route.host_sshd_key.fingerprint}",
        f"Connection > SSH > Auth > Credentials (Auth before PuTTY 0.77): Private key file {key_path}",
        "then Open (save the session first to use it again)",
    ]
