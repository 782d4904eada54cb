"""Validated settings -> the documents the relay boots with.

Pure functions: the same settings and host key always give byte-identical
documents (a changed user data replaces the instance, so stability matters).
The static parts live in cloud-init/ beside this file (shipped in the package) and are read once
at import.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from string import Template

import base64

import yaml

from .accounts import GUEST_USER, KEYS_USER, TUNNEL_USER
from .settings import ConfigError, Settings
from .sshkeys import PublicKey
from .text import printable

TEMPLATES = Path(__file__).resolve().parent / "cloud-init"
SSHD_DROPIN_PATH = "/etc/ssh/sshd_config.d/10-pairing.conf"
# Written aside (sshd reads only *.conf there) and moved in by runcmd only if `sshd -t`
# accepts it: an sshd that does not know an option refuses to start.
SSHD_PENALTIES_PATH = "/etc/ssh/sshd_config.d/11-pairing-penalties.conf"
SSHD_PENALTIES_CANDIDATE = SSHD_PENALTIES_PATH + ".if-supported"
TTL_SCRIPT_PATH = "/usr/local/sbin/pairing-ttl"
# The relay's live guest list and end: the tunnel account's forced command, the guests' AuthorizedKeysCommand.
GUESTS_SCRIPT_PATH = "/usr/local/sbin/pairing-guests"
TTL_UNIT_DIR = "/etc/systemd/system"
# sshd drops a silent client after interval x (count + 1) seconds, freeing its port: 7 s.
# OpenSSH 9.2 (Debian 12) checks only every other interval, so there it takes twice that
# (measured: 16 s with 2 x 3, 40 s with 5 x 3). tests/test_faults.py measures it. A short
# interval also frees the port soon after an outage: the first probe of the dead
# connection once the network is back draws the host's reset.
CLIENT_ALIVE_INTERVAL, CLIENT_ALIVE_COUNT = 1, 6
# EC2 refuses user data over 16 KiB.
USER_DATA_LIMIT = 16 * 1024

# authorized_keys has no "none" for permitopen/permitlisten. A destination in
# the reserved .invalid domain (RFC 2606) never resolves, and port 1 is
# privileged, which sshd never lets a non-root account listen on.
NOWHERE = "none.invalid:1"



def _without_comments(text: str) -> str:
    """A file of ours as the relay gets it: its comment lines left out (they are read here, in the repository),
    for EC2's 16 KiB of user data. A first line `#!` stays; no line of ours starts a string with `#`."""
    lines = text.splitlines(keepends=True)
    return "".join(line for number, line in enumerate(lines)
                   if not line.lstrip().startswith("#") or (number == 0 and line.startswith("#!")))


_BASE_CONFIG = yaml.safe_load((TEMPLATES / "cloud-config.yaml").read_text())
_SSHD_DROPIN = Template(_without_comments((TEMPLATES / "sshd_config.d" / "10-pairing.conf").read_text()))
_SSHD_PENALTIES = _without_comments((TEMPLATES / "sshd_config.d" / "11-pairing-penalties.conf").read_text())
_TTL_SCRIPT = _without_comments((TEMPLATES / "pairing-ttl").read_text())
_GUESTS_SCRIPT = Template(_without_comments((TEMPLATES / "pairing-guests").read_text()))
_TTL_UNITS = {name: (TEMPLATES / "systemd" / name).read_text() for name in ("pairing-ttl.service", "pairing-ttl.timer")}


@dataclass(frozen=True)
class RelayHostKey:
    """The relay's ED25519 host key pair, in OpenSSH formats."""

    private_openssh: str
    public_openssh: str


def _placeholder_host_key() -> RelayHostKey:
    """Text of exactly the size of the ED25519 key pulumi_tls makes, and no key at all.

    An OpenSSH ED25519 private key without passphrase or comment is always 234
    bytes (header, "none" cipher and kdf, the 51-byte public blob, the private
    section padded to 8), so 312 base64 characters in 5 lines whether wrapped at
    70 (OpenSSH) or 64 (Go's PEM, as pulumi_tls). The public line is always
    68 base64 characters. Zeros, so it holds no secret and matches no key.
    """
    body = base64.b64encode(bytes(234)).decode()
    lines = [body[i:i + 70] for i in range(0, len(body), 70)]
    private = "-----BEGIN OPENSSH PRIVATE KEY-----\n" + "\n".join(lines) + "\n-----END OPENSSH PRIVATE KEY-----\n"
    public = "ssh-ed25519 " + base64.b64encode(b"\0\0\0\x0bssh-ed25519\0\0\0\x20" + bytes(32)).decode()
    return RelayHostKey(private, public)


