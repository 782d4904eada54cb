"""No one guest and no one address can starve the others (docs/SECURITY.md, finding 4), and what a killed
hook leaves is gone at the next start, its sshd's log capped (finding 10). All real: the harness relay, the
own sshd of uid 65534 (test_own_sshd.py's fixture), `pairing direct` over a veth into a namespace of the
test's own (test_direct.py's), real OpenSSH guests in real tmux."""

from __future__ import annotations

import select
import signal
import socket
import threading
import time
from typing import Any, Callable

import pytest

from pairing.accounts import GUEST_USER
from pairing.hook.sshd_log import CAP

from .harness import wait_until
from .harness.ssh_probe import OpenRefused, Probe
from .test_direct import HOST_IP, direct, lan, sshd_port as direct_port  # noqa: F401 (fixtures)
from .test_direct import land as land_direct
from .test_own_sshd import READY, land, own  # noqa: F401 (fixtures)

HELD = 100


def threads(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return int(next(line for line in status if line.startswith("Threads:")).split()[1])


@pytest.mark.parametrize("tunnel", ["paramiko", "openssh"])
def test_a_guest_joins_and_types_while_a_viewer_holds_100_silent_channels(own, tunnel):
    """The viewer's key on the relay, one connection, 100 direct-tcpip channels to the tunnel port that
    never send a byte: a typing guest still joins, the hook's threads stay few, and the hook says so."""
    deployment = own.deployment
    hook = own.start_hook("--tunnel", tunnel)
    guest = holder = None
    try:
        hook.wait_for(READY)
        before = threads(hook.process.pid)
        with Probe.connect(deployment.relay.address, deployment.stack_outputs.relay_port, GUEST_USER,
                           deployment.keys["viewer"].path, deployment.relay_key.public_line) as flood:
            # A channel the hook closed reaches the viewer as an EOF: the relay passes the close on as one.
            holder = Holder(lambda: flood.direct_tcpip("localhost", deployment.settings.tunnel_port),
                            lambda channel: channel.eof_received or channel.closed)
            wait_until(lambda: holder.attempts >= 3 * HELD, 30, "the viewer to open 300 channels")
            guest = land(own)
            guest.type("echo through-the-flood-$((6*7))")
            wait_until(lambda: "through-the-flood-42" in own.tmux.screen("pair"), 10,
                       "the guest's line in the host's pane", show=lambda: own.tmux.screen("pair"))
            hook.wait_for("closed connections through the relay that sent nothing", 20)
            assert threads(hook.process.pid) <= before + 3, f"{before} threads before the flood"  # + the guest's
            holder.stop()
    finally:
        if holder:
            holder.stop()
        if guest:
            guest.disconnect()
        assert hook.stop() == 0, hook.text
    assert hook.text.count("closed connections through the relay") == 1, hook.text  # one line a minute at most
    assert "Traceback" not in hook.text, hook.text


class Holder:
    """Keeps HELD connections open, none of which logs in: each one the other end closes is opened again
    (by open_one, which returns None for one refused at once), until stop(); at most ATTEMPTS in all."""

    ATTEMPTS, SECONDS = 3000, 90

    def __init__(self, open_one: Callable[[], Any], gone: Callable[[Any], bool]) -> None:
        self.open_one, self.gone = open_one, gone
        self.held: list = []
        self.attempts, self.stopping = 0, threading.Event()
        self.thread = threading.Thread(target=self._hold, daemon=True)
        self.thread.start()

    def _hold(self) -> None:
        deadline = time.monotonic() + self.SECONDS
        while not self.stopping.is_set() and self.attempts < self.ATTEMPTS and time.monotonic() < deadline:
            for one in [one for one in self.held if self.gone(one)]:
                one.close()
                self.held.remove(one)
            if len(self.held) >= HELD:
                self.stopping.wait(0.1)
                continue
            self.attempts += 1
            try:
                one = self.open_one()
            except (OSError, OpenRefused):
                one = None
            if one is not None:
                self.held.append(one)
            else:
                self.stopping.wait(0.01)

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(10)
        for one in self.held:
            one.close()


def preauth_connection(address: str, port: int) -> socket.socket | None:
    """A connection sshd keeps open before login (it sent its banner), or None if it was refused at once."""
    sock = socket.create_connection((address, port), timeout=5)
    if sock.recv(4) == b"SSH-":
        return sock
    sock.close()  # "Exceeded MaxStartups", or just closed
    return None


def closed_by_sshd(sock: socket.socket) -> bool:
    """sshd closed it (LoginGraceTime, or MaxStartups' random drop)."""
    if not select.select([sock], [], [], 0)[0]:
        return False
    try:
        return sock.recv(4096, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except OSError:
        return True


def test_a_guest_joins_while_another_address_holds_100_preauth_connections(direct):
    """`pairing direct`: this namespace's address keeps opening connections that never log in, to hold 100;
    the guest, from the other namespace, joins and types. Then a flood of connections leaves sshd.log under
    its cap."""
    hook = direct.start("--listen", HOST_IP)
    guest = holder = None
    try:
        hook.wait_for(READY)
        port = direct_port(hook)
        holder = Holder(lambda: preauth_connection(HOST_IP, port), closed_by_sshd)
        wait_until(lambda: holder.attempts >= 2 * HELD, 30, "the flood to try 200 connections")
        guest = land_direct(direct)
        guest.type("echo past-the-flood-$((6*7))")
        wait_until(lambda: "past-the-flood-42" in direct.tmux.screen("pair"), 10,
                   "the guest's line in the host's pane", show=lambda: direct.tmux.screen("pair"))
        assert len(holder.held) <= 4  # PerSourceMaxStartups
        wait_until(lambda: f"had not logged in: too many at once from {HOST_IP} (its MaxStartups" in hook.text, 10,
                   "the hook to say sshd turned connections away", show=lambda: hook.text)
        holder.stop()
        log = next((direct.host.home / ".local/state/pairing/sshd").glob("pair-*")) / "sshd.log"
        began, count = time.monotonic(), 0
        while not log.with_name("sshd.log.1").exists() and count < 8000 and time.monotonic() - began < 60:
            with socket.create_connection((HOST_IP, port), timeout=5):
                count += 1  # each a few lines of sshd's log
        assert log.stat().st_size <= CAP and log.with_name("sshd.log.1").stat().st_size <= CAP, count
        assert hook.text.count("your sshd turned away") == 1, hook.text  # one line a minute at most
    finally:
        if holder:
            holder.stop()
        if guest:
            guest.disconnect()
        assert hook.stop() == 0, hook.text


def test_after_sigkill_the_next_start_removes_what_the_last_run_left(own):
    state = own.host.home / ".local/state/pairing"
    first = own.start_hook("--record", str(own.host.home / "killed.cast"))
    first.wait_for(READY)
    keys = next((state / "sshd").glob("pair-*")) / "authorized_keys"
    left = [keys, *(state / "control").glob("hook-*.sock"), *(state / "record").glob("hook-*")]
    assert len(left) == 3 and all(path.exists() for path in left), left
    assert first.stop(signal.SIGKILL) == -signal.SIGKILL
    assert all(path.exists() for path in left)  # what SIGKILL leaves: no one removed them
    second = own.start_hook()
    guest = None
    try:
        second.wait_for(READY)
        assert not (state / "record").exists()  # this run records nothing: the killed one's FIFO is gone
        guest = land(own)
        guest.type("echo after-the-kill-$((6*7))")
        wait_until(lambda: "after-the-kill-42" in own.tmux.screen("pair"), 10, "the guest's line in the host's pane")
    finally:
        if guest:
            guest.disconnect()
        assert second.stop() == 0, second.text
    assert not any(path.exists() for path in left), left
