"""The host's tmux session: make sure it exists, see who is attached."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass


class TmuxError(RuntimeError):
    pass


# A hook's client, if attached to the session and not read-only, fits the window; tmux 3.3 has no #{!:}.
FIT_FOR_TYPISTS = 'if-shell -F "#{?client_session,#{?client_readonly,0,1},0}" "resize-window -a"'


@dataclass(frozen=True)
class Client:
    tty: str
    read_only: bool
    pid: int = 0  # the client process's: a guest's is its gate's (pairing/gate.py execs tmux)
    activity: float = 0.0  # when it last sent a key (tmux's client_activity)


@dataclass(frozen=True)
class Snapshot:
    """The server's sessions and who is attached to `session`, read in one tmux call."""

    session: str
    sessions: tuple[str, ...]
    clients: tuple[Client, ...]
    everywhere: tuple[Client, ...] = ()  # every client of the server: a read-only one may switch sessions

    @property
    def exists(self) -> bool:
        return self.session in self.sessions

    @property
    def others(self) -> list[str]:
        return [name for name in self.sessions if name != self.session]


def _client(line: str) -> tuple[str, Client] | None:
    """One line of list-clients' format in snapshot() as (its session, the Client); None if not in that shape."""
    try:
        read_only, pid, activity, rest = line.split(" ", 3)
        session, _, tty = rest.rpartition(" ")  # a session name may hold spaces; a tty does not
        return session, Client(tty, read_only == "1", int(pid), float(activity))
    except ValueError:
        return None


@dataclass(frozen=True)
class Tmux:
    socket: str  # always named: a plain `tmux` would follow $TMUX, or the default server (hook/tmux_server.py)

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        argv = ["tmux", "-S", self.socket, *args]
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
        """When the session ends, its clients leave tmux instead of moving to another session; and only
        typing clients size its windows (size_by_typists).

        With `detach-on-destroy off` (a common setting) tmux would hand guests and
        viewers of an ended session one of the host's other sessions.
        """
        self._run("set-option", "-t", f"={name}:", "detach-on-destroy", "on")
        self.size_by_typists(name)

    def size_by_typists(self, name: str) -> None:
        """A viewer never changes the window's size, alone or not. tmux counts a read-only (ignore-size)
        client whenever no other is attached, so a lone viewer's terminal became the window's; here each
        window's size is `manual` (no client sizes it), and tmux's own hooks fit the window to the
        smallest typing client (`resize-window -a`, which counts viewers only when nobody types) when a
        typing client of this session attaches, resizes, or changes window. fit() does it when one leaves."""
        args: list[str] = []
        for window in self._run("list-windows", "-t", f"={name}", "-F", "#{window_id}").stdout.split():
            args += ["set-option", "-w", "-t", window, "window-size", "manual", ";"]
        for hook in ("client-attached", "client-resized", "client-session-changed", "session-window-changed"):
            args += ["set-hook", "-t", f"={name}:", hook, FIT_FOR_TYPISTS, ";"]
        self._run(*args, "set-hook", "-t", f"={name}:", "window-linked", "set-option -w window-size manual")

    def fit(self, name: str) -> None:
        """The session's window fitted to its typing clients now (call only when one is attached)."""
        self._run("resize-window", "-a", "-t", f"={name}:", check=False)

    def snapshot(self, name: str) -> Snapshot:
        """What the status line needs every second, for one fork instead of three."""
        result = self._run("list-sessions", "-F", "S #{session_name}", ";",
                           "list-clients", "-F",
                           "C #{client_readonly} #{client_pid} #{client_activity} #{client_session} #{client_tty}",
                           check=False)
        sessions, clients, everywhere = [], [], []
        for line in result.stdout.splitlines() if result.returncode == 0 else []:
            kind, _, rest = line.partition(" ")
            if kind == "S":
                sessions.append(rest)
            elif kind == "C":
                client = _client(rest)
                if client is None:
                    continue  # not the line asked for (an error's words): this snapshot goes without it
                session, client = client
                everywhere.append(client)
                if session == name:
                    clients.append(client)
        return Snapshot(name, tuple(sessions), tuple(clients), tuple(everywhere))

    def detach(self, tty: str, farewell: str = "") -> None:
        """That client leaves tmux, and so its guest's ssh session ends; farewell, a line of plain words
        (no quote), is what their terminal shows last (the client execs `echo 'farewell'`)."""
        if "'" in farewell or any(ord(c) < 0x20 for c in farewell):
            raise TmuxError(f"a farewell line must be plain words: {farewell!r}")
        self._run("detach-client", "-t", tty, *(["-E", f"echo '{farewell}'"] if farewell else []), check=False)

    def set_read_only(self, client: Client, read_only: bool) -> None:
        """Watching or typing, at once, without reconnecting. Setting is `refresh-client -f`; tmux 3.3
        refuses `-f !read-only`, so typing is switch-client -r, a toggle: only from read-only."""
        if read_only and not client.read_only:
            self._run("refresh-client", "-t", client.tty, "-f", "read-only,ignore-size", check=False)
        elif not read_only and client.read_only:
            self._run("switch-client", "-c", client.tty, "-r", check=False)

    def tell(self, clients: tuple[Client, ...], message: str, for_ms: int | None = None) -> None:
        """A line on each client's status line (display-message shows it on one client only), for for_ms
        (None: the server's display-time). It takes no keys: a key pressed clears it and reaches the pane."""
        args: list[str] = []
        for client in clients:
            args += [*([";"] if args else []), "display-message", "-c", client.tty,
                     *(["-d", str(for_ms)] if for_ms else []), message.replace("#", "##")]
        if args:
            self._run(*args, check=False)