PLACEHOLDER_HOST_KEY = _placeholder_host_key()


def check_user_data_size(settings: Settings) -> None:
    """Refuse too large a user data up front: the real host key exists only once Pulumi
    made it (inside an apply, after resources were registered), but its size is fixed."""
    user_data(settings, PLACEHOLDER_HOST_KEY)


def guest_options(tunnel_port: int) -> str:
    """A guest may open localhost:<port> on the relay, and nothing else: what pairing-guests puts before each key.

    `restrict` alone still runs commands, so a forced command ends any session,
    and `port-forwarding` allows listening too, so the listen is sent nowhere.
    """
    return f'restrict,port-forwarding,permitopen="localhost:{tunnel_port}",permitlisten="{NOWHERE}",command="/usr/sbin/nologin"'


def guest_key_line(key: PublicKey, tunnel_port: int) -> str:
    """A guest's key line as the relay's sshd reads it from pairing-guests (its AuthorizedKeysCommand)."""
    options = guest_options(tunnel_port)
    # The comment (the guest's name, see pairing.names) is kept: sshd ignores it, and a line break in it,
    # which would make a second key line, is refused here whatever the caller checked.
    return printable(f"{options} {key.line}", "a guest's key line on the relay")


def tunnel_key_line(key: PublicKey, tunnel_port: int) -> str:
    """The host's key may listen on localhost:<port> on the relay, and nothing else.

    In particular it may open no outbound connection, so it cannot reach the
    instance metadata service. Its one command is pairing-guests: set the relay's guest list or end.
    """
    options = f'restrict,port-forwarding,permitlisten="localhost:{tunnel_port}",permitopen="{NOWHERE}",command="{GUESTS_SCRIPT_PATH}"'
    return f"{options} {key.line}"


def guests_script(settings: Settings) -> str:
    """pairing-guests as the relay runs it: the restrictions it adds to each guest's key name this port."""
    return _GUESTS_SCRIPT.substitute(guest_options=repr(guest_options(settings.tunnel_port)))


def sshd_dropin(settings: Settings) -> str:
    return _SSHD_DROPIN.substitute(
        guest_user=GUEST_USER,
        tunnel_user=TUNNEL_USER,
        keys_user=KEYS_USER,
        guests_command=GUESTS_SCRIPT_PATH,
        tunnel_port=settings.tunnel_port,
        client_alive_interval=CLIENT_ALIVE_INTERVAL,
        client_alive_count=CLIENT_ALIVE_COUNT,
        client_alive_seconds=CLIENT_ALIVE_INTERVAL * (CLIENT_ALIVE_COUNT + 1),
    )


BACKSTOP_UNIT = "pairing-ttl-backstop"
LATEST_UNIT = "pairing-ttl-latest"


def backstop_command(ttl_minutes: int, latest_minutes: int) -> str:
    """Transient systemd timers: a TTL after boot, `pairing-ttl check` (which powers off unless the end was
    moved, or cannot be read), or poweroff if even that fails; at the latest end, poweroff whatever was moved.

    In the background: cloud-init's init stage runs before sysinit.target, and systemd-run
    waits on D-Bus, which starts only after it; waiting here deadlocks the boot (seen under
    QEMU). cloud-init.service remains active after exit, so the job is not killed with it.
    """
    timer = "--timer-property=AccuracySec=1s"
    return (
        "[ ! -d /run/systemd/system ] || "  # sd_booted(3): only a chroot lacks it
        f"{{ systemd-run --unit={BACKSTOP_UNIT} --on-active={ttl_minutes}min {timer} "
        f"sh -c '{TTL_SCRIPT_PATH} check || systemctl poweroff' || systemctl poweroff; "
        f"systemd-run --unit={LATEST_UNIT} --on-active={latest_minutes}min {timer} systemctl poweroff "
        "|| systemctl poweroff; } &"
    )


def _account(name: str, gecos: str, key_lines: list[str], shell: str = "/usr/sbin/nologin") -> dict:
    account = {"name": name, "gecos": gecos, "shell": shell, "lock_passwd": True}
    return {**account, "ssh_authorized_keys": key_lines} if key_lines else account


def _file(path: str, content: str, permissions: str = "0644") -> dict:
    return {"path": path, "owner": "root:root", "permissions": permissions, "content": content}


