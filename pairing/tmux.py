"""The host's tmux session: make sure it exists, see who is attached."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass


class TmuxError(RuntimeError):
    pass


@dataclass(frozen=True)
class Client:
    tty: str
    read_only: bool


@dataclass(frozen=True)
class Tmux:
    socket: str | None = None  # None: tmux's default socket, the one a plain `tmux` uses

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        argv = ["tmux"] + (["-S", self.socket] if self.socket else []) + list(args)
        try:
            result = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        except FileNotFoundError:
            raise TmuxError("tmux is not installed; install it (apt install tmux / brew install tmux)") from None
        if check and result.returncode != 0:
            raise TmuxError(f"tmux {' '.join(args)} failed: {result.stderr.strip()}")
        return result

    @staticmethod
    def installed() -> bool:
        return shutil.which("tmux") is not None

    def has_session(self, name: str) -> bool:
        # "=name" matches the name exactly, not as a prefix.
        return self._run("has-session", "-t", f"={name}", check=False).returncode == 0

    def ensure_session(self, name: str) -> bool:
        """Create the session detached if absent; True if it had to be created."""
        if self.has_session(name):
            return False
        self._run("new-session", "-d", "-s", name)
        self.keep_clients_in(name)
        return True

    def keep_clients_in(self, name: str) -> None:
        """When the session ends, its clients leave tmux instead of moving to another session.

        With `detach-on-destroy off` (a common setting) tmux would hand guests and
        viewers of an ended session one of the host's other sessions.
        """
        self._run("set-option", "-t", f"={name}:", "detach-on-destroy", "on")

    def other_sessions(self, name: str) -> list[str]:
        """The server's sessions besides `name`: read-only clients can switch to these."""
        result = self._run("list-sessions", "-F", "#{session_name}", check=False)
        return [line for line in result.stdout.splitlines() if line != name] if result.returncode == 0 else []

    def clients(self, name: str) -> list[Client]:
        result = self._run("list-clients", "-t", f"={name}", "-F", "#{client_tty} #{client_readonly}", check=False)
        if result.returncode != 0:
            return []
        clients = []
        for line in result.stdout.splitlines():
            tty, _, read_only = line.rpartition(" ")
            clients.append(Client(tty, read_only == "1"))
        return clients
