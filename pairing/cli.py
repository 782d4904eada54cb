"""Command line: `pairing up|down|ls|host|invite|status|doctor|sshd-key|direct|who|watch|drive|kick|allow|deny|add|extend`
(also `python -m pairing ...`).

Only the arguments and a table of handlers: each command's code lives with its concern.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .arg_types import session_name as _session_name, socket_path as _socket_path, target as _target
from .authorized_keys import AuthorizedKeysError
from .control_cli import cmd_guest, cmd_who
from .direct import cmd_direct, listen_address
from .doctor import cmd_doctor
from .help_format import SHOWN_REQUIRED, CommandParser, Help, examples as _examples
from .hook import PreflightError, cmd_host
from .hook.own_sshd import cmd_sshd_key
from .invite import InviteError, cmd_invite
from .live_cli import COMMANDS as LIVE_COMMANDS, add_parsers as live_parsers
from .outputs import OutputsError
from .putty import PuttyKeyError
from .relays import cmd_ls
from .status import EXIT_STATUS, cmd_status
from .text import UnsafeText
from .tunnel import CARRIERS
from .up import cmd_down, cmd_up
from .up_plan import UpError, default_stack

COMMANDS = {"up": cmd_up, "down": cmd_down, "ls": cmd_ls, "host": cmd_host, "invite": cmd_invite,
            "status": cmd_status, "doctor": cmd_doctor, "sshd-key": cmd_sshd_key, "direct": cmd_direct,
            "who": cmd_who, "watch": cmd_guest, "drive": cmd_guest, "kick": cmd_guest, "allow": cmd_guest,
            "deny": cmd_guest, **LIVE_COMMANDS}

# The commands that reach the running hook's guests (control_cli.py): what each does, an example.
GUEST_COMMANDS = {
    "watch": ("switch a connected guest to watching (read-only) at once, without reconnecting", "pairing watch alice"),
    "drive": ("let a guest type, at once (a viewer key too)", "pairing drive alice"),
    "kick": ("end a guest's connection and keep them out (the relay too refuses their key)", "pairing kick bob"),
    "allow": ("let in a guest waiting to join (pairing host --ask), or a kicked one back", "pairing allow carol"),
    "deny": ("turn away a guest waiting to join (pairing host --ask)", "pairing deny carol"),
}


def _authorized_keys(parser: argparse.ArgumentParser, help: str, default: Path | None = None) -> None:
    """host and up: no default (None), so that giving it is told apart (hook.own_sshd.system_sshd)."""
    parser.add_argument("--authorized-keys", type=Path, default=default, metavar="PATH", help=help)


AUTHORIZED_KEYS = Path.home() / ".ssh" / "authorized_keys"
RECORD_HELP = ("write the session as the guests see it to FILE.cast, a new file (mode 600, on this machine only), "
               "in asciicast v2: `asciinema play FILE.cast` replays it; e.g. --record ~/pair-monday.cast")


def _record(parser: argparse.ArgumentParser) -> None:
    """host, up and direct; checked by hook.recording.check_target before anything is touched."""
    parser.add_argument("--record", type=Path, metavar="FILE.cast", help=RECORD_HELP)


def _invite(parser: argparse.ArgumentParser) -> None:
    """The guest's file: one flag, one default, in every command that writes it."""
    parser.add_argument("--invite", type=Path, default=Path("pairing.conf"), metavar="FILE",
                        help="where to write the guest's ssh config (default: ./pairing.conf; git ignores that name)")


def _stack_help(what: str) -> str:
    return f"the Pulumi stack {what} (default: pair-USER-MACHINE, one per user and machine; here {default_stack()})"