def cloud_config(settings: Settings, host_key: RelayHostKey) -> dict:
    """The relay's cloud-config as a mapping (see user_data for the text).

    No guest's key is in it: the host sets the live list at run time (pairing-guests), so adding or
    kicking a guest, or moving the end, never changes the instance.
    """
    return {
        **_BASE_CONFIG,
        "users": [
            _account(GUEST_USER, "pairing guests (forward to the host only)", []),
            # A shell, for sshd runs a forced command through it: sshd forces pairing-guests on every
            # session (ForceCommand, and the key's command=), so no other command ever reaches it.
            _account(TUNNEL_USER, "pairing host (reverse tunnel, guest list)",
                     [tunnel_key_line(settings.host_public_key, settings.tunnel_port)], shell="/bin/sh"),
            {"name": KEYS_USER, "gecos": "pairing guest list reader (for sshd)", "system": True,
             "shell": "/usr/sbin/nologin", "lock_passwd": True, "no_create_home": True},
        ],
        "ssh_keys": {
            "ed25519_private": host_key.private_openssh.strip() + "\n",
            "ed25519_public": host_key.public_openssh.strip(),
        },
        "write_files": [
            _file(SSHD_DROPIN_PATH, sshd_dropin(settings)),
            _file(SSHD_PENALTIES_CANDIDATE, _SSHD_PENALTIES),
            _file(TTL_SCRIPT_PATH, _TTL_SCRIPT, "0755"),
            _file(GUESTS_SCRIPT_PATH, guests_script(settings), "0755"),
            *(_file(f"{TTL_UNIT_DIR}/{name}", text) for name, text in _TTL_UNITS.items()),
        ],
        # The TTL's backstop, first thing at every boot and needing no file of ours: if
        # cloud-init dies before runcmd (so nothing is armed and no timer enabled), this
        # still powers the relay off a TTL after boot. Not in a chroot (no systemd).
        "bootcmd": [["sh", "-c", backstop_command(settings.ttl_minutes, settings.max_ttl_minutes)]],
        "runcmd": [
            [TTL_SCRIPT_PATH, "arm", str(settings.ttl_minutes), str(settings.max_ttl_minutes), TUNNEL_USER],
            # Not `enable --now`: enable (which reloads units) then start, so that a
            # chroot, where systemd ignores `start`, can run the same document.
            ["systemctl", "enable", "pairing-ttl.timer"],
            ["systemctl", "start", "pairing-ttl.timer"],
            ["sh", "-c", _INSTALL_PENALTIES],
        ],
    }


# Already running, sshd rereads its config on reload; sessions are unaffected.
_INSTALL_PENALTIES = (
    f"mv {SSHD_PENALTIES_CANDIDATE} {SSHD_PENALTIES_PATH} && "
    f"{{ /usr/sbin/sshd -t 2>/dev/null || rm {SSHD_PENALTIES_PATH}; }} && systemctl try-reload-or-restart ssh"
)


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (scripts, keys) as literal blocks, readable in the console."""


def _str_representer(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_Dumper.add_representer(str, _str_representer)


def user_data(settings: Settings, host_key: RelayHostKey) -> str:
    """The #cloud-config document EC2 hands to cloud-init at first boot."""
    body = yaml.dump(cloud_config(settings, host_key), Dumper=_Dumper, sort_keys=False, width=4096)
    text = "#cloud-config\n" + body
    if len(text.encode()) > USER_DATA_LIMIT:
        # Guests' keys are no longer in it: only a long hostPublicKey (RSA) can make it grow.
        raise ConfigError(
            f"pairing:hostPublicKey: the relay's user data is {len(text.encode())} bytes, over EC2's "
            f"{USER_DATA_LIMIT}; use a shorter (ed25519) key"
        )
    return text


def preauth_limits() -> dict[str, str]:
    """The relay's limits on unauthenticated connections, option -> its whole line, as its sshd gets them
    (MaxStartups, PerSourceMaxStartups; PerSourcePenalties where that sshd knows it): the host's own sshd
    takes the same (hook/sshd.py)."""
    lines = _SSHD_DROPIN.template.splitlines() + _SSHD_PENALTIES.splitlines()
    wanted = ("MaxStartups", "PerSourceMaxStartups", "PerSourcePenalties")
    return {line.split()[0]: line.strip() for line in lines if line.split()[:1] and line.split()[0] in wanted}
