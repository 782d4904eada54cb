"""What a hook killed outright (SIGKILL, the OOM killer, a power cut) leaves, removed by the next one.

A hook that ends in order removes all of it itself (hook.end_session). One killed cannot, and left: the
own sshd's guest keys (its authorized_keys, which no sshd reads any more, but which a later sshd would
have let in), the recording's FIFO folder and the control socket. Each is at a path that follows from
what the hook's lock is on, so the next hook holding that lock finds them: no live hook uses them then.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from pathlib import Path

from .control import socket_path
from .own_sshd import state_base


def scratch_folder(locked: Path) -> Path:
    """The recording's FIFO folder for the hook holding the lock on `locked` (made by the recorder)."""
    digest = hashlib.sha256(os.path.realpath(locked).encode("utf-8", "surrogateescape")).hexdigest()[:16]
    return state_base() / "record" / f"hook-{digest}"


def remove_leftovers(locked: Path, own: bool) -> None:
    """Call holding the lock on `locked`. own: `locked` is the own sshd's authorized_keys (not the user's)."""
    with contextlib.suppress(OSError):
        socket_path(locked).unlink()
    scratch = scratch_folder(locked)
    shutil.rmtree(scratch, ignore_errors=True)
    with contextlib.suppress(OSError):
        scratch.parent.rmdir()  # if no other hook's is in it
    if own:
        folder = locked.parent
        for leftover in (locked, *folder.glob(".authorized_keys.*")):
            with contextlib.suppress(OSError):
                leftover.unlink()
