"""`pairing add` and `pairing extend`: a guest or a longer end for the running hook, through its control
channel (hook/control.py; the hook's side: hook/live.py). Neither touches the relay's instance: the relay's
guest list and end are live (relay_guests.py). Problems are one line on stderr, as control_cli's.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
from pathlib import Path

from .control_cli import Refused, _request, _run
from .guest_flags import named_keys
from .hook.control import ControlError, ask
from .hook.live import INVITE_NAME
from .names import split_name

DURATION = re.compile(r"(?:([0-9]{1,3})h)?(?:([0-9]{1,4})(?:m|min))?")


def duration(text: str) -> int:
    """`2h`, `90m`, `1h30m` -> seconds (argparse type)."""
    match = DURATION.fullmatch(text.strip())
    if not match or not any(match.groups()) or not 0 < int(match[1] or 0) * 3600 + int(match[2] or 0) * 60:
        raise argparse.ArgumentTypeError(f"{text[:32]!r} is not a duration such as 2h, 90m or 1h30m")
    return int(match[1] or 0) * 3600 + int(match[2] or 0) * 60


def add_parsers(commands, control: argparse.ArgumentParser, examples) -> None:
    """`pairing add` and `pairing extend`, beside the other commands for the running hook."""
    add = commands.add_parser(
        "add", parents=[control], help="let one more guest join the running session, and write their invite",
        description="Add a guest to the running `pairing host` or `pairing direct`: they can join within 2 s "
                    "(your sshd's keys, the room and the relay's live list are changed; the relay is not "
                    "replaced), and their own invite is written, as `pairing invite --for NAME` writes it.",
        epilog=examples("pairing add --guest gh:carol", "pairing add --viewer dan=~/dan.pub --invite dan.conf"))
    who = add.add_mutually_exclusive_group(required=True)
    who.add_argument("--guest", metavar="[NAME=]SOURCE", help="a guest who may type (SOURCE as for pairing up)")
    who.add_argument("--viewer", metavar="[NAME=]SOURCE", help="a guest who may only watch")
    add.add_argument("--invite", type=Path, metavar="FILE",
                     help=f"where to write their invite (default: ./{INVITE_NAME.format(name='NAME')})")
    extend = commands.add_parser(
        "extend", parents=[control], help="move the relay's end later, without replacing it",
        description="Move the running session's relay end by DURATION (from its current end), up to its latest "
                    "(pairing:maxTtlMinutes after it started, 24 h unless set); `pairing status` shows the new end.",
        epilog=examples("pairing extend 2h", "pairing extend 30m"))
    extend.add_argument("duration", type=duration, metavar="DURATION", help="e.g. 2h, 90m, 1h30m")


def cmd_add(args) -> int:
    def body() -> int:
        typed = args.guest or args.viewer
        guests, viewers, problems = named_keys([args.guest] if args.guest else [], [args.viewer] if args.viewer else [])
        if problems:
            raise Refused(problems[0])
        keys = guests or viewers
        if args.invite is not None and len(keys) > 1:
            raise Refused(f"{typed} holds {len(keys)} keys; leave out --invite (each gets "
                          f"./{INVITE_NAME.format(name='NAME')})")
        given = split_name(typed)[0]
        for key in keys:
            request = {"op": "add", "key": key.line, "typing": bool(args.guest), "given": key.comment == given,
                       "invite": str((args.invite or Path(INVITE_NAME.format(name=key.comment))).absolute()),
                       "named": args.invite is not None}
            answer = _request(args, request)
            print(answer["ok"])
            if answer.get("invite"):
                print(answer["invite"])
        return 0
    return _run(args, body)


def cmd_extend(args) -> int:
    def body() -> int:
        print(_request(args, {"op": "extend", "seconds": args.duration})["ok"])
        return 0
    return _run(args, body)


def hook_ends(path: Path | None) -> dt.datetime | None:
    """The relay's end as the running hook knows it (it may have moved it), or None."""
    if path is None:
        return None
    try:
        answer = ask(path, {"op": "ends"}, timeout=3)
        return dt.datetime.fromtimestamp(float(answer["ends"]), dt.timezone.utc)
    except (ControlError, KeyError, TypeError, ValueError, OverflowError):
        return None


COMMANDS = {"add": cmd_add, "extend": cmd_extend}
