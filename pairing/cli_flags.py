"""The flags several commands share (pairing/cli.py builds the commands): one definition and one help text each."""

from __future__ import annotations

import argparse
from pathlib import Path

from .arg_types import session_name as _session_name, socket_path as _socket_path, target as _target
from .share_cli import add_flags as share_flags
from .tunnel import CARRIERS, default_carrier
from .up_plan import default_stack


def authorized_keys(parser: argparse.ArgumentParser, help: str, default: Path | None = None) -> None:
    """host and up: no default (None), so that giving it is told apart (hook.own_sshd.system_sshd)."""
    parser.add_argument("--authorized-keys", type=Path, default=default, metavar="PATH", help=help)


AUTHORIZED_KEYS = Path.home() / ".ssh" / "authorized_keys"
RECORD_HELP = ("write the session as the guests see it to FILE.cast, a new file (mode 600, on this machine only), "
               "in asciicast v2: `asciinema play FILE.cast` replays it; e.g. --record ~/pair-monday.cast")


def record(parser: argparse.ArgumentParser) -> None:
    """host, up and direct; checked by hook.recording.check_target before anything is touched."""
    parser.add_argument("--record", type=Path, metavar="FILE.cast", help=RECORD_HELP)


def ask(parser: argparse.ArgumentParser) -> None:
    """host, up and direct: the same room (hook/room.py) asks the host."""
    parser.add_argument("--ask", action="store_true",
                        help="each joining guest waits (told so) until you let them in: pairing allow NAME, or "
                             "turn them away: pairing deny NAME (or y/N in this terminal, about the guest its "
                             "bottom line names); no answer within 60 s turns them away")


def invite(parser: argparse.ArgumentParser) -> None:
    """The guest's file: one flag, one default, in every command that writes it."""
    parser.add_argument("--invite", type=Path, default=Path("pairing.conf"), metavar="FILE",
                        help="where to write the guest's ssh config (default: ./pairing.conf; git ignores that name)")


def stack_help(what: str) -> str:
    return f"the Pulumi stack {what} (default: pair-USER-MACHINE, one per user and machine; here {default_stack()})"


def common() -> dict[str, argparse.ArgumentParser]:
    source = argparse.ArgumentParser(add_help=False)
    group = source.add_mutually_exclusive_group()
    group.add_argument("--stack", default=default_stack(), help=stack_help("to read outputs from"))
    group.add_argument("--outputs", type=Path, metavar="FILE",
                       help="read the outputs from FILE (JSON of `pulumi stack output --json --show-secrets`) "
                            "instead of the Pulumi CLI; also for a relay Pulumi did not make")
    stack = argparse.ArgumentParser(add_help=False)
    stack.add_argument("--stack", default=default_stack(), help=stack_help("of the relay"))
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
    authorized_keys(host, "the authorized_keys file your system's sshd reads for you; given, it means your system's "
                           "sshd, at --target or localhost:22 (default with --target: ~/.ssh/authorized_keys)")
    host.add_argument("--tmux-socket", type=_socket_path, metavar="PATH",
                      help="the tmux server's socket for the session, yours alone (default: pairing's own server, "
                           "~/.local/state/pairing/tmux/SESSION)")
    host.add_argument("--tunnel", choices=CARRIERS, default=None,
                      help="what carries the tunnel: openssh, a supervised `ssh -N -R` (the default where ssh is "
                           f"installed; here: {default_carrier()}), since it adds the least per keystroke "
                           "(bench/README.md); or paramiko, in this process, which needs nothing else. A key "
                           "with a passphrase that ssh-agent does not hold goes through paramiko, which can ask "
                           "for it. paramiko pins the relay, preflights and self-tests under either")
    ask(host)
    control = argparse.ArgumentParser(add_help=False)
    control.add_argument("--session", type=_session_name, metavar="NAME",
                         help="the running hook's tmux session, when several hooks run (default: the one running)")
    control.add_argument("--tmux-socket", type=_socket_path, metavar="PATH",
                         help="with --session: that session's tmux socket, as the hook was given it")
    record(host)
    share_flags(host)
    return {"source": source, "stack": stack, "backend": backend, "host": host, "control": control}


GUEST_HELP = ("a guest who may type (required: at least one; repeat for more). SOURCE: a .pub file, a key line, gh:USER, gl:USER, "
              "https://github.com/USER.keys or https://gitlab.com/USER.keys. NAME (a-z, 0-9, '.', '_', '-'; at most "
              "32) is what pairing calls them; default: USER (USER-2... for more keys), else the key's comment "
              "(alice@laptop: alice), else the file's name without .pub")
VIEWER_HELP = "a guest who may only watch (repeat for more); [NAME=]SOURCE as for --guest"