def _common() -> dict[str, argparse.ArgumentParser]:
    source = argparse.ArgumentParser(add_help=False)
    group = source.add_mutually_exclusive_group()
    group.add_argument("--stack", default=default_stack(), help=_stack_help("to read outputs from"))
    group.add_argument("--outputs", type=Path, metavar="FILE",
                       help="read the outputs from FILE (JSON of `pulumi stack output --json --show-secrets`) "
                            "instead of the Pulumi CLI; also for a relay Pulumi did not make")
    stack = argparse.ArgumentParser(add_help=False)
    stack.add_argument("--stack", default=default_stack(), help=_stack_help("of the relay"))
    backend = argparse.ArgumentParser(add_help=False)
    backend.add_argument("--backend", metavar="URL",
                         help="Pulumi backend (file://..., s3://..., https://api.pulumi.com); default: the one you "
                              "are logged in to, else local state under ~/.local/share/pairing")
    host = argparse.ArgumentParser(add_help=False)
    host.add_argument("--identity", type=Path, metavar="PATH",
                      help="private key of pairing:hostPublicKey (default: the matching ~/.ssh/id_* or ssh-agent key)")
    host.add_argument("--target", type=_target, metavar="HOST:PORT",
                      help="your system's sshd, which then gets the guests' keys in --authorized-keys (default: "
                           "pairing runs its own sshd, as you, on 127.0.0.1, and touches nothing in ~/.ssh)")
    _authorized_keys(host, "the authorized_keys file your system's sshd reads for you; given, it means your system's "
                           "sshd, at --target or localhost:22 (default with --target: ~/.ssh/authorized_keys)")
    host.add_argument("--tmux-socket", type=_socket_path, metavar="PATH",
                      help="tmux socket of your session (default: tmux's own)")
    host.add_argument("--tunnel", choices=CARRIERS, default="paramiko",
                      help="what carries the tunnel: paramiko, in this process (default), or openssh, a supervised "
                           "`ssh -N -R` (about 0.4 ms less per keystroke; needs the key in a file or ssh-agent)")
    host.add_argument("--ask", action="store_true",
                      help="each joining guest waits (told so) until you let them in: pairing allow NAME, or "
                           "turn them away: pairing deny NAME; no answer within 60 s turns them away")
    control = argparse.ArgumentParser(add_help=False)
    control.add_argument("--session", type=_session_name, metavar="NAME",
                         help="the running hook's tmux session, when several hooks run (default: the one running)")
    control.add_argument("--tmux-socket", type=_socket_path, metavar="PATH",
                         help="with --session: that session's tmux socket, as the hook was given it")
    _record(host)
    return {"source": source, "stack": stack, "backend": backend, "host": host, "control": control}


GUEST_HELP = ("a guest who may type (required: at least one; repeat for more). SOURCE: a .pub file, a key line, gh:USER, gl:USER, "
              "https://github.com/USER.keys or https://gitlab.com/USER.keys. NAME (a-z, 0-9, '.', '_', '-'; at most "
              "32) is what pairing calls them; default: USER (USER-2... for more keys), else the key's comment "
              "(alice@laptop: alice), else the file's name without .pub")
VIEWER_HELP = "a guest who may only watch (repeat for more); [NAME=]SOURCE as for --guest"


