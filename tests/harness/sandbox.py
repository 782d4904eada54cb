"""A chroot inside its own mount, PID, UTS and IPC namespaces: where cloud-init, apt and the
relay's sshd run, none of it able to leak into the host's mount table."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from .commands import HarnessError, _die_with_parent, _run, _tool

CHROOT_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "LANG": "C.UTF-8",
    "DEBIAN_FRONTEND": "noninteractive",
}

# Runs in the holder's mount and PID namespaces, outside the chroot: the pseudo filesystems a
# booted system has, private to this root. No /dev/console on purpose: cloud-init then writes
# its console messages to its stdout instead of the host's console.
MOUNT_SCRIPT = r"""
set -eu
root=$1
mount -t proc -o nosuid,nodev,noexec proc "$root/proc"
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$root/sys"
mount -t tmpfs -o nosuid,noexec,mode=0755 dev "$root/dev"
node() { mknod -m 0666 "$root/dev/$1" c "$2" "$3"; }
node null 1 3; node zero 1 5; node full 1 7; node random 1 8; node urandom 1 9; node tty 5 0
mkdir -m 0755 "$root/dev/pts"; mkdir -m 1777 "$root/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620,gid=5 devpts "$root/dev/pts"
ln -s pts/ptmx "$root/dev/ptmx"
ln -s /proc/self/fd "$root/dev/fd"
ln -s /proc/self/fd/0 "$root/dev/stdin"
ln -s /proc/self/fd/1 "$root/dev/stdout"
ln -s /proc/self/fd/2 "$root/dev/stderr"
mount -t tmpfs -o nosuid,nodev,mode=0755 run "$root/run"
mkdir -m 1777 "$root/run/lock"
# systemd's RuntimeDirectory= creates sshd's privilege separation directory on a real boot.
mkdir -m 0755 "$root/run/sshd"
"""

# PID 1 of a sandbox: reaps whatever gets orphaned inside (cloud-init forks helpers, sshd
# sessions outlive a restarted listener) and holds the namespaces open until killed.
HOLDER = """
import os, signal
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
# /proc is still the host's here, so this is our PID as the world outside the namespace sees it.
print(os.readlink("/proc/self"), flush=True)
while True:
    signal.sigwait({signal.SIGCHLD})
    try:
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass
    except ChildProcessError:
        pass
"""


class Sandbox:
    """A chroot inside its own mount, PID, UTS and IPC namespaces (and a netns, if given).

    One long-lived holder process owns the namespaces; every command enters them with nsenter
    and chroots. Killing the holder kills everything inside and drops every mount with the
    namespace, so nothing can leak into the host's mount table.
    """

    def __init__(self, root: Path, netns: str | None = None) -> None:
        self.root = root
        self._netns = netns
        self._holder: subprocess.Popen[str] | None = None
        self.pid = 0

    def start(self) -> None:
        enter_net = [_tool("nsenter"), f"--net=/run/netns/{self._netns}"] if self._netns else []
        unshare = [_tool("unshare"), "--mount", "--pid", "--uts", "--ipc", "--fork", "--kill-child"]
        self._holder = subprocess.Popen(
            [*enter_net, *unshare, sys.executable, "-c", HOLDER],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=_die_with_parent,
        )
        assert self._holder.stdout is not None and self._holder.stderr is not None
        line = self._holder.stdout.readline()
        if not line.strip().isdigit():
            self._holder.wait()
            raise HarnessError(f"namespace holder failed to start: {self._holder.stderr.read()}")
        self.pid = int(line)
        _run([*self._enter(), "sh", "-c", MOUNT_SCRIPT, "mount-root", str(self.root)])

    def stop(self) -> None:
        if self._holder is None:
            return
        holder, self._holder = self._holder, None
        if holder.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
        holder.wait()
        for stream in (holder.stdout, holder.stderr):
            if stream:
                stream.close()

    def _enter(self) -> list[str]:
        namespaces = ["--mount", "--pid", "--uts", "--ipc", "--net"]
        return [_tool("nsenter"), f"--target={self.pid}", *namespaces, "--"]

    def argv(self, argv: Sequence[str]) -> list[str]:
        return [*self._enter(), _tool("chroot"), str(self.root), *argv]

    def run(
        self,
        argv: Sequence[str],
        *,
        check: bool = True,
        input: str | None = None,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        """Run argv in the root. On timeout only our nsenter dies; the command lives on until stop()."""
        return _run(self.argv(argv), check=check, input=input, timeout=timeout, env=CHROOT_ENV)

    def popen(self, argv: Sequence[str], log: Path) -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            return subprocess.Popen(
                self.argv(argv), stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=CHROOT_ENV
            )


