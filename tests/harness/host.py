"""The host's side of an end-to-end test, all real: a private sshd, the hook as
its own process, tmux servers on private sockets, and guests' OpenSSH clients
driven through their own terminals (tmux panes).

Nothing here reads or writes the machine's own ~/.ssh, /etc/ssh or tmux
server: every sshd, tmux and ssh gets its files from a temp folder.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .keys import KeyFile, make_key

PROJECT = Path(__file__).resolve().parents[2]


def wait_until(condition: Callable[[], object], timeout: float, what: str, interval: float = 0.05,
               show: Callable[[], str] | None = None):
    """Poll until condition() is truthy; fail saying what did not happen (and what `show` shows)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            seen = f"; saw:\n{show()}" if show else ""
            raise AssertionError(f"timed out after {timeout} s waiting for {what}{seen}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_process(process: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 10) -> None:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class HostSshd:
    """The host's sshd: a private instance on 127.0.0.1 with its own config and keys.

    It runs in a private mount namespace with a tmpfs on /run, because sshd
    insists on /run/sshd and the machine's own /run is not ours to change, and
    with a private /etc/passwd bind-mounted in that namespace only, where root's
    home is a temp folder: a guest's login then never reads this machine's
    dotfiles (a `~/.bashrc` that waits 60 s on a stale pyenv lock, a `~/.ssh/rc`).
    `login_shell`: the shell sshd runs the forced command with (`$SHELL -c`) for
    root; set it and restart() to try another. None: root's shell in the machine's passwd.
    """

    def __init__(self, folder: Path, authorized_keys: Path, login_shell: str | None = None,
                 key_kind: str = "ed25519") -> None:
        """key_kind: its host key's type (ssh-keygen -t), what pairing:hostSshdKey pins."""
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.login_shell = login_shell
        self.home = folder / "home"  # root's home in sshd's namespace: see the class's comment
        self.port = free_port()
        self.host_key: KeyFile = make_key(folder, f"ssh_host_{key_kind}_key", key_kind)
        self.log = folder / "sshd.log"
        self.config = folder / "sshd_config"
        self.config.write_text(
            "\n".join(
                [
                    f"Port {self.port}",
                    "ListenAddress 127.0.0.1",
                    f"HostKey {self.host_key.path}",
                    f"PidFile {folder / 'sshd.pid'}",
                    f"AuthorizedKeysFile {authorized_keys}",
                    "StrictModes no",  # the temp folder lives under the world-writable /tmp
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "UsePAM no",
                    "Subsystem sftp /usr/lib/openssh/sftp-server",  # as a stock sshd_config has it
                    "PermitRootLogin prohibit-password",
                    f"AllowUsers {os.environ.get('USER', 'root')} root",
                    "LogLevel VERBOSE",
                    # As the relay's drop-in has it, so ssh-audit passes this sshd too (tests/test_relay.py).
                    "KexAlgorithms -ecdh-sha2-*,diffie-hellman-*,curve25519-sha256",
                    "MACs -*-sha1*,umac-64*,hmac-sha2-256,hmac-sha2-512,umac-128@openssh.com",
                    "",
                ]
            )
        )
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        script = ('mount --bind "$1" /etc/passwd && mount -t tmpfs tmpfs /run && mkdir /run/sshd'
                  ' && exec /usr/sbin/sshd -D -e -f "$0"')
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, str(self.config),
                 str(self._private_passwd())],
                stdout=log, stderr=subprocess.STDOUT,
            )
        wait_until(self.answers, 10, f"the host sshd on 127.0.0.1:{self.port}")

    def restart(self) -> None:
        """Same port, keys and config; picks up a new login_shell."""
        self.stop()
        self.start()

    def _private_passwd(self) -> Path:
        """A copy of /etc/passwd (only ever read) where root's home is self.home and its
        shell `login_shell` (or the machine's)."""
        entries = [line.split(":") for line in Path("/etc/passwd").read_text().splitlines()]
        assert any(entry[0] == "root" for entry in entries), "no root in /etc/passwd"
        self.home.mkdir(mode=0o700, exist_ok=True)

        def private(entry: list[str]) -> list[str]:
            return entry[:5] + [str(self.home), self.login_shell or entry[6]]

        path = self.folder / "passwd"
        path.write_text("".join(":".join(private(entry) if entry[0] == "root" else entry) + "\n" for entry in entries))
        path.chmod(0o644)
        return path

    def answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                return sock.recv(4).startswith(b"SSH-")
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
            self.process = None


