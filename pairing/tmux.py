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
class Snapshot:
    """The server's sessions and who is attached to `session`, read in one tmux call."""

    session: str
    sessions: tuple[str, ...]
    clients: tuple[Client, ...]

    @property
    def exists(self) -> bool:
        return self.session in self.sessions

    @property
    def others(self) -> list[str]:
        return [name for name in self.sessions if name != self.session]


@dataclass(frozen=True)
class Tmux:
    socket: str | None = None  # None: tmux's default socket, the one a plain `tmux` uses

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        argv = ["tmux"] + (["-S", self.socket] if self.socket else []) + list(args)
        try:
            result = subprocess.run(argv, capture_output=True, text=True, errors="replace", timeout=10)
        except FileNotFoundError:
            raise TmuxError("tmux is not installed; install it (apt install tmux / brew install tmux)") from None
        if check and result.returncode != 0:
            raise TmuxError(f"tmux {' '.join(args)} failed: {result.stderr.strip()}")
        return result

    def query(self, *args: str) -> str:
        """Any tmux command list (hook/recording.py's), its output; TmuxError if it fails."""
        return self._run(*args).stdout

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

    def snapshot(self, name: str) -> Snapshot:
        """What the status line needs every second, for one fork instead of three."""
        result = self._run("list-sessions", "-F", "S #{session_name}", ";",
                           "list-clients", "-F", "C #{client_readonly} #{client_session} #{client_tty}", check=False)
        sessions, clients = [], []
        for line in result.stdout.splitlines() if result.returncode == 0 else []:
            kind, _, rest = line.partition(" ")
            if kind == "S":
                sessions.append(rest)
            elif kind == "C":
                read_only, _, rest = rest.partition(" ")
                session, _, tty = rest.rpartition(" ")  # a session name may hold spaces; a tty does not
                if session == name:
                    clients.append(Client(tty, read_only == "1"))
        return Snapshot(name, tuple(sessions), tuple(clients))
