"""Forwarded connections that have not spoken yet, held by one thread until they do.

Every guest's connection comes through the relay as a channel of the one tunnel connection, and reaches
the host's sshd from 127.0.0.1: neither the relay's per-address limits nor the host sshd's can tell one
guest from another there. What tells a guest from a flood is that an SSH client speaks first: OpenSSH,
PuTTY and paramiko send their `SSH-2.0-...` line as soon as the connection opens. So a carrier connects
a channel to the host's sshd only once it has sent bytes; until then it waits here, and

- at most LIMIT wait at once: a new one beyond that closes the one that has waited longest, so a flood
  of silent channels never keeps a fresh guest from getting through;
- none waits longer than IDLE_TIMEOUT;
- all of them together cost one thread (a selector), not one each.

The host is told in one line, at most once per REPORT_EVERY, how many were closed.
"""

from __future__ import annotations

import collections
import selectors
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

LIMIT = 32  # silent connections at once; a guest's own are silent only for a round trip
IDLE_TIMEOUT = 10.0  # seconds a connection may stay silent
REPORT_EVERY = 60.0  # seconds between two lines about closed connections


@dataclass(eq=False)
class Arrival:
    """One connection waiting for its first bytes: what to watch, what to do when it speaks or is sent away."""

    watched: object  # anything with fileno(): a socket, a paramiko Channel
    spoke: Callable[[], None]  # called on the selector's thread: must hand the work to another
    close: Callable[[], None]
    since: float = field(default_factory=time.monotonic)


class Waiting:
    """Holds silent connections until they speak (then spoke()), are too many or too old (then close())."""

    def __init__(self, warn: Callable[[str], None], limit: int = LIMIT, idle_timeout: float = IDLE_TIMEOUT,
                 report_every: float = REPORT_EVERY) -> None:
        self.warn, self.limit, self.idle_timeout, self.report_every = warn, limit, idle_timeout, report_every
        self.selector = selectors.DefaultSelector()
        self.waiting: collections.OrderedDict[Arrival, None] = collections.OrderedDict()  # oldest first
        self.arriving: collections.deque[Arrival] = collections.deque()  # added by other threads
        self.wake_read, self.wake_write = socket.socketpair()
        self.wake_read.setblocking(False)
        self.wake_write.setblocking(False)
        self.selector.register(self.wake_read, selectors.EVENT_READ, None)
        self.stopping = False
        self.closed_since_report = {"too many": 0, "silent": 0}
        self.reported_at = -report_every  # the first line goes at once
        self.thread = threading.Thread(target=self._run, name="pairing-waiting", daemon=True)
        self.thread.start()

    def add(self, watched: object, spoke: Callable[[], None], close: Callable[[], None]) -> None:
        """From any thread: hold `watched` until it has bytes to read (or its peer closed it)."""
        if self.stopping:
            _quietly(close)
            return
        self.arriving.append(Arrival(watched, spoke, close))
        self._wake()

    def stop(self) -> None:
        """Close every connection still waiting, and end the thread."""
        self.stopping = True
        self._wake()
        self.thread.join(5)

    def _wake(self) -> None:
        try:
            self.wake_write.send(b"\0")
        except (BlockingIOError, OSError):
            pass  # already woken, or stopped

    def _run(self) -> None:
        try:
            while not self.stopping:
                self._take_arrivals()
                for key, _ in self.selector.select(self._next_timeout()):
                    if key.data is None:
                        self._drain_wake()
                    elif key.data in self.waiting:
                        self._forget(key.data)
                        self._hand_on(key.data)
                self._expire()
                self._report()
        finally:
            self._take_arrivals()
            for arrival in list(self.waiting):
                self._forget(arrival)
                _quietly(arrival.close)
            self.selector.close()
            self.wake_read.close()
            self.wake_write.close()

    def _hand_on(self, arrival: Arrival) -> None:
        try:
            arrival.spoke()
        except Exception:  # e.g. no thread could be started for it: that one connection is closed, not the rest
            _quietly(arrival.close)

    def _take_arrivals(self) -> None:
        while self.arriving:
            arrival = self.arriving.popleft()
            try:
                self.selector.register(arrival.watched, selectors.EVENT_READ, arrival)
            except (OSError, ValueError):  # closed before we got to it
                _quietly(arrival.close)
                continue
            self.waiting[arrival] = None
            while len(self.waiting) > self.limit:
                oldest = next(iter(self.waiting))
                self._send_away(oldest, "too many")

    def _next_timeout(self) -> float | None:
        """Until the oldest one has waited too long, or the next line about closed ones is due; None: nothing to do."""
        now, due = time.monotonic(), []
        if self.waiting:
            due.append(next(iter(self.waiting)).since + self.idle_timeout)
        if any(self.closed_since_report.values()):
            due.append(self.reported_at + self.report_every)
        return max(0.0, min(due) - now) if due else None

    def _expire(self) -> None:
        now = time.monotonic()
        while self.waiting:
            oldest = next(iter(self.waiting))
            if now - oldest.since < self.idle_timeout:
                return
            self._send_away(oldest, "silent")

    def _send_away(self, arrival: Arrival, why: str) -> None:
        self._forget(arrival)
        _quietly(arrival.close)
        self.closed_since_report[why] += 1  # said by _report: the first line at once, then one per REPORT_EVERY

    def _report(self) -> None:
        if not any(self.closed_since_report.values()) or time.monotonic() < self.reported_at + self.report_every:
            return
        many, silent = self.closed_since_report["too many"], self.closed_since_report["silent"]
        parts = [f"{many} because more than {self.limit} were waiting at once" if many else "",
                 f"{silent} silent for {self.idle_timeout:.0f} s" if silent else ""]
        self.warn("closed connections through the relay that sent nothing (" + "; ".join(p for p in parts if p)
                  + "): someone is holding connections open; guests who connect still get through")
        self.closed_since_report = {"too many": 0, "silent": 0}
        self.reported_at = time.monotonic()

    def _forget(self, arrival: Arrival) -> None:
        self.waiting.pop(arrival, None)
        try:
            self.selector.unregister(arrival.watched)
        except (KeyError, ValueError, OSError):
            pass

    def _drain_wake(self) -> None:
        try:
            while self.wake_read.recv(4096):
                pass
        except (BlockingIOError, OSError):
            pass


def _quietly(close: Callable[[], None]) -> None:
    try:
        close()
    except Exception:  # a connection already gone: nothing more to close
        pass
