"""tunnel/waiting.py on real sockets: silent connections wait on one thread, the oldest beyond the limit and
any silent too long are closed (the peer sees the close), one that speaks is handed on with its bytes unread,
and the host is told in one line. End to end through the relay: tests/test_flood.py."""

from __future__ import annotations

import queue
import socket

import pytest

from pairing.tunnel.waiting import Waiting

from .harness import wait_until

pytestmark = pytest.mark.pure  # needs neither root nor the relay tools (tests/conftest.py)


def closed_by_the_other_end(sock: socket.socket) -> bool:
    sock.settimeout(5)
    try:
        return sock.recv(1) == b""
    except OSError:
        return True


def test_the_oldest_silent_ones_beyond_the_limit_are_closed_and_a_speaker_goes_on():
    said, spoke = [], queue.Queue()
    waiting = Waiting(said.append, limit=4, idle_timeout=60)
    pairs = [socket.socketpair() for _ in range(7)]
    try:
        for ours, _ in pairs:
            waiting.add(ours, lambda ours=ours: spoke.put(ours), ours.close)
        for _, theirs in pairs[:3]:  # the three that waited longest
            assert closed_by_the_other_end(theirs)
        pairs[5][1].sendall(b"SSH-2.0-guest\r\n")
        handed = spoke.get(timeout=5)
        assert handed is pairs[5][0] and handed.recv(64) == b"SSH-2.0-guest\r\n"  # nothing read meanwhile
        wait_until(lambda: said, 5, "the line about closed connections")
        assert said == ["closed connections through the relay that sent nothing (3 because more than 4 were waiting "
                        "at once): someone is holding connections open; guests who connect still get through"]
        assert spoke.empty()
    finally:
        waiting.stop()
        for ours, theirs in pairs:
            ours.close()
            theirs.close()
    assert waiting.thread.is_alive() is False


def test_one_silent_too_long_is_closed_and_stop_closes_the_rest():
    said = []
    waiting = Waiting(said.append, limit=4, idle_timeout=0.5)
    first, first_peer = socket.socketpair()
    waiting.add(first, lambda: None, first.close)
    assert closed_by_the_other_end(first_peer)
    wait_until(lambda: said, 5, "the line about closed connections")
    assert "(1 silent for 0 s)" in said[0] or "(1 silent for 1 s)" in said[0], said
    second, second_peer = socket.socketpair()
    waiting.add(second, lambda: None, second.close)
    waiting.stop()
    assert closed_by_the_other_end(second_peer)
    for sock in (first_peer, second_peer):
        sock.close()


def test_one_line_per_interval_however_many_are_closed():
    said = []
    waiting = Waiting(said.append, limit=1, idle_timeout=60, report_every=1.0)
    pairs = [socket.socketpair() for _ in range(6)]
    try:
        waiting.add(pairs[0][0], lambda: None, pairs[0][0].close)
        waiting.add(pairs[1][0], lambda: None, pairs[1][0].close)
        wait_until(lambda: said, 5, "the first line")
        for ours, _ in pairs[2:]:
            waiting.add(ours, lambda: None, ours.close)
        for _, theirs in pairs[:5]:
            assert closed_by_the_other_end(theirs)
        assert len(said) == 1  # the next is due a second after the first
        wait_until(lambda: len(said) == 2, 5, "the second line")
        assert said[1].startswith("closed connections through the relay that sent nothing (4 because more than 1 ")
    finally:
        waiting.stop()
        for ours, theirs in pairs:
            ours.close()
            theirs.close()
