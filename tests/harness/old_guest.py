"""A guest with an older OpenSSH: Debian 11's 8.4p1, from before KnownHostsCommand (8.5), with
the key exchanges and MACs of Ubuntu 20.04's 8.2 (sntrup761 came in 8.5 too).

A minbase Debian 11 root with openssh-client, built once by debootstrap and cached as a zstd
tarball beside the relays' roots. The guest's ssh runs chrooted in it, in a mount namespace
of its own where the test's folder is bind-mounted at the same path, so every path a test
hands the guest (key, invite, log) means the same inside.
"""

from __future__ import annotations

import inspect
import os
import shutil
import tempfile
from pathlib import Path

from .commands import _die_with_parent, _digest, _run, _tool, _write, cache_dir, require
from .rootfs import _locked_build, _mirrors, _tar, _untar
from .workdirs import _scratch_parent

SUITE = "bullseye"
TOOLS = ("debootstrap", "zstd", "tar", "unshare", "chroot")

# Run as: ENTER ROOT SHARED COMMAND...; from the caller's working directory (tmux -c), which
# must lie under SHARED. /dev comes along for ssh's /dev/null and the pane's terminal.
_ENTER = """#!/bin/sh
set -e
root=$1 shared=$2 cwd=$(pwd)
shift 2
mkdir -p "$root$shared"
mount --bind "$shared" "$root$shared"
mount --rbind /dev "$root/dev"
exec chroot "$root" /bin/sh -c 'cd "$0" && exec "$@"' "$cwd" "$@"
"""


def _debootstrap_client(root: Path) -> None:
    _run(
        [_tool("unshare"), "--mount", "--pid", "--fork", "--kill-child", _tool("debootstrap"),
         "--variant=minbase", "--components=main", "--include=openssh-client", SUITE, str(root), _mirrors()[0]],
        timeout=1800,
        preexec_fn=_die_with_parent,
    )
    shutil.rmtree(root / "var/lib/apt/lists")  # nothing will be installed in it again
    (root / "var/lib/apt/lists/partial").mkdir(parents=True)


_RECIPE = inspect.getsource(_debootstrap_client)


def root_path() -> Path:
    return cache_dir() / f"guest-{SUITE}-{_digest(SUITE, _RECIPE)}.tar.zst"


def build_root() -> Path:
    """The cached tarball of the old guest's root, built once (about a minute)."""
    require(TOOLS)
    tarball = root_path()
    with _locked_build(tarball) as scratch:
        if scratch is None:
            return tarball
        root = scratch / "root"
        _debootstrap_client(root)
        _tar(root, scratch / "root.tar.zst")
        os.rename(scratch / "root.tar.zst", tarball)
    return tarball


class OldGuest:
    """The old guest's root, unpacked for one module's tests: `wrap` runs a command in it."""

    def __init__(self, shared: Path) -> None:
        self.shared = shared

    def __enter__(self) -> "OldGuest":
        tarball = build_root()
        self.workdir = Path(tempfile.mkdtemp(prefix="pairing-old-guest-", dir=_scratch_parent()))
        self.root = self.workdir / "root"
        _untar(tarball, self.root)
        self.enter = self.workdir / "enter"
        _write(self.enter, _ENTER, 0o755)
        return self

    def __exit__(self, *exc: object) -> None:
        # The mounts lived in the guests' own namespaces, gone with them.
        shutil.rmtree(self.workdir, ignore_errors=True)

    def wrap(self) -> tuple[str, ...]:
        """Words to put before a guest's `ssh ...`: the same command, run by the old OpenSSH."""
        return (_tool("unshare"), "--mount", "--propagation", "private", str(self.enter), str(self.root),
                str(self.shared))

    def version(self) -> str:
        return _run([*self.wrap(), "ssh", "-V"], cwd=self.shared).stderr.strip()
