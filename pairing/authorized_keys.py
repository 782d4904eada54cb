"""The host's ~/.ssh/authorized_keys: one marked block of guest lines, in and out.

The block functions are pure and exact: removing a block gives back, byte for
byte, the text it was added to (no trailing newline, CRLF lines, unicode and
all). The file functions write atomically (temp file + rename in the same
folder), keep the file's mode and owner, and never leave a half-written file.
"""

from __future__ import annotations

import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .sshkeys import PublicKey
from .text import UnsafeText, printable

BEGIN = "# >>> pairing: guest keys added by `pairing host`; removed when it exits"
END = "# <<< pairing"
# Flags on the BEGIN line record what adding the block changed besides the
# block itself, so removal can undo exactly that, even after a crash.
JOINED = " [newline added]"  # the file did not end in a newline
CREATED = " [file created]"  # there was no file


class AuthorizedKeysError(RuntimeError):
    """The file cannot be changed safely; it was left as it was."""


def guest_line(key: PublicKey, tmux_command: str, sources: tuple[str, ...] = ()) -> str:
    """A guest key that can do one thing on the host: attach to the session,
    and (given `sources`) only when it arrives from there: the tunnel."""
    origin = f"from={_quote_option(','.join(sources))}," if sources else ""
    return printable(f"restrict,pty,{origin}command={_quote_option(tmux_command)} {key.line}", "a guest's key line")


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


def without_block(text: str) -> str:
    """The text with pairing's block (if any) removed, restored exactly."""
    start = _find_begin(text)
    if start < 0:
        return text
    end_at = text.find("\n" + END, start)
    if end_at < 0:  # a truncated block: drop from BEGIN to the end
        end_at = len(text)
    else:
        end_at = text.find("\n", end_at + 1 + len(END))
        end_at = len(text) if end_at < 0 else end_at + 1
    begin_line = text[start : text.find("\n", start)]
    before, after = text[:start], text[end_at:]
    if JOINED in begin_line and before.endswith("\n") and not after:
        before = before[:-1]
    return before + after


def _find_begin(text: str) -> int:
    if text.startswith(BEGIN):
        return 0
    at = text.find("\n" + BEGIN)
    return at + 1 if at >= 0 else -1


def with_block(text: str | None, lines: list[str]) -> str:
    """`text` (None: no file) with a fresh block of `lines` at its end; an old block is replaced."""
    base = without_block(text) if text is not None else ""
    flags = CREATED if text is None or _block_created_file(text) else ""
    if base and not base.endswith("\n"):
        flags += JOINED
        base += "\n"
    return base + "\n".join([BEGIN + flags, *lines, END]) + "\n"


def _block_created_file(text: str) -> bool:
    """A stale block that had created the file keeps saying so once replaced."""
    return text.startswith(BEGIN) and CREATED in text[: text.find("\n")]


def block_created_file(text: str) -> bool:
    """True when removing the block should remove the file too."""
    return _block_created_file(text) and not without_block(text)


@dataclass(frozen=True)
class AuthorizedKeysFile:
    path: Path

    @property
    def real(self) -> Path:
        """The file itself: a symlinked authorized_keys (dotfiles) stays a symlink, its target is edited."""
        return Path(os.path.realpath(self.path))

    def read(self) -> str | None:
        try:
            return self.real.read_bytes().decode("utf-8", "surrogateescape")
        except FileNotFoundError:
            return None

    def install(self, lines: list[str]) -> None:
        """Put the guests' block in (replacing a stale one)."""
        self._replace(with_block(self.read(), lines))

    def remove(self) -> bool:
        """Take the block out again; True if there was one."""
        text = self.read()
        if text is None or _find_begin(text) < 0:
            return False
        if block_created_file(text):
            try:
                self.real.unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise AuthorizedKeysError(f"cannot remove {self.path}: {exc.strerror}; it still holds the guests' keys") from None
            return True
        kept = without_block(text)
        try:
            self._replace(kept)
        except AuthorizedKeysError:
            if not self._cut_in_place(text, kept):
                raise
        return True

    def _cut_in_place(self, text: str, kept: str) -> bool:
        """With no room for a new copy (a full disk), cut the block off the end in place,
        which needs no space at all. Only when the block is the file's tail."""
        old, new = text.encode("utf-8", "surrogateescape"), kept.encode("utf-8", "surrogateescape")
        if not old.startswith(new):
            return False
        try:
            with open(self.real, "r+b") as out:
                if out.read() != old:  # changed since we read it
                    return False
                out.truncate(len(new))
                out.flush()
                os.fsync(out.fileno())
        except OSError:
            return False
        return True

    def _replace(self, text: str) -> None:
        path = self.real
        folder = path.parent
        try:
            if not folder.exists():
                folder.mkdir(mode=0o700, parents=True)
            current = path.stat() if path.exists() else None
            fd, temp = tempfile.mkstemp(prefix=".authorized_keys.", suffix=".pairing", dir=folder)
        except OSError as exc:
            raise AuthorizedKeysError(f"cannot write in {folder}: {exc.strerror}; it was left unchanged") from None
        try:
            with os.fdopen(fd, "wb") as out:
                os.fchmod(out.fileno(), stat.S_IMODE(current.st_mode) if current else 0o600)
                if current and os.geteuid() == 0:
                    os.fchown(out.fileno(), current.st_uid, current.st_gid)
                out.write(text.encode("utf-8", "surrogateescape"))
                out.flush()
                os.fsync(out.fileno())
            os.replace(temp, path)
        except OSError as exc:
            Path(temp).unlink(missing_ok=True)
            raise AuthorizedKeysError(f"cannot write {self.path}: {exc.strerror}; it was left unchanged") from None
