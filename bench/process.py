"""CPU time and peak memory of a running process, from /proc."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from tests.harness import children

TICK = 1 / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class CpuTimes:
    own: float  # seconds, all threads
    children: float  # seconds of children it has waited for (the hook's tmux calls)


def cpu_times(pid: int) -> CpuTimes:
    """The hook's, with its running ssh's (`--tunnel openssh`) counted as its own: it is the tunnel."""
    utime, stime, cutime, cstime = _times(pid)
    carried = sum(sum(_times(child)[:2]) for child in tunnel_children(pid))
    return CpuTimes(utime + stime + carried, cutime + cstime)


def _times(pid: int) -> tuple[float, ...]:
    # Fields after "(comm)": state is [0], utime [11], stime [12], cutime [13], cstime [14].
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return tuple(int(f) * TICK for f in fields[11:15])


def tunnel_children(pid: int) -> list[int]:
    """The hook's long-lived children: the ssh of `--tunnel openssh` (none with paramiko)."""
    return [child for child in children(pid) if Path(f"/proc/{child}/comm").read_text().strip() == "ssh"]


def peak_rss_mb(pid: int) -> float:
    """VmHWM: the most resident memory the process (and its ssh, if any) has had, in MB (10^6 bytes)."""
    return sum(_peak_rss_mb(p) for p in (pid, *tunnel_children(pid)))


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024 / 1e6
    raise RuntimeError(f"no VmHWM for process {pid}")