@dataclass
class Tmux:
    """A tmux server on a private socket."""

    socket: Path

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(["tmux", "-S", str(self.socket), *args], capture_output=True, text=True, check=check)

    def screen(self, target: str) -> str:
        result = self.run("capture-pane", "-p", "-J", "-t", target, check=False)
        return result.stdout if result.returncode == 0 else ""

    def type(self, target: str, text: str, enter: bool = True) -> None:
        self.run("send-keys", "-t", target, "-l", text)
        if enter:
            self.run("send-keys", "-t", target, "Enter")

    def kill_server(self) -> None:
        self.run("kill-server", check=False)
        # tmux answers before its server is gone: a session made at once could meet the dying server
        # ("server exited unexpectedly"), so this returns when the socket takes no connection.
        wait_until(lambda: not self.answers(), 5, f"the tmux server at {self.socket} to end")

    def answers(self) -> bool:
        with socket.socket(socket.AF_UNIX) as sock:
            try:
                sock.connect(str(self.socket))
            except OSError:
                return False
        return True


class Guest:
    """A guest at their own terminal, running OpenSSH with only the invite's file.

    The wrapper config stands in for the guest's own ~/.ssh: their key as the
    identity, and the invite's config included unchanged. HOME is the guest's folder
    (no .ssh in it): the invite includes ~/.ssh/config, never this machine's.
    """

    def __init__(self, folder: Path, name: str, key: KeyFile, invite: Path, wrap: tuple[str, ...] = ()) -> None:
        """wrap: words before `ssh`, e.g. to run another OpenSSH (old_guest.OldGuest.wrap)."""
        folder.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.wrap = wrap
        self.config = folder / f"{name}.ssh_config"
        self.config.write_text(
            f"Host *\n    IdentityFile {key.path}\n    IdentitiesOnly yes\n    BatchMode yes\n\nInclude {invite}\n"
        )
        self.home = folder
        self.terminal = Tmux(folder / f"{name}.tmux")
        self.log = folder / f"{name}.ssh.log"

    def command(self, *extra: str) -> list[str]:
        return [*self.wrap, "ssh", "-F", str(self.config), "-E", str(self.log), *extra, "pairing"]

    def connect(self, cwd: Path | None = None) -> None:
        """cwd: the folder the guest runs ssh in (default: the tests')."""
        self.terminal.run(
            "new-session", "-d", "-s", "guest", "-x", "100", "-y", "30", *(["-c", str(cwd)] if cwd else []),
            f"env -u SSH_AUTH_SOCK HOME={self.home} TERM=screen " + " ".join(self.command())
            + "; echo GUEST-SSH-EXITED $?; sleep 600",
        )

    @property
    def screen(self) -> str:
        return self.terminal.screen("guest")

    def type(self, text: str, enter: bool = True) -> None:
        self.terminal.type("guest", text, enter)

    def disconnect(self) -> None:
        self.terminal.kill_server()


class Hook:
    """`pairing host` as its own process, output collected in a file."""

    def __init__(self, folder: Path, argv: list[str], env: dict[str, str], prefix: tuple[str, ...] = (),
                 command: str = "host", program: tuple[str, ...] = (sys.executable, "-m", "pairing")) -> None:
        """`prefix` runs it through another command that execs it, e.g. nsenter into a mount namespace.
        command: `pairing direct` runs the same way. program: what runs pairing (an installed console script)."""
        folder.mkdir(parents=True, exist_ok=True)
        self.output = folder / f"hook-{time.monotonic_ns()}.log"
        with self.output.open("wb") as out:
            self.process = subprocess.Popen(
                [*prefix, *program, command, *argv],
                cwd=PROJECT, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )

    @property
    def text(self) -> str:
        return self.output.read_text(errors="replace")

    def wait_for(self, needle: str, timeout: float = 30, after: int = 0) -> None:
        wait_until(lambda: needle in self.text[after:] or self.process.poll() is not None, timeout, f"hook to say {needle!r}")
        assert needle in self.text[after:], f"hook exited ({self.process.returncode}) without {needle!r}:\n{self.text}"

    def stop(self, sig: int = signal.SIGTERM) -> int:
        stop_process(self.process, sig)
        return self.process.returncode
