"""`--share-port`/`--share-port-viewers` (of `pairing host`, `up` and `direct`) and `pairing share|unshare PORT`:
the command line of shared ports (pairing/shared_ports.py; the running hook's side: hook/shares.py)."""

from __future__ import annotations

import argparse

from .control_cli import Refused, _request, _run
from .help_format import examples
from .shared_ports import ShareError, parse


def add_flags(parser: argparse.ArgumentParser) -> None:
    """--share-port and --share-port-viewers, checked by shared_ports.from_flags before anything is touched."""
    parser.add_argument("--share-port", action="append", metavar="PORT[:GUEST_PORT]",
                        help="let typing guests open this port of this machine's loopback (e.g. your dev server) "
                             "through their own ssh connection, as GUEST_PORT on theirs (default: the same; "
                             "PORT+8000 below 1024); repeat for more; e.g. --share-port 3000")
    parser.add_argument("--share-port-viewers", action="store_true",
                        help="let viewers open the shared ports too (default: typing guests only)")


COMMANDS = {
    "share": ("share one more port of this machine's loopback with the guests, from their next connection on",
              "pairing share 3000"),
    "unshare": ("stop sharing a port, from each guest's next connection on", "pairing unshare 3000"),
}


def add_commands(commands, control: argparse.ArgumentParser) -> None:
    """`pairing share` and `pairing unshare` (control: the --session/--tmux-socket parent of `pairing who`)."""
    for name, (what, example) in COMMANDS.items():
        command = commands.add_parser(name, parents=[control], help=what,
                                      description=f"{what[0].upper()}{what[1:]} (docs/shared-ports.md).",
                                      epilog=examples(example))
        command.add_argument("port", metavar="PORT[:GUEST_PORT]" if name == "share" else "PORT",
                             help="the port on this machine's loopback (share: GUEST_PORT, the one on the guest's "
                                  "machine; default: the same, PORT+8000 below 1024)")


def cmd_share(args) -> int:
    """share, unshare: one of the host's ports (checked here, and again by the hook); its one line said back."""
    def body() -> int:
        try:
            parse(args.port, f"pairing {args.command}")
        except ShareError as exc:
            raise Refused(str(exc)) from None
        print(_request(args, {"op": args.command, "port": args.port})["ok"])
        return 0
    return _run(args, body)
