"""Command line: `pairing up|down|ls|host|invite|status|doctor|sshd-key|direct|who|watch|drive|kick|allow|deny|
share|unshare|add|extend`
(also `python -m pairing ...`).

Only the arguments and a table of handlers: each command's code lives with its concern.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .arg_types import session_name as _session_name, socket_path as _socket_path, target as _target
from . import cli_flags as flags
from .authorized_keys import AuthorizedKeysError
from .control_cli import cmd_guest, cmd_who
from .direct import cmd_direct, listen_address
from .doctor import cmd_doctor
from .help_format import SHOWN_REQUIRED, CommandParser, Help, examples as _examples, unrecognized as parse
from .hook import PreflightError, cmd_host
from .hook.own_sshd import cmd_sshd_key
from .invite import InviteError, cmd_invite
from .live_cli import COMMANDS as LIVE_COMMANDS, add_parsers as live_parsers
from .outputs import OutputsError
from .putty import PuttyKeyError
from .relays import cmd_ls
from .share_cli import add_commands as _share_commands, add_flags as _share_flags, cmd_share
from .shared_ports import ShareError
from .status import EXIT_STATUS, cmd_status
from .text import UnsafeText, quiet_library_logs, shown
from .up import cmd_down, cmd_up
from .up_plan import UpError

COMMANDS = {"up": cmd_up, "down": cmd_down, "ls": cmd_ls, "host": cmd_host, "invite": cmd_invite,
            "status": cmd_status, "doctor": cmd_doctor, "sshd-key": cmd_sshd_key, "direct": cmd_direct,
            "who": cmd_who, "watch": cmd_guest, "drive": cmd_guest, "kick": cmd_guest, "allow": cmd_guest,
            "deny": cmd_guest, "share": cmd_share, "unshare": cmd_share, **LIVE_COMMANDS}

# The commands that reach the running hook's guests (control_cli.py): what each does, an example.
GUEST_COMMANDS = {
    "watch": ("switch a connected guest to watching (read-only) at once, without reconnecting", "pairing watch alice"),
    "drive": ("let a guest type, at once (a viewer key too)", "pairing drive alice"),
    "kick": ("end a guest's connection and keep them out (the relay too refuses their key)", "pairing kick bob"),
    "allow": ("let in a guest waiting to join (pairing host --ask), or a kicked one back", "pairing allow carol"),
    "deny": ("turn away a guest waiting to join (pairing host --ask)", "pairing deny carol"),
}


def version() -> str:
    """The installed distribution's version (pyproject.toml's), as pip installed it."""
    from importlib.metadata import PackageNotFoundError, version as installed

    try:
        return installed("pairing")
    except PackageNotFoundError:
        return "(not installed: pip install -e . gives it its version)"


def parser() -> argparse.ArgumentParser:
    top = CommandParser(prog="pairing", description="Share your tmux with a guest through your own relay.",
                                  formatter_class=Help, epilog=_examples("pairing up --guest gh:octocat",
                                                                         "pairing COMMAND --help"))
    top.add_argument("--version", action="version", version=f"pairing {version()}")
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=CommandParser)
    common = flags.common()

    up = commands.add_parser(
        "up", parents=[common["stack"], common["backend"], common["host"]],
        help="create the relay, hold the tunnel, print the invite; Ctrl-C ends it",
        description="Check the flags, then this machine (pairing doctor), create or update the relay, write the "
                    "guest's invite, then run the hook (`pairing host`) until Ctrl-C. A key SOURCE is a .pub file, a "
                    "key line, gh:USER or gl:USER.",
        epilog=_examples("pairing up --guest gh:octocat --region eu-central-1",
                         "pairing up --guest alice=~/alice.pub --viewer gl:bob --ttl 60 --allow 203.0.113.0/24"))
    guest = up.add_argument("--guest", action="append", metavar="[NAME=]SOURCE",
                            help=flags.GUEST_HELP)
    setattr(guest, SHOWN_REQUIRED, True)  # checked with every other flag by up_plan, not by argparse
    up.add_argument("--viewer", action="append", metavar="[NAME=]SOURCE", help=flags.VIEWER_HELP)
    up.add_argument("--host-key", type=Path, metavar="FILE.pub", help="your public key (default: ~/.ssh/id_ed25519.pub)")
    up.add_argument("--allow", action="append", metavar="CIDR", help="who may reach the relay (default: anyone)")
    up.add_argument("--ttl", type=int, metavar="MINUTES", help="the relay ends itself after this (default: 240)")
    up.add_argument("--region", help="AWS region, or auto: the nearest by TCP round trip from here, measured in "
                                     "under 3 s and printed (default: AWS_REGION, AWS_DEFAULT_REGION, else your "
                                     "AWS profile's)")
    up.add_argument("--instance-type", metavar="TYPE", help="EC2 instance type (default: t3.micro)")
    up.add_argument("--port", type=int, metavar="PORT", help="the tunnel's port on the relay (default: 1337)")
    up.add_argument("--session", metavar="NAME", help="your tmux session (default: pair)")
    up.add_argument("--sshd-key", metavar="LINE", help="your sshd's host key line (default: that of pairing's own sshd, `pairing sshd-key`; "
                         "with --target: /etc/ssh/ssh_host_ed25519_key.pub)")
    flags.invite(up)
    up.add_argument("--keep", action="store_true", help="keep the relay when you stop (default: ask, or destroy)")

    down = commands.add_parser("down", parents=[common["stack"], common["backend"]],
                               help="destroy the relay and remove any guest keys left behind",
                               description="Destroy the relay of the stack (its instance, network, security group "
                                           "and host key), after taking out any guest keys a crashed `pairing host "
                                           "--target` left in authorized_keys.",
                               epilog=_examples("pairing down", "pairing down --stack pair-alice-laptop"))
    flags.authorized_keys(down, "where `pairing host` put the guests' keys (default: ~/.ssh/authorized_keys)", flags.AUTHORIZED_KEYS)

    commands.add_parser("ls", parents=[common["backend"]],
                        help="list the relays in the backend: owner, region, address, time left",
                        description="List every relay (stack) of this project in the backend, e.g. a team's S3 "
                                    "bucket: whose it is, its region and address, and how long it has left.",
                        epilog=_examples("pairing ls", "pairing ls --backend s3://our-team-pulumi-state"))

    commands.add_parser("host", parents=[common["source"], common["backend"], common["host"]],
                        help="run the hook: hold the tunnel and let guests into your tmux",
                        description="The hook: run your own sshd for the guests (their keys forced to tmux attach), "
                                    "hold the reverse tunnel from the relay to it, until you stop it. With --target: "
                                    "your system's sshd, the guests' keys in authorized_keys meanwhile.",
                        epilog=_examples("pairing host", "pairing host --outputs outputs.json --tunnel openssh",
                                         "pairing host --target localhost:22"))

    direct = commands.add_parser(
        "direct", help="no relay: your own sshd on a LAN or VPN address, an invite straight to it",
        description="Run pairing's own sshd (as you, publickey only, guests forced to tmux attach) on one address "
                    "of this machine that your guests reach (a LAN or VPN one, e.g. Tailscale's), write an invite "
                    "straight to it with its host key pinned, and let guests in until Ctrl-C. No relay, no AWS.",
        epilog=_examples("pairing direct --guest gh:octocat --viewer ~/bob.pub --listen 100.101.102.103:2222",
                         "pairing direct --guest gh:octocat --listen 192.168.1.20 --ask"))
    guest = direct.add_argument("--guest", action="append", metavar="[NAME=]SOURCE",
                                help=flags.GUEST_HELP)
    setattr(guest, SHOWN_REQUIRED, True)  # checked with the keys by cmd_direct, not by argparse
    direct.add_argument("--viewer", action="append", metavar="[NAME=]SOURCE", help=flags.VIEWER_HELP)
    direct.add_argument("--listen", type=listen_address, required=True, metavar="ADDRESS[:PORT]",
                        help="the one address of this machine the sshd listens on (default port: the one this "
                             "--session had last time, so invites already sent stay valid; the first time a free "
                             "one, said at start and in the invite)")
    direct.add_argument("--listen-all", action="store_true",
                        help="allow --listen 0.0.0.0 or ::, every address of this machine, public ones too")
    flags.invite(direct)
    direct.add_argument("--session", type=_session_name, default="pair", metavar="NAME",
                        help="your tmux session (default: pair); its port is remembered under this name")
    direct.add_argument("--tmux-socket", type=_socket_path, metavar="PATH",
                        help="the tmux server's socket for the session, yours alone (default: pairing's own server, "
                             "~/.local/state/pairing/tmux/SESSION)")
    flags.ask(direct)
    flags.record(direct)
    _share_flags(direct)

    invite = commands.add_parser("invite", parents=[common["source"], common["backend"]],
                                 help="write the guest's ssh config and print their command",
                                 description="Write the guest's ssh config (pairing.conf: every hop pinned, no "
                                             "secret in it) and print the command they run and the fingerprints to "
                                             "compare: for the running `pairing direct` (no Pulumi needed), else from "
                                             "the relay stack's outputs.",
                                 epilog=_examples("pairing invite", "pairing invite --invite ~/alice.conf --known-hosts",
                                                  "pairing invite --session pair --for alice"))
    flags.invite(invite)
    invite.add_argument("--session", type=_session_name, metavar="NAME",
                        help="the running `pairing direct` of that tmux session, when several run (default: the one "
                             "running; none running: the relay's invite)")
    # --out: its name before it was --invite as in up and direct; kept, unlisted, for scripts that use it.
    invite.add_argument("--out", dest="invite", type=Path, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    invite.add_argument("--known-hosts", action="store_true",
                        help="for guests on Windows (10/11's OpenSSH) or with OpenSSH before 8.5: pin both hops in "
                             "FILE's .known_hosts beside it, the one other file the config names")
    invite.add_argument("--for", dest="for_name", metavar="NAME",
                        help="that guest's own invite: their role and their key's fingerprint (NAME: their key's "
                             "comment; a wrong one lists the names there are)")
    invite.add_argument("--putty", metavar="KEY.ppk",
                        help="print the plink command (and the PuTTY window's settings) for a guest holding that "
                             "PuTTY key, every hop pinned; writes no file")
    invite.add_argument("--ipv6", action="store_true",
                        help="send the guest to the relay's IPv6 address (relayIpv6Address), for an IPv6-only network")

    status = commands.add_parser("status", parents=[common["source"], common["backend"]],
                                 help="the running `pairing direct`, or the relay, its time left, the tunnel; and the guests",
                                 description="Say whether a `pairing direct` runs (its address, port and guests); "
                                             "else whether there is a relay, how long it has left, whether a "
                                             "`pairing host` holds its tunnel, and who is attached to the tmux "
                                             "session; the exit status tells the cases apart.",
                                 epilog=f"{EXIT_STATUS}\n\n" + _examples("pairing status",
                                                                          "pairing status --outputs outputs.json"))
    flags.authorized_keys(status, argparse.SUPPRESS, flags.AUTHORIZED_KEYS)
    status.add_argument("--tmux-socket", type=_socket_path, metavar="PATH",
                        help="the tmux server's socket for the session, as the hook was given it (default: "
                             "pairing's own server, ~/.local/state/pairing/tmux/SESSION)")

    commands.add_parser("sshd-key", help="print the host key of pairing's own sshd (made the first time): what guests pin",
                        description="The public line of the ED25519 host key pairing host's own sshd presents, made "
                                    "once under ~/.local/share/pairing/sshd; the default of pairing:hostSshdKey.",
                        epilog=_examples("pairing sshd-key", "pulumi config set pairing:hostSshdKey \"$(pairing sshd-key)\""))

    commands.add_parser("who", parents=[common["control"]],
                        help="who is connected to the running hook: name, typing or watching, since, idle",
                        description="One line a guest connected to the running `pairing host` (or waiting to be "
                                    "let in): their name, typing or watching,\nsince when, and how long since their "
                                    "last key. Your own tmux clients are never listed.",
                        epilog=_examples("pairing who", "pairing who --session pair"))
    for name, (what, example) in GUEST_COMMANDS.items():
        command = commands.add_parser(name, parents=[common["control"]], help=what,
                                      description=f"{what[0].upper()}{what[1:]}.", epilog=_examples(example))
        command.add_argument("name", metavar="NAME", help="the guest's name, as `pairing who` shows it")
    _share_commands(commands, common["control"])
    live_parsers(commands, common["control"], _examples)

    doctor = commands.add_parser("doctor", help="check this machine can host a session, with the fix for each problem",
                                 description="Check Python, the Pulumi CLI, AWS credentials, the sshd binary and "
                                             "the terminals it gives guests (or a running sshd with --target), tmux, "
                                             "OpenSSH and your key: one line each, every failure with its fix, and a "
                                             "last line counting them (exit 1 if any failed). With --direct, only "
                                             "what `pairing direct` needs.",
                                 epilog=_examples("pairing doctor", "pairing doctor --direct",
                                                  "pairing doctor --target localhost:22",
                                                  "pairing doctor --identity ~/.ssh/work_ed25519"))
    doctor.add_argument("--direct", action="store_true",
                        help="check only what `pairing direct` needs: Python, the sshd binary, the terminals it "
                             "gives guests (devpts' tty group), its host key, tmux; no Pulumi, AWS or key of yours")
    doctor.add_argument("--target", type=_target, metavar="HOST:PORT",
                        help="check your system's sshd there, for `pairing host --target` (default: check the sshd "
                             "binary pairing runs on its own)")
    doctor.add_argument("--identity", type=Path, metavar="PATH",
                        help="check this private key, as `pairing host --identity` would use it (default: ~/.ssh/id_*)")
    return top


def main(argv: list[str] | None = None) -> int:
    quiet_library_logs()  # before anything could log
    args = parse(parser(), argv)
    try:
        return COMMANDS[args.command](args)
    except (UpError, OutputsError, PreflightError, AuthorizedKeysError, UnsafeText, InviteError, PuttyKeyError, ShareError,
            OSError) as exc:
        sys.stdout.flush()  # what the command printed comes first, piped too (e.g. up's FAIL lines before this)
        for line in str(exc).splitlines() or [""]:  # several problems: one line each, escaped (text.shown)
            print(shown(f"pairing {args.command}: {line}"), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        sys.stdout.flush()
        print(f"pairing {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
