"""The host's ~/.ssh/authorized_keys: one marked block of guest lines, in and out.

The block functions are pure and exact: removing a block gives back, byte for
byte, the text it was added to (no trailing newline, CRLF lines, unicode and
all). The file functions write atomically (temp file + rename in the same
folder), keep the file's mode and owner (refusing a file they could only hand to a new owner),
keep lines other programs append meanwhile, and never leave a half-written file.
The lines themselves (each guest key forced to `tmux attach`): forced_command.py.
"""

from __future__ import annotations

import errno
import fcntl
import os
import pwd
import re
import signal
import stat
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

BEGIN = "# >>> pairing: guest keys added by `pairing host`; removed when it exits"
END = "# <<< pairing"
# Flags on the BEGIN line record what adding the block changed besides the
# block itself, so removal can undo exactly that, even after a crash.
JOINED = " [newline added]"  # the file did not end in a newline
CREATED = " [file created]"  # there was no file


class AuthorizedKeysError(RuntimeError):
    """The file cannot be changed safely; it was left as it was."""


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


# mkstemp's names for our temp copies (prefix, 8 of its letters, suffix): what a crash may leave.
_TEMP = re.compile(r"\.authorized_keys\.[a-z0-9_]{8}\.pairing")
_RETRIES = 20  # the file replaced by someone else between our read and our rename: read again
_WRITERS_GRACE = 2.0  # seconds to wait for a writer still holding the old file open


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

    def check_owner(self) -> None:
        """Refuse a file we could only replace with one of our own (a new owner), before touching it."""
        try:
            owner = self.real.stat().st_uid
        except FileNotFoundError:
            return
        except OSError as exc:
            raise AuthorizedKeysError(f"cannot read {self.path}: {exc.strerror}; it was left unchanged") from None
        me = os.geteuid()
        if me == 0 or owner == me:  # root gives a copy the old owner back (fchown)
            return
        raise AuthorizedKeysError(
            f"{self.real} belongs to {_user(owner)} (uid {owner}), not to you ({_user(me)}): editing it would make it "
            f"yours; give it to you (sudo chown {_user(me)} {self.real}) or pass --authorized-keys with a file of "
            "yours that sshd reads"
        )

    def clean_leftovers(self) -> list[str]:
        """Remove our temp copies a crash (SIGKILL mid-write) left beside the file. Only call while
        holding the hook's lock on this folder: then no copy of ours is being written."""
        folder, removed = self.real.parent, []
        try:
            names = os.listdir(folder)
        except OSError:
            return removed
        for name in names:
            if not _TEMP.fullmatch(name):
                continue
            try:
                info = os.lstat(folder / name)
                if stat.S_ISREG(info.st_mode) and info.st_uid == os.geteuid():
                    os.unlink(folder / name)
                    removed.append(name)
            except OSError:
                pass
        return removed

    def install(self, lines: list[str]) -> None:
        """Put the guests' block in (replacing a stale one)."""
        self._edit(lambda text: with_block(text, lines))

    def remove(self) -> bool:
        """Take the block out again; True if there was one."""
        text = self.read()
        if text is None or _find_begin(text) < 0:
            return False
        try:
            self._edit(lambda text: None if text is None or block_created_file(text) else without_block(text))
        except AuthorizedKeysError:
            if not self._cut_in_place(text, without_block(text)):
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

    def _edit(self, change) -> None:
        """Replace the file with change(its text) (None: remove it), atomically, keeping mode and
        owner, and keeping what other processes (ssh-copy-id, `echo >>`) append meanwhile."""
        self.check_owner()
        path = self.real
        for _ in range(_RETRIES):
            try:
                old = open(path, "rb")
            except FileNotFoundError:
                old = None
            except OSError as exc:
                raise AuthorizedKeysError(f"cannot read {self.path}: {exc.strerror}; it was left unchanged") from None
            try:
                data = old.read() if old else None
                current = os.fstat(old.fileno()) if old else None
                new = change(data.decode("utf-8", "surrogateescape") if old else None)
                if new is None and old is None:
                    return
                if self._swap(path, current, None if new is None else new.encode("utf-8", "surrogateescape")):
                    if old:
                        self._carry_over(old, len(data), path, needs_newline=bool(new) and not new.endswith("\n"))
                    return
            finally:
                if old:
                    old.close()
        raise AuthorizedKeysError(f"{self.path} kept being replaced by another program; it was left unchanged")

    def _swap(self, path: Path, current: os.stat_result | None, content: bytes | None) -> bool:
        """Put `content` in place of the file we read (whose stat is `current`); False if the file
        at `path` is no longer that one (replaced, made or removed by someone else)."""
        folder = path.parent
        temp = None
        try:
            if not folder.exists():
                folder.mkdir(mode=0o700, parents=True)
            if content is not None:
                fd, temp = tempfile.mkstemp(prefix=".authorized_keys.", suffix=".pairing", dir=folder)
        except OSError as exc:
            raise AuthorizedKeysError(f"cannot write in {folder}: {exc.strerror}; it was left unchanged") from None
        try:
            if temp is not None:
                with os.fdopen(fd, "wb") as out:
                    os.fchmod(out.fileno(), stat.S_IMODE(current.st_mode) if current else 0o600)
                    if current and os.geteuid() == 0:
                        os.fchown(out.fileno(), current.st_uid, current.st_gid)
                    out.write(content)
                    out.flush()
                    os.fsync(out.fileno())
            if _identity(path) != (current and (current.st_dev, current.st_ino)):
                return False
            if temp is None:
                path.unlink(missing_ok=True)
            else:
                os.replace(temp, path)
                temp = None
            return True
        except OSError as exc:
            verb = "remove" if content is None else "write"
            raise AuthorizedKeysError(f"cannot {verb} {self.path}: {exc.strerror}; it was left unchanged") from None
        finally:
            if temp is not None:
                Path(temp).unlink(missing_ok=True)

    def _carry_over(self, old, seen: int, path: Path, needs_newline: bool) -> None:
        """What was appended to the old file after we read it (through a descriptor opened before
        our rename), appended to the new one. Done once no one has the old file open for writing."""
        deadline = time.monotonic() + _WRITERS_GRACE
        late = b""
        while True:
            old.seek(seen + len(late))
            late += old.read()
            if not _writers_may_remain(old.fileno()) or time.monotonic() > deadline:
                old.seek(seen + len(late))
                late += old.read()
                break
            time.sleep(0.001)
        if not late:
            return
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with os.fdopen(fd, "ab") as out:
                out.write((b"\n" if needs_newline and not late.startswith(b"\n") else b"") + late)
                out.flush()
                os.fsync(out.fileno())
        except OSError as exc:
            raise AuthorizedKeysError(
                f"cannot keep the lines another program added to {self.path} meanwhile ({exc.strerror}): {late!r}"
            ) from None


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return None
    return info.st_dev, info.st_ino


def _writers_may_remain(fd: int) -> bool:
    """Whether some process may still have this (renamed-away) file open for writing. Linux: a
    read lease is granted only when none has, and a writer opening it meanwhile breaks it."""
    if not hasattr(fcntl, "F_SETLEASE"):
        return False  # no way to tell: what was appended by now has been carried over
    # A broken lease is told by a signal, SIGIO by default, which would kill us: SIGURG is ignored.
    fcntl.fcntl(fd, fcntl.F_SETSIG, signal.SIGURG)
    try:
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_RDLCK)
    except OSError as exc:
        return exc.errno == errno.EAGAIN  # EAGAIN: open for writing; else leases unsupported here
    try:
        return fcntl.fcntl(fd, fcntl.F_GETLEASE) != fcntl.F_RDLCK  # a writer came while we held it
    finally:
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)