def version() -> str:
    """The installed distribution's version (pyproject.toml's), as pip installed it."""
    from importlib.metadata import PackageNotFoundError, version as installed

    try:
        return installed("pairing")
    except PackageNotFoundError:
        return "(not installed: pip install -e . gives it its version)"


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="pairing", description="Share your tmux with a guest through your own relay.",
                                  formatter_class=Help, epilog=_examples("pairing up --guest gh:octocat",
                                                                         "pairing COMMAND --help"))
    top.add_argument("--version", action="version", version=f"pairing {version()}")
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=CommandParser)
    common = _common()

    up = commands.add_parser(
        "up", parents=[common["stack"], common["backend"], common["host"]],
        help="create the relay, hold the tunnel, print the invite; Ctrl-C ends it",
        description="Check the flags, then this machine (pairing doctor), create or update the relay, write the "
                    "guest's invite, then run the hook (`pairing host`) until Ctrl-C. A key SOURCE is a .pub file, a "
                    "key line, gh:USER or gl:USER.",
        epilog=_examples("pairing up --guest gh:octocat --region eu-central-1",
                         "pairing up --guest alice=~/alice.pub --viewer gl:bob --ttl 60 --allow 203.0.113.0/24"))
    guest = up.add_argument("--guest", action="append", metavar="[NAME=]SOURCE",
                            help=GUEST_HELP)
    setattr(guest, SHOWN_REQUIRED, True)  # checked with every other flag by up_plan, not by argparse
    up.add_argument("--viewer", action="append", metavar="[NAME=]SOURCE", help=VIEWER_HELP)
    up.add_argument("--host-key", type=Path, metavar="FILE.pub", help="your public key (default: ~/.ssh/id_ed25519.pub)")
    up.add_argument("--allow", action="append", metavar="CIDR", help="who may reach the relay (default: anyone)")
    up.add_argument("--ttl", type=int, metavar="MINUTES", help="the relay ends itself after this (default: 240)")
    up.add_argument("--region", help="AWS region (default: AWS_REGION, AWS_DEFAULT_REGION, else your AWS profile's)")
    up.add_argument("--instance-type", metavar="TYPE", help="EC2 instance type (default: t3.micro)")
    up.add_argument("--port", type=int, metavar="PORT", help="the tunnel's port on the relay (default: 1337)")
    up.add_argument("--session", metavar="NAME", help="your tmux session (default: pair)")
    up.add_argument("--sshd-key", metavar="LINE", help="your sshd's host key line (default: that of pairing's own sshd, `pairing sshd-key`; "
                         "with --target: /etc/ssh/ssh_host_ed25519_key.pub)")
    _invite(up)
    up.add_argument("--keep", action="store_true", help="keep the relay when you stop (default: ask, or destroy)")

    down = commands.add_parser("down", parents=[common["stack"], common["backend"]],
                               help="destroy the relay and remove any guest keys left behind",
                               description="Destroy the relay of the stack (its instance, network, security group "
                                           "and host key), after taking out any guest keys a crashed `pairing host "
                                           "--target` left in authorized_keys.",
                               epilog=_examples("pairing down", "pairing down --stack pair-alice-laptop"))
    _authorized_keys(down, "where `pairing host` put the guests' keys (default: ~/.ssh/authorized_keys)", AUTHORIZED_KEYS)

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
        epilog=_examples("pairing direct --guest gh:octocat --viewer ~/bob.pub --listen 100.101.102.103:2222"))
    guest = direct.add_argument("--guest", action="append", metavar="[NAME=]SOURCE",
                                help=GUEST_HELP)
    setattr(guest, SHOWN_REQUIRED, True)  # checked with the keys by cmd_direct, not by argparse
    direct.add_argument("--viewer", action="append", metavar="[NAME=]SOURCE", help=VIEWER_HELP)
    direct.add_argument("--listen", type=listen_address, required=True, metavar="ADDRESS[:PORT]",
                        help="the one address of this machine the sshd listens on (default port: a free one, "
                             "said at start and in the invite)")
    direct.add_argument("--listen-all", action="store_true",
                        help="allow --listen 0.0.0.0 or ::, every address of this machine, public ones too")
    _invite(direct)
    direct.add_argument("--session", type=_session_name, default="pair", metavar="NAME",
                        help="your tmux session (default: pair)")
    direct.add_argument("--tmux-socket", type=_socket_path, metavar="PATH",
                        help="tmux socket of your session (default: tmux's own)")
    _record(direct)

    invite = commands.add_parser("invite", parents=[common["source"], common["backend"]],
                                 help="write the guest's ssh config and print their command",
                                 description="Write the guest's ssh config (pairing.conf: both hops pinned, no "
                                             "secret in it) from the stack's outputs, and print the command they "
                                             "run and the fingerprints to compare.",
                                 epilog=_examples("pairing invite", "pairing invite --invite ~/alice.conf --known-hosts"))
    _invite(invite)
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
                             "PuTTY key, both hops pinned; writes no file")
    invite.add_argument("--ipv6", action="store_true",
                        help="send the guest to the relay's IPv6 address (relayIpv6Address), for an IPv6-only network")

    status = commands.add_parser("status", parents=[common["source"], common["backend"]],
                                 help="the relay, its time left, the tunnel and the guests",
                                 description="Say whether there is a relay, how long it has left, whether a "
                                             "`pairing host` holds its tunnel, and who is attached to the tmux "
                                             "session; the exit status tells the four cases apart.",
                                 epilog=f"{EXIT_STATUS}\n\n" + _examples("pairing status",
                                                                          "pairing status --outputs outputs.json"))
    _authorized_keys(status, argparse.SUPPRESS, AUTHORIZED_KEYS)
    status.add_argument("--tmux-socket", type=_socket_path, metavar="PATH",
                        help="tmux socket of your session (default: tmux's own)")

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
    live_parsers(commands, common["control"], _examples)

    doctor = commands.add_parser("doctor", help="check this machine can host a session, with the fix for each problem",
                                 description="Check Python, the Pulumi CLI, AWS credentials, the sshd binary (or a "
                                             "running sshd with --target), tmux, OpenSSH and your key: one line "
                                             "each, every failure with its fix, and a last line counting them "
                                             "(exit 1 if any failed).",
                                 epilog=_examples("pairing doctor", "pairing doctor --target localhost:22",
                                                  "pairing doctor --identity ~/.ssh/work_ed25519"))
    doctor.add_argument("--target", type=_target, metavar="HOST:PORT",
                        help="check your system's sshd there, for `pairing host --target` (default: check the sshd "
                             "binary pairing runs on its own)")
    doctor.add_argument("--identity", type=Path, metavar="PATH",
                        help="check this private key, as `pairing host --identity` would use it (default: ~/.ssh/id_*)")
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (UpError, OutputsError, PreflightError, AuthorizedKeysError, UnsafeText, InviteError, PuttyKeyError, OSError) as exc:
        for line in str(exc).splitlines() or [""]:  # several problems: one line each
            print(f"pairing {args.command}: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"pairing {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
