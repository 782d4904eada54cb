"""Running the host's tools for the harness: what to install when one is missing, commands
that fail with their output, processes that die with the test run, the harness's errors.

The underscore names are the harness's own, not the tests'. Their spelling stays: the image
recipes (rootfs.py, qemu.py) call them, and the recipes' source text is the images' cache key.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

# Which Debian package ships each host tool, for the "install this" message.
TOOL_PACKAGES = {
    "debootstrap": "debootstrap",
    "zstd": "zstd",
    "tar": "tar",
    "unshare": "util-linux",
    "nsenter": "util-linux",
    "chroot": "coreutils",
    "ip": "iproute2",
    "ssh": "openssh-client",
    "qemu-system-x86_64": "qemu-system-x86",
    "qemu-img": "qemu-utils",
    "mkfs.ext4": "e2fsprogs",
    "genisoimage": "genisoimage",
}


class HarnessError(RuntimeError):
    """The harness could not bring a relay up or build its image."""


class MissingPrerequisite(HarnessError):
    """The host lacks a tool or privilege; the message says what to install."""


class CommandError(subprocess.CalledProcessError):
    def __str__(self) -> str:
        output = f"{self.stdout or ''}{self.stderr or ''}".strip()
        return f"{super().__str__()}\n{_tail(output, 60)}"


class CloudInitError(HarnessError):
    """A cloud-init stage failed on the user data; the message carries its output and log."""


def _tail(text: str, lines: int) -> str:
    return "\n".join(text.splitlines()[-lines:])


def cache_dir() -> Path:
    return Path(os.environ.get("PAIRING_CACHE") or Path.home() / ".cache" / "pairing")


def require(tools: Sequence[str]) -> None:
    """Fail with what to install when the host cannot run the harness."""
    if os.geteuid() != 0:
        raise MissingPrerequisite("the relay harness must run as root (namespaces, mounts, chroot)")
    missing = [tool for tool in tools if _which(tool) is None]
    if missing:
        packages = " ".join(sorted({TOOL_PACKAGES[tool] for tool in missing}))
        raise MissingPrerequisite(
            f"missing {', '.join(missing)}: apt-get -o DPkg::Lock::Timeout=600 install -y {packages}"
        )


def _which(tool: str) -> str | None:
    # Root's tools live in sbin, which a venv's or sudo's PATH may lack.
    dirs = [*filter(None, os.environ.get("PATH", "").split(os.pathsep)), "/usr/local/sbin", "/usr/sbin", "/sbin"]
    return shutil.which(tool, path=os.pathsep.join(dirs))


def _tool(name: str) -> str:
    path = _which(name)
    if path is None:
        require([name])
    return str(path)


def _run(
    argv: Sequence[str],
    *,
    check: bool = True,
    input: str | None = None,
    timeout: float = 120,
    **popen: Any,
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        list(argv), check=False, input=input, capture_output=True, text=True, errors="replace", timeout=timeout,
        **popen,
    )
    if check and proc.returncode:
        raise CommandError(proc.returncode, proc.args, proc.stdout, proc.stderr)
    return proc


_libc = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    # A SIGKILLed test run must not leave namespaces full of sshd and cloud-init behind.
    # The signal follows the thread that started the child, so enter relays from one that
    # outlives them.
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def children(pid: int) -> list[int]:
    """The process's children, forked by any of its threads; none once it is gone."""
    found = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            found += [int(child) for child in (task / "children").read_text().split()]
    except FileNotFoundError:
        return []
    return found


def _signal_nsenter(nsenter: subprocess.Popen[bytes], sig: int) -> None:
    """Signal the command nsenter runs: nsenter forwards no signals, its only child is it."""
    if nsenter.poll() is None:
        for pid in children(nsenter.pid) or [nsenter.pid]:
            os.kill(pid, sig)


def _default_meta_data() -> str:
    return f"instance-id: relay-{uuid.uuid4().hex[:12]}\nlocal-hostname: relay\n"


def _digest(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:16]


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)



def _wait_for_banner(
    address: str, port: int, timeout: float, alive: Callable[[], bool], why_dead: Callable[[], str]
) -> None:
    """Wait until an SSH server answers on address:port, failing early if it died."""
    deadline = time.monotonic() + timeout
    pause = 0.01
    while True:
        try:
            with socket.create_connection((address, port), timeout=5) as conn:
                conn.settimeout(10)
                if conn.makefile("rb").readline(256).startswith(b"SSH-"):
                    return
        except OSError:
            pass
        if not alive():
            raise HarnessError(f"SSH server on {address}:{port} died:\n{why_dead()}")
        if time.monotonic() > deadline:
            raise HarnessError(f"SSH server on {address}:{port} not up after {timeout}s:\n{why_dead()}")
        time.sleep(pause)  # poll interval of this wait-for-condition
        pause = min(pause * 2, 0.5)
