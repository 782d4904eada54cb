"""`pairing who|watch|drive|kick|allow|deny`: the running hook's guests, through its control channel.

The hook is found by its control socket (hook/control.py) in this user's state folder: the one running,
or the one serving --session (and --tmux-socket) when several are. Every problem is one line on stderr:
exit 3 when no hook runs, 2 for anything else the user can fix (a name nobody has, a bad name).
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

from .hook.control import ControlError, ask, control_folder
from .names import GuestNameError, check_name
from .text import did_you_mean, shown  # the hook's answers are shown escaped, as any peer's words

NO_HOOK = 3
WHAT = {"watch": "watching", "drive": "typing"}


class Refused(Exception):
    def __init__(self, line: str, code: int = 2) -> None:
        super().__init__(line)
        self.code = code


def find_hook(session: str | None, tmux_socket: str | None) -> Path:
    """The control socket of the running hook meant; Refused (one line) when there is none or no telling which."""
    folder = control_folder()
    live: dict[Path, str] = {}
    for path in sorted(folder.glob("*.sock")) if folder.is_dir() else []:
        try:
            hello = ask(path, {"op": "hello"}, timeout=3)
        except ControlError:
            continue  # a killed hook's socket
        if "error" in hello:
            raise Refused(f"the hook at {path} says: {hello['error']}")
        if session in (None, hello.get("session")) and tmux_socket in (None, hello.get("tmux_socket")):
            live[path] = str(hello.get("session"))
    if not live:
        which = f" for tmux session {session!r}" if session else ""
        raise Refused(f"no pairing hook is running{which} as this user; start one: pairing host (or pairing up)",
                      NO_HOOK)
    if len(live) > 1:
        raise Refused(f"several hooks are running (tmux sessions {', '.join(sorted(live.values()))}); "
                      "say which with --session NAME (and --tmux-socket PATH)")
    return next(iter(live))


def _request(args, request: dict) -> dict:
    path = find_hook(args.session, args.tmux_socket)
    try:
        answer = ask(path, request)
    except ControlError as exc:
        raise Refused(f"the hook stopped answering ({exc}); is it still running?", NO_HOOK) from None
    if "error" in answer:
        raise Refused(str(answer["error"]))
    return answer


def _run(args, body) -> int:
    try:
        return body()
    except Refused as exc:
        print(shown(f"pairing {args.command}: {exc}"), file=sys.stderr)
        return exc.code


def cmd_who(args) -> int:
    def body() -> int:
        answer = _request(args, {"op": "who"})
        guests = answer.get("guests") or []
        if not guests:
            print(shown(f"nobody is connected to tmux session {answer.get('session')!r}"))
        for guest in guests:
            print(shown(who_line(guest)))
        if answer.get("shared") and isinstance(answer.get("shared_line"), str):  # a line only when something is
            print(shown(answer["shared_line"]))
        return 0
    return _run(args, body)


def who_line(guest: dict) -> str:
    since = dt.datetime.fromtimestamp(float(guest["since"])).strftime("%H:%M:%S")
    idle = "" if guest.get("idle") is None else f"  idle {duration(float(guest['idle']))}"
    return f"{guest['name']:<16} {guest['state']:<9} since {since}{idle}"


def duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def cmd_guest(args) -> int:
    """kick, watch, drive, allow, deny: one guest, by name; the hook's one line said back."""
    def body() -> int:
        try:
            name = check_name(args.name)
        except GuestNameError as exc:  # `pairing watch Bob` with bob in: the running hook's names, if it answers
            try:
                names = [g["name"] for g in _request(args, {"op": "who"}).get("guests") or []]
            except (Refused, KeyError, TypeError):
                names = []
            raise Refused(f"{exc}{did_you_mean(args.name, names)}") from None
        print(shown(_request(args, {"op": args.command, "name": name})["ok"]))
        return 0
    return _run(args, body)


def guests_line(session: str, tmux_socket: str | None) -> str:
    """`pairing status`'s guests line: the running hook's count, by its names."""
    try:
        answer = ask(find_hook(session, tmux_socket), {"op": "who"}, timeout=3)
    except (Refused, ControlError):
        return f"0 typing, 0 watching in tmux session {session!r} (no hook runs: nobody can be in)"
    if "error" in answer:
        return f"unknown: the hook says {answer['error']}"
    guests = answer.get("guests") or []
    states = [g.get("state") for g in guests]
    counts = f"{states.count('typing')} typing, {states.count('watching')} watching"
    waiting = f", {states.count('waiting')} waiting" if "waiting" in states else ""
    names = ", ".join(f"{g['name']} ({g['state']})" for g in guests)
    return f"{counts}{waiting} in tmux session {session!r}" + (f": {names}" if names else "")
