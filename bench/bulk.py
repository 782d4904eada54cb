"""Bulk throughput: the host's sshd sends a payload through the tunnel to a guest.

Host to guest is the way a shared screen's bulk goes (a build log, a `cat`);
the bytes come from a forced `cat` rather than through tmux, which would
measure tmux's drawing instead of the tunnel. The clock runs from the first
byte to the last, so the connection's setup does not count.
"""

from __future__ import annotations

import os
import select
import subprocess
import time
from pathlib import Path

from .terminal import stop_session

TIMEOUT = 300.0
CHUNK = 1 << 20


def download(argv: list[str], log: Path, env: dict[str, str], size: int) -> float:
    """MB/s (10^6 bytes per second) of one transfer of `size` bytes."""
    process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               env=env, start_new_session=True)
    try:
        received, first_chunk, began = _drain(process.stdout.fileno())
        ended = time.monotonic()
    finally:
        stop_session(process)
        process.stdout.close()
    if received != size:
        raise RuntimeError(f"got {received} of {size} bytes: {log.read_text(errors='replace')[-500:]}")
    return (received - first_chunk) / (ended - began) / 1e6


def _drain(fd: int) -> tuple[int, int, float]:
    """Read to EOF: bytes in all, bytes of the first read, and when the first read came."""
    received, first_chunk, began = 0, 0, 0.0
    deadline = time.monotonic() + TIMEOUT
    while select.select([fd], [], [], max(0.0, deadline - time.monotonic()))[0]:
        data = os.read(fd, CHUNK)
        if not data:
            return received, first_chunk, began
        if not received:
            first_chunk, began = len(data), time.monotonic()
        received += len(data)
    raise RuntimeError(f"the transfer did not end within {TIMEOUT} s")
