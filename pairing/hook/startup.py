"""What the host's shell runs before each guest's gate, and proof that the gate runs first.

sshd runs a key's forced command through the host user's login shell (`$SHELL -c COMMAND`), and that
shell reads startup files first: bash ~/.bashrc (sshd's commands are the one non-interactive case where
bash reads it), zsh ~/.zshenv, fish config.fish, tcsh ~/.tcshrc. An unguarded `exec tmux` there gave a
viewer a writable tmux client that the hook never saw. pairing's own sshd sets HOME, for its sessions
only, to an empty folder of its own (no user startup file is found there) and SHLVL=1 (bash reads
~/.bashrc and /etc/bash.bashrc for sshd only at level 1). System files (/etc/zsh/zshenv, /etc/fish/...)
still run. So it does not guess: once its sshd is up, the hook logs in through it with a one-use key
forced to print a marker, under a pty, and warns in one line, naming the file and line that runs first,
unless the marker is all that arrives. With --target (the system's sshd) nothing can be set: the hook and
`pairing doctor` run the login shell as sshd would (same environment words, a pty) with the same marker.
"""

from __future__ import annotations

import io
import os
import pty
import pwd
import secrets
import select
import tempfile
import time
from pathlib import Path

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ..forced_command import guest_line
from ..sshkeys import PublicKey, parse_public_key
from ..text import shown

PROBE_TIMEOUT = 5.0
# What to put first in that file, so that it does nothing for a command sshd runs.
GUARD = {"bash": "[[ $- == *i* ]] || return", "zsh": "[[ -o interactive ]] || return",
         "fish": "status is-interactive; or exit", "tcsh": "if (! $?prompt) exit", "csh": "if (! $?prompt) exit"}


def quiet_home(folder: Path) -> Path:
    """The empty folder (made by PrivateSshd.start) that the own sshd's sessions get as HOME."""
    return folder / "no-startup"


def quiet_environment(folder: Path) -> dict[str, str]:
    """What the own sshd sets for its sessions (SetEnv) so that no user startup file runs before the gate."""
    return {"HOME": str(quiet_home(folder)), "SHLVL": "1"}


class ProbeFailed(Exception):
    """The test login itself did not happen: nothing learnt about the startup files."""


def own_sshd_warning(sshd, host_key: PublicKey) -> str | None:
    """The marker's login through the own sshd (hook/sshd.PrivateSshd, started): None, or the one-line warning."""
    shell, _, home = login_shell()
    try:
        arrived = probe_sshd(sshd.address, sshd.port, sshd.user, host_key,
                             lambda line: sshd.set_guests([*sshd.guest_lines, line]),
                             lambda line: sshd.set_guests([kept for kept in sshd.guest_lines if kept != line]))
    except ProbeFailed as exc:
        return (f"could not check what your login shell {shell} runs before each guest's gate: a test login through "
                f"your own sshd failed ({exc}); `pairing doctor` tries it without sshd")
    return warning(shell, home, arrived)


def shell_warning(own_sshd: bool) -> str | None:
    """Without an sshd (`pairing doctor`; --target's sshd sets nothing): the login shell run here as sshd would
    run the gate, with the own sshd's environment words if own_sshd. None, or the one-line warning."""
    shell, user, home = login_shell()
    if not own_sshd:
        return warning(shell, home, probe_shell(shell, user, home))
    with tempfile.TemporaryDirectory(prefix="pairing-no-startup-") as empty:
        return warning(shell, home, probe_shell(shell, user, home, {**quiet_environment(Path(empty)), "HOME": empty}))


def startup_files(shell: str, home: Path) -> list[Path]:
    """The files `shell -c` reads when sshd runs it: the user's (what they can change) before the system's."""
    config = home / ".config"
    return {
        "bash": [home / ".bashrc", Path("/etc/bash.bashrc")],
        "zsh": [home / ".zshenv", Path("/etc/zsh/zshenv"), Path("/etc/zshenv")],
        "fish": [*sorted((config / "fish/conf.d").glob("*.fish")), config / "fish/config.fish",
                 Path("/etc/fish/config.fish")],
        "tcsh": [home / ".tcshrc", Path("/etc/csh.cshrc")],
        "csh": [home / ".cshrc", Path("/etc/csh.cshrc")],
    }.get(Path(shell).name, [])


def first_line(files: list[Path]) -> str:
    """`FILE line N (TEXT)` of the first command in the first of `files` that has one; else what to look at."""
    for path in files:
        try:
            lines = path.read_text(errors="replace").splitlines()
        except OSError:
            continue
        for number, text in enumerate(lines, 1):
            if text.strip() and not text.lstrip().startswith("#"):
                return f"{path} line {number} ({shown(text.strip()[:60])})"
    return f"one of {', '.join(map(str, files))}" if files else "its startup files"


