"""Which tmux server the pair session is on, and whether it is surely the host user's own.

By default pairing's own: a socket named after the session in a folder of pairing's state, mode 700,
so the server holds the pair session only (a viewer has no other session to switch to) and nobody
else can put a server there. `--tmux-socket PATH` names another; it is used only when nobody but the
host user could have made that server or could put another in its place: the socket (if there) is a
socket, not a link, the user's, written by nobody else; every folder on the way is the user's or
root's and written by nobody else, or sticky (others cannot rename what is not theirs); the socket's
own folder may be sticky and written by others only when the socket is there and the user's (none
there: anyone could make it first); the process listening on it is the user's (SO_PEERCRED). Checked
with lstat, each link's target walked the same way.
Every tmux call (the hook's, the gates', the recording's) names the socket with -S: $TMUX is never followed.
"""

from __future__ import annotations

import os
import shlex
import socket
import stat
from pathlib import Path

from .control import peer
from .own_sshd import private_folder, state_base
from ..text import shown
from .preflight import PreflightError

UNIX_PATH_MAX = 104  # macOS's sun_path; Linux's is 108
MAX_LINKS = 40  # as the kernel's ELOOP


class UntrustedServer(PreflightError):
    pass


def default_socket(session: str) -> str:
    """Pairing's own server for this session (its folder is made by own_folder, when the session is)."""
    path = state_base() / "tmux" / session
    if len(os.fsencode(str(path))) >= UNIX_PATH_MAX:
        raise UntrustedServer(f"the tmux socket's path {path} is too long for a Unix socket; "
                              "set XDG_STATE_HOME to a shorter folder")
    return str(path)


def server_socket(session: str, given: str | None) -> str:
    """The socket every tmux call of this session names: --tmux-socket made whole (the gates run in another
    folder), else pairing's own."""
    return str(Path(os.getcwd(), given)) if given is not None else default_socket(session)


def own_folder(socket: str) -> None:
    """Before tmux makes a server at `socket`: pairing's own server's folder, mode 700 (an existing one
    too: nobody else may make a server in it). A --tmux-socket's folder is the user's, checked, left alone."""
    folder = state_base() / "tmux"
    if Path(socket).parent == folder:
        private_folder(folder).chmod(0o700)


def attach_command(socket: str, session: str) -> str:
    """What the host runs to join their own pair session."""
    return shlex.join(["tmux", "-S", socket, "attach", "-t", session])


def chosen_server(session: str, given: str | None) -> str:
    """server_socket(), refused (UntrustedServer, one line naming the flag) when --tmux-socket's server
    may be someone else's or may be replaced by someone else."""
    if given is None:
        return default_socket(session)
    problem = untrusted(given)
    if problem:
        raise UntrustedServer(f"--tmux-socket {given}: {shown(problem)}; leave --tmux-socket out to use pairing's own "
                              f"tmux server ({attach_command(default_socket(session), session)})")
    return server_socket(session, given)


def untrusted(path: str) -> str | None:
    """Why the tmux server at `path` may not be this user's own, or may be swapped for another; None if it cannot."""
    me = os.geteuid()
    whole = Path(os.getcwd(), path)
    try:
        found = os.lstat(whole)
    except FileNotFoundError:
        found = None
    except OSError as exc:
        return f"cannot look at it ({exc.strerror})"
    if found is not None:
        if stat.S_ISLNK(found.st_mode):
            return "it is a symbolic link; give the socket's own path"
        if not stat.S_ISSOCK(found.st_mode):
            return "it is not a socket"
        if found.st_uid != me:
            return f"it belongs to uid {found.st_uid}, not to you: that tmux server is theirs"
        if found.st_mode & 0o022:
            return f"its mode {stat.filemode(found.st_mode)} lets others write to it"
        server = _server_uid(whole)
        if server not in (None, me):
            return f"the server answering on it runs as uid {server}, not as you: that tmux server is theirs"
    return _folders(whole.parent, socket_is_mine=found is not None)


def _server_uid(path: Path) -> int | None:
    """The uid of the process listening on the socket, as the kernel says (None: nobody listens)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(2)
        try:
            sock.connect(str(path))
        except OSError:
            return None
        return peer(sock)[1]


def _folders(folder: Path, socket_is_mine: bool) -> str | None:
    """Each folder from / down to `folder`, links followed by hand (lstat only)."""
    me = os.geteuid()
    at, todo, links = Path("/"), list(folder.parts[1:]), 0
    problem = _folder(at, me, last=not todo, socket_is_mine=socket_is_mine)
    while todo and problem is None:
        name = todo.pop(0)
        if name == "..":
            at = at.parent
            continue
        step = at / name
        try:
            found = os.lstat(step)
        except OSError as exc:
            return f"cannot look at {step} ({exc.strerror})"
        if stat.S_ISLNK(found.st_mode):
            links += 1
            if links > MAX_LINKS:
                return f"too many symbolic links on the way at {step}"
            if found.st_uid not in (me, 0):
                return f"{step} is a symbolic link of uid {found.st_uid}, who can point it elsewhere"
            target = Path(os.readlink(step))
            todo = list(target.parts[1:] if target.is_absolute() else target.parts) + todo
            if target.is_absolute():
                at = Path("/")
            continue
        at = step
        problem = _folder(at, me, last=not todo, socket_is_mine=socket_is_mine, found=found)
    return problem


def _folder(path: Path, me: int, last: bool, socket_is_mine: bool, found: os.stat_result | None = None) -> str | None:
    found = found or os.lstat(path)
    if not stat.S_ISDIR(found.st_mode):
        return f"{path} is not a folder"
    if found.st_uid not in (me, 0):
        return f"its folder {path} belongs to uid {found.st_uid}, who can put another server in its place"
    if not found.st_mode & 0o022:
        return None
    sticky = bool(found.st_mode & stat.S_ISVTX)  # others can make names there, not rename or remove ours
    if sticky and (not last or socket_is_mine):
        return None
    why = "and no socket of yours is there yet, so anyone can make it first" if sticky else "so anyone can replace it"
    return f"its folder {path} (mode {stat.filemode(found.st_mode)}) may be written by others, {why}"
