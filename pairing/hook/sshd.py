"""The host's own sshd: the system's OpenSSH `sshd` run as the host user (no root), for guests only:
127.0.0.1 on a free port (the tunnel's target), the host user only, publickey only, its own
AuthorizedKeysFile of guests' forced-command lines, no forwarding but a guest line's `permitopen` to a port of
this machine's loopback the host shares (shared_ports.py), the relay's algorithms (ssh-audit
fails nothing). Its host key, made once under the data folder, is what guests pin.

Run as a normal user (OpenSSH 9.2 and 10.0 alike) sshd needs no /run/sshd (only root's chroots there),
lets in only that user, and gives a guest a pty only if /dev/pts hands new terminals the tty group
(gid=5,mode=620, as systemd mounts it): else its chown fails and it ends the session.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ..sshkeys import PublicKey, public_half
from .ports import answers as _answers, endpoint, family as _family
from ..text import printable
from .sshd_config import SshdError, render_config, sshd_address
from .startup import quiet_home
from .sshd_log import SshdLog, accepted_fingerprints, too_old, why_it_stopped  # noqa: F401 (accepted_fingerprints: re-exported)

KEY_NAME = "ssh_host_ed25519_key"
START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
TTY_GID = 5  # Debian's tty group, which sshd gives each guest's pty

def host_key(data: Path) -> PublicKey:
    """The public half of this host's sshd key, made (ED25519, mode 600) the first time. Never replaces
    one (guests pinned it): made under a temp name and linked into place, a crash leaves no half key."""
    path = key_path(data)
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption())
        fd, temp = tempfile.mkstemp(prefix=f".{KEY_NAME}.", dir=path.parent)  # mode 600
        try:
            os.write(fd, pem), os.fsync(fd), os.close(fd)
            with contextlib.suppress(FileExistsError):  # another hook made it meanwhile: theirs is the one
                os.link(temp, path)
        finally:
            os.unlink(temp)
    info = path.stat()
    if stat.S_IMODE(info.st_mode) & 0o077 or info.st_uid != os.geteuid():
        raise SshdError(f"{path} is readable by others or not yours; sshd refuses such a key: chmod 600 {path}")
    key = public_half(path.read_text(errors="replace"))
    if key is None or key.kind != "ssh-ed25519":
        raise SshdError(f"{path} is not an OpenSSH ED25519 private key; move it away and run again to make a new one")
    return key


def key_path(data: Path) -> Path:
    return data / "sshd" / KEY_NAME


def find_sshd() -> Path:
    """The system's sshd, by absolute path: it re-executes itself for each connection and refuses a relative one."""
    found = shutil.which("sshd", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    if found is None:
        raise SshdError("no OpenSSH sshd found (looked in PATH, /usr/sbin, /sbin); install it: sudo apt-get install openssh-server")
    return Path(os.path.abspath(found))


def strict_modes_problem(path: Path, uid: int, home: str) -> str | None:
    """What sshd's StrictModes (auth.c safe_path) would refuse about `path`: it and each folder
    above it, up to the home or /, must belong to `uid` or root and be writable by no one else."""
    real, home = Path(os.path.realpath(path)), Path(os.path.realpath(home)) if home else None
    for at in [real, *real.parents]:
        info = at.stat()
        if info.st_uid not in (0, uid) or info.st_mode & 0o022:
            return f"{at} (mode {stat.S_IMODE(info.st_mode):o}, uid {info.st_uid}) is writable by others or not yours"
        if at == home:  # sshd looks no higher
            return None
    return None


def pty_problem() -> str | None:
    """Whether sshd may hand a new pty to its user: already in the tty group, or a group chown allows."""
    master, slave = os.openpty()
    gid = os.fstat(slave).st_gid
    os.close(master), os.close(slave)
    if gid == TTY_GID or TTY_GID in os.getgroups() or os.getegid() == TTY_GID:
        return None
    return (f"new terminals under /dev/pts get group {gid}, not tty ({TTY_GID}), and sshd, run as you, may not change "
            "that: guests would be cut off; mount devpts with gid=5,mode=620 (as systemd does)")


# Between the hook and sshd: ends sshd and every session of it, even when the hook is SIGKILLed.
REAPER = Path(__file__).with_name("reaper.py")


class PrivateSshd:
    """The host's sshd in `folder` (made mode 700): its config, guests' keys, PID file and log.
    `with PrivateSshd(folder, key_path(data), lines) as sshd:` ... the tunnel's target is sshd.port."""

    def __init__(self, folder: Path, host_key_file: Path, guest_lines: list[str], port: int | None = None,
                 address: str = "127.0.0.1", avoid: frozenset[int] = frozenset(), tunneled: bool = True,
                 warn: Callable[[str], None] | None = None) -> None:
        """avoid: ports not to take when picking a free one (the host's shared ports); tunneled: guests come
        through the tunnel (`pairing host`); warn: told of connections turned away."""
        self.folder, self.host_key_file, self.guest_lines, self.avoid = folder, host_key_file, list(guest_lines), avoid
        self.address, self.tunneled, self.warn = sshd_address(address), tunneled, warn
        self.fixed_port, self.port = port, port or 0
        self.log, self.config, self.authorized_keys = folder / "sshd.log", folder / "sshd_config", folder / "authorized_keys"
        self.process: subprocess.Popen | None = None
        self.nonce = ""  # this run's banner word (render_config), made at each start
        account = pwd.getpwuid(os.geteuid())
        self.user, self.home = account.pw_name, account.pw_dir

    def __enter__(self) -> PrivateSshd:
        return self.start() or self

    def __exit__(self, *_) -> None:
        self.stop()

    def set_guests(self, lines: list[str]) -> None:
        """Replace the guests' key lines (atomically; sshd reads the file at each login)."""
        text = "".join(printable(line, "a guest's key line") + "\n" for line in lines)
        fd, temp = tempfile.mkstemp(prefix=".authorized_keys.", dir=self.folder)  # mode 600
        os.write(fd, text.encode()), os.close(fd)
        os.replace(temp, self.authorized_keys)
        self.guest_lines = list(lines)

    def start(self) -> None:
        """Write the files and start sshd; returns once it answers on address:port."""
        sshd = find_sshd()
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.folder, 0o700)
        quiet_home(self.folder).mkdir(mode=0o700, exist_ok=True)
        for problem in (strict_modes_problem(self.folder, os.geteuid(), self.home), pty_problem()):
            if problem:
                raise SshdError(f"the host's sshd cannot serve guests here: {problem}")
        self.set_guests(self.guest_lines)
        penalties = None
        for _ in range(3):  # a free port may be taken before sshd binds it: pick another
            self.port = self.fixed_port or _free_port(self.address)
            if self.port in self.avoid:
                continue
            if penalties is None:
                penalties = self._knows_penalties(sshd)
            self.nonce = f"pairing-{secrets.token_hex(8)}"
            self.config.write_text(render_config(self.user, self.port, self.folder, self.host_key_file, self.address,
                                                 self.nonce, self.tunneled, penalties))
            if self._run(sshd):
                return
        raise SshdError(f"the host's sshd found no free port on {self.address}: each one it was given was taken at once")

    @property
    def endpoint(self) -> str:
        """address:port as a user types it ([v6]:port)."""
        return endpoint(self.address, self.port)

    def _knows_penalties(self, sshd: Path) -> bool:
        """Whether this sshd takes PerSourcePenalties (9.8+; 9.2 refuses to start with it): `sshd -t` says."""
        self.config.write_text(render_config(self.user, self.port, self.folder, self.host_key_file, self.address,
                                             tunneled=self.tunneled, penalties=True))
        tested = subprocess.run([str(sshd), "-t", "-f", str(self.config)], capture_output=True, text=True,
                                stdin=subprocess.DEVNULL)
        return tested.returncode == 0 or "PerSourcePenalties" not in tested.stderr

    def _run(self, sshd: Path) -> bool:
        """Start it; True once it answers with this run's nonce (no other sshd's answer will do: one of the same
        host key on that port would pass any other probe), False if its port was taken meanwhile."""
        argv = [sys.executable, "-I", "-S", str(REAPER), str(os.getpid()),
                str(sshd), "-D", "-e", "-f", str(self.config)]  # -e: its log to the pipe (sshd_log: capped)
        self.logged = SshdLog(self.log, self.warn)  # the running sshd's
        out = self.logged.start()
        try:
            self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                            start_new_session=True)  # a Ctrl-C at the terminal is the hook's
        finally:
            os.close(out)
        deadline = time.monotonic() + START_TIMEOUT
        while not _answers(self.address, self.port, self.nonce):
            late = time.monotonic() > deadline
            if late or self.process.poll() is not None:
                self.stop()
                logged = self.logged.text()
                if not self.fixed_port and "Address already in use" in logged:
                    return False
                said = why_it_stopped(logged)
                what = f"did not answer on {self.endpoint} within {START_TIMEOUT:.0f} s" if late else "did not start"
                raise SshdError(f"the host's sshd {what}: {said} (log: {self.log}){too_old(sshd, said)}")
            time.sleep(0.02)
        return True

    def stop(self) -> None:
        """End sshd and every session it holds, by the watcher's PID (it turns to SIGKILL itself past 3 s)."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()  # the listener still ends with it (its own PDEATHSIG)




def _free_port(address: str = "127.0.0.1") -> int:
    try:
        with socket.create_server((address, 0), family=_family(address)) as sock:
            return sock.getsockname()[1]
    except OSError as exc:  # e.g. an address this machine does not have
        raise SshdError(f"the host's sshd cannot listen on {address}: {exc.strerror or exc}; give an address of "
                        "this machine (`ip -brief address` lists them)") from None