def warning(shell: str, home: Path, arrived: bytes | None, files: list[Path] | None = None) -> str | None:
    """None if the marker alone arrived; else the one line saying what runs before each guest's gate."""
    if arrived == b"":
        return None
    seen = "no marker within 5 s" if arrived is None else f"{arrived[:40].decode(errors='replace')!r} besides the marker"
    where = first_line(startup_files(shell, home) if files is None else files)
    guard = GUARD.get(Path(shell).name)
    fix = f"put `{guard}` first in it" if guard else "make it do nothing when not interactive"
    return (f"your login shell {shell} runs {where} before each guest's gate (a test login saw {seen}): "
            f"whatever it starts, a guest gets, unseen by pairing who; {fix}")


def _marker_line(key: PublicKey, marker: str) -> str:
    return guest_line(key, f"printf %s {marker}")


def probe_sshd(address: str, port: int, user: str, host_key: PublicKey, add_line, remove_line) -> bytes | None:
    """Log in through the sshd at address:port (its host key pinned) with a one-use key forced to print a
    marker, under a pty. add_line(line)/remove_line(line) put the key in its authorized_keys and out.
    Returns what arrived before the marker (b"": the marker came first and alone; None: it never came)."""
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption()).decode()
    pkey = paramiko.Ed25519Key.from_private_key(io.StringIO(pem))
    marker = secrets.token_hex(12)
    line = _marker_line(parse_public_key(f"{pkey.get_name()} {pkey.get_base64()} pairing-probe"), marker)
    add_line(line)
    transport = None
    try:
        transport = paramiko.Transport((address, port))
        transport.start_client(timeout=PROBE_TIMEOUT)
        if transport.get_remote_server_key().get_base64() != host_key.blob:
            raise ProbeFailed(f"{address} port {port} answered with another host key")
        transport.auth_publickey(user, pkey)
        channel = transport.open_session(timeout=PROBE_TIMEOUT)
        channel.get_pty(term="dumb", width=80, height=24)
        channel.exec_command("probe")
        channel.settimeout(0.2)
        return _until(marker.encode(), lambda: _recv(channel))
    except (paramiko.SSHException, OSError) as exc:
        raise ProbeFailed(shown(str(exc)[:100]) or type(exc).__name__) from None
    finally:
        if transport:
            transport.close()
        remove_line(line)


def _recv(channel: paramiko.Channel) -> bytes | None:
    """Bytes; None: none yet; b"": the end."""
    try:
        return channel.recv(4096)
    except TimeoutError:
        return None
    except OSError:
        return b""


def probe_shell(shell: str, user: str, home: Path, environment: dict[str, str] | None = None) -> bytes | None:
    """The login shell run as sshd runs a forced command (`shell -c`, sshd's environment words, a pty),
    here without any sshd: what arrives before the marker (b"": nothing; None: no marker)."""
    marker = secrets.token_hex(12)
    env = {"USER": user, "LOGNAME": user, "HOME": str(home), "SHELL": shell, "PATH": "/usr/bin:/bin:/usr/sbin:/sbin",
           "SSH_CLIENT": "127.0.0.1 50000 22", "SSH_CONNECTION": "127.0.0.1 50000 127.0.0.1 22", "TERM": "dumb",
           **(environment or {})}
    pid, fd = pty.fork()
    if pid == 0:  # the child: nothing of this process's but the terminal
        try:
            os.chdir(home)
        except OSError:
            pass
        os.execve(shell, [Path(shell).name, "-c", f"printf %s {marker}"], env)  # argv as sshd's
    try:
        return _until(marker.encode(), lambda: _read(fd))
    finally:
        os.close(fd)
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
        os.waitpid(pid, 0)


def _read(fd: int) -> bytes | None:
    """Bytes; None: none yet; b"": the end."""
    if not select.select([fd], [], [], 0.2)[0]:
        return None
    try:
        return os.read(fd, 4096) or b""
    except OSError:  # EIO: the shell ended
        return b""


def _until(marker: bytes, read) -> bytes | None:
    """Read (read(): bytes, None for none yet, b"" at the end) until the marker has come and the output
    ended, or PROBE_TIMEOUT: what came besides the marker (b"": nothing); None if the marker never came."""
    seen, deadline = b"", time.monotonic() + PROBE_TIMEOUT
    while time.monotonic() < deadline:
        chunk = read()
        if chunk == b"":
            break
        seen += chunk or b""
    if marker not in seen:
        return None
    before, _, after = seen.partition(marker)
    return before + after


def login_shell() -> tuple[str, str, Path]:
    """(shell, user, home) of this process's user: the shell sshd runs (the account's), the home its files are
    in ($HOME, which login sets to the account's: a tool run with another HOME is looked at there)."""
    account = pwd.getpwuid(os.geteuid())
    return account.pw_shell or "/bin/sh", account.pw_name, Path.home()
