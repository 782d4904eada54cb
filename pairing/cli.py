"""Command line: `pairing host` and `pairing invite` (also `python -m pairing ...`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .authorized_keys import AuthorizedKeysError
from .host import HostOptions, PreflightError, run
from .invite import write_invite
from .outputs import OutputsError, read_outputs


def _target(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT, e.g. localhost:22")
    return host.strip("[]"), int(port)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="pairing", description="Share your tmux with a guest through your own relay.")
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    source = argparse.ArgumentParser(add_help=False)
    group = source.add_mutually_exclusive_group()
    group.add_argument("--stack", help="the Pulumi stack to read outputs from (default: the selected stack)")
    group.add_argument("--outputs", type=Path, metavar="FILE",
                       help="read the outputs from FILE (JSON of `pulumi stack output --json --show-secrets`) "
                            "instead of the Pulumi CLI; also for a relay Pulumi did not make")

    host = commands.add_parser("host", parents=[source], help="hold the tunnel and let guests into your tmux",
                               description="Hold the reverse tunnel from the relay to your sshd, put the guests' keys "
                                           "in authorized_keys (forced to tmux attach) until you stop it.")
    host.add_argument("--identity", type=Path, metavar="PATH",
                      help="private key of pairing:hostPublicKey (default: the matching ~/.ssh/id_* or ssh-agent key)")
    host.add_argument("--target", type=_target, default=("localhost", 22), metavar="HOST:PORT",
                      help="your sshd (default: localhost:22)")
    host.add_argument("--authorized-keys", type=Path, default=Path.home() / ".ssh" / "authorized_keys", metavar="PATH",
                      help="the authorized_keys file your sshd reads for you (default: ~/.ssh/authorized_keys)")
    host.add_argument("--tmux-socket", metavar="PATH", help="tmux socket of your session (default: tmux's own)")

    invite = commands.add_parser("invite", parents=[source], help="write the guest's ssh config and print their command")
    invite.add_argument("--out", type=Path, default=Path("pairing.conf"), metavar="FILE",
                        help="where to write the guest's ssh config (default: ./pairing.conf)")
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        outputs = read_outputs(args.outputs, args.stack)
        if args.command == "invite":
            print(write_invite(outputs, args.out))
            return 0
        options = HostOptions(outputs, args.identity, args.target, args.authorized_keys, args.tmux_socket)
        return run(options)
    except (OutputsError, PreflightError, AuthorizedKeysError, OSError) as exc:
        print(f"pairing {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
