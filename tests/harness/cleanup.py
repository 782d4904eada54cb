"""What relays killed without teardown (SIGKILL) left behind, and outdated cached images."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from .commands import _run, _tool, cache_dir
from .netns import NETNS_PREFIX, Netns
from .qemu import QEMU_PREFIX, disk_image_path
from .rootfs import SUITES, _locked_build, rootfs_path
from .workdirs import _owned

def cleanup_stale() -> list[str]:
    """Remove what relays killed without teardown (SIGKILL) left, and cached images this
    version of the harness would not use. Run it while no relay is starting."""
    ip = _tool("ip")
    removed, live_netns = [], set()
    for workdir in (*_workdirs(tempfile.gettempdir()), *_workdirs("/dev/shm")):
        if _owned(workdir):
            marker = workdir / "netns"
            live_netns.add(marker.read_text() if marker.exists() else "")
        else:
            shutil.rmtree(workdir)
            removed.append(str(workdir))
    for line in _run([ip, "netns", "list"]).stdout.splitlines():
        name = line.split()[0]
        stale = name.startswith(NETNS_PREFIX) and name not in live_netns
        if stale and not _run([ip, "netns", "pids", name]).stdout.strip():
            Netns(int(name.removeprefix(NETNS_PREFIX))).delete()
            removed.append(name)
    current = {path.name for suite in SUITES for path in (rootfs_path(suite), disk_image_path(suite))}
    for entry in cache_dir().glob("*"):
        if entry.name.startswith(("rootfs-", "qemu-")) and entry.name not in current:
            with _locked_build(entry) as scratch:
                if scratch is None:  # built, so nobody is building it
                    shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
                    removed.append(str(entry))
            (entry.parent / f".{entry.name}.lock").unlink()
    return removed


def _workdirs(parent: str) -> list[Path]:
    return [*Path(parent).glob(f"{NETNS_PREFIX}*"), *Path(parent).glob(f"{QEMU_PREFIX}*")]

