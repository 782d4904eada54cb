"""One guest's line in authorized_keys: the key, forced to `tmux attach` of one session, or to the
gate (pairing/gate.py) that asks the running hook first, then execs that same `tmux attach`.

Rendered only from validated values, and every part refuses what sshd or a login
shell would read otherwise than written (control characters, backslashes).
"""

from __future__ import annotations

from typing import Sequence

from .shared_ports import SharedPort, permit_options
from .sshkeys import PublicKey
from .text import UnsafeText, printable


def guest_line(key: PublicKey, tmux_command: str, sources: tuple[str, ...] = (),
               shared: Sequence[SharedPort] = ()) -> str:
    """A guest key that can do one thing on the host: attach to the session,
    and (given `sources`) only when it arrives from there: the tunnel. `shared`: the host's loopback
    ports its connection may open too (pairing/shared_ports.py), and nothing else."""
    origin = f"from={_quote_option(','.join(sources))}," if sources else ""
    return printable(f"restrict,pty,{permit_options(shared)}{origin}command={_quote_option(tmux_command)} {key.line}",
                     "a guest's key line")


def _quote_option(value: str) -> str:
    """An authorized_keys option value as sshd reads it back: inside the quotes, only `\\"`
    is an escape (a quote); every other backslash is kept as it is (auth-options.c)."""
    if value.endswith("\\"):  # it would escape the closing quote
        raise UnsafeText(f"the option value {value!r} ends in a backslash; refusing to write it")
    return '"' + printable(value, "an authorized_keys option").replace('"', '\\"') + '"'


def tmux_attach_command(session: str, read_only: bool, socket: str | None = None) -> str:
    # "=name": exactly that session. A bare name also matches any session whose name starts
    # with it, so while `pair` is gone a guest would land in, say, `pairing-notes`.
    argv = ["tmux"] + (["-S", socket] if socket else []) + ["attach"] + (["-r"] if read_only else []) + ["-t", f"={session}"]
    return " ".join(_shell_word(word) for word in argv)


def gate_command(python: str, gate: str, control: str, name: str, session: str, socket: str,
                 tmux: str = "tmux") -> str:
    """The guest's forced command when the hook runs a control channel: its gate, isolated from the
    environment and site (-I -S: stdlib only, fast to start), told who it is, and which tmux server
    the hook's session is on (never the guest's $TMUX nor tmux's default), by this line alone."""
    argv = ["exec", python, "-I", "-S", gate, "--control", control, "--name", name, "--session", session,
            "--tmux-socket", socket, *(["--tmux", tmux] if tmux != "tmux" else [])]
    return " ".join(_shell_word(word) for word in argv)


_PLAIN = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_/.-")


def _shell_word(word: str) -> str:
    r"""One word as every login shell sshd may run the command with (`$SHELL -c`) reads it back:
    bash, dash, zsh and fish. shlex.quote is POSIX only: it leaves `=pair` bare, which zsh
    expands as a command path (`zsh:1: pair not found`). So anything but plain characters goes
    in single quotes, and a ' in "'", which all four read alike. Backslashes are refused: fish
    reads \\ and \' inside single quotes as escapes, and sshd's command="..." keeps every
    backslash not before a ", so none survives both unchanged."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F or c == "\\" for c in word):
        raise UnsafeText(f"control character or backslash in a tmux command word: {word!r}")
    if word and all(c in _PLAIN for c in word):
        return word
    # No '' pair is written: zsh with RC_QUOTES reads it as a quote.
    return "\"'\"".join(f"'{part}'" if part else "" for part in word.split("'")) or "''"
