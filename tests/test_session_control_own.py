"""Session control with the hook's own sshd (no --target), run as uid 65534 (tests/harness/unprivileged.py):
consent (--ask, allow, deny), kick, and the control socket refusing another uid (root, whom file modes do
not stop). The --target mode's tests, and the helpers: tests/test_session_control.py."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from .harness import PROJECT, Guest, wait_until
from .harness.unprivileged import NOBODY, USER
from .test_own_sshd import land, own_session
from .test_session_control import READY, named_keys, names_config, who


@pytest.fixture(scope="module")
def own(keys, tmp_path_factory):
    named = named_keys(keys, tmp_path_factory.mktemp("own-named-keys"))
    with own_session(named, tmp_path_factory.mktemp("own"), **names_config(named)) as session:
        yield session


def attached(own) -> list[str]:
    result = own.tmux.run("list-clients", "-F", "#{client_pid}", check=False)
    return result.stdout.split() if result.returncode == 0 else []


def test_ask_keeps_a_guest_waiting_until_allowed_and_deny_or_no_answer_ends_it(own):
    hook = own.start_hook("--ask")
    alice = bob = carol = None
    try:
        hook.wait_for(READY)
        carol = own.guest("carol")  # never answered: turned away after 60 s, while the rest goes on
        carol.connect()
        wait_until(lambda: f"waiting for {USER} to let you in" in carol.screen, 30, "carol to be told to wait")
        asked = time.monotonic()
        alice = own.guest("alice")
        alice.connect()
        wait_until(lambda: f"waiting for {USER} to let you in" in alice.screen, 30, "alice to be told to wait",
                   show=lambda: alice.screen)
        hook.wait_for("alice wants to join (typing): pairing allow alice / pairing deny alice (within 60 s)", 5)
        assert who(own.host.pairing) == [("carol", "waiting"), ("alice", "waiting")]
        assert attached(own) == [] and "GUEST-SSH-EXITED" not in alice.screen  # connected, not in tmux

        started = time.monotonic()
        allowed = own.host.pairing("allow", "alice")
        wait_until(lambda: attached(own), 5, "alice's tmux client", interval=0.01)
        took = time.monotonic() - started
        print(f"consent: alice attached {took:.2f} s after `pairing allow alice` started")
        assert (allowed.returncode, allowed.stdout) == (0, "let alice in\n"), allowed
        wait_until(lambda: "$" in alice.screen, 10, "alice's prompt", show=lambda: alice.screen)
        alice.type("echo let-in-$((6*7))")
        wait_until(lambda: "let-in-42" in own.tmux.screen("pair"), 10, "alice's line in the pane")
        hook.wait_for("alice joined the session (typing)", 5)

        bob = own.guest("bob")
        bob.connect()
        wait_until(lambda: f"waiting for {USER} to let you in" in bob.screen, 30, "bob to be told to wait")
        denied = own.host.pairing("deny", "bob")
        assert (denied.returncode, denied.stdout) == (0, "turned bob away\n"), denied
        wait_until(lambda: "GUEST-SSH-EXITED" in bob.screen, 5, "bob's connection to end", show=lambda: bob.screen)
        assert f"pairing: {USER} did not let you in" in bob.screen and "GUEST-SSH-EXITED 1" in bob.screen
        hook.wait_for("bob was not let in (denied)", 5)
        assert who(own.host.pairing) == [("carol", "waiting"), ("alice", "typing")]

        wait_until(lambda: "GUEST-SSH-EXITED" in carol.screen, 75, "carol to be turned away unanswered",
                   show=lambda: carol.screen)
        print(f"unanswered: carol turned away {time.monotonic() - asked:.1f} s after she was told to wait")
        assert f"pairing: {USER} did not answer within 60 s" in carol.screen and "GUEST-SSH-EXITED 1" in carol.screen
        hook.wait_for("carol was not let in (no answer)", 5)
        assert who(own.host.pairing) == [("alice", "typing")]
    finally:
        for guest in (alice, bob, carol):
            if guest:
                guest.disconnect()
        assert hook.stop() == 0, hook.text
    assert "Traceback" not in hook.text, hook.text


def test_kick_and_another_uid_refused_with_the_own_sshd(own):
    hook = own.start_hook()
    alice = bob = None
    try:
        hook.wait_for(READY)
        (socket,) = (own.host.home / ".local/state/pairing/control").glob("*.sock")
        assert oct(socket.stat().st_mode & 0o777) == "0o600" and socket.stat().st_uid == NOBODY
        alice, bob = land(own, "alice"), land(own, "bob")
        assert who(own.host.pairing) == [("alice", "typing"), ("bob", "typing")]
        started = time.monotonic()
        kicked = own.host.pairing("kick", "bob")
        wait_until(lambda: "GUEST-SSH-EXITED" in bob.screen, 2, "bob's connection to end", interval=0.01)
        print(f"kick (own sshd): bob's ssh ended {time.monotonic() - started:.2f} s after `pairing kick bob` started")
        assert kicked.returncode == 0, kicked
        assert f"pairing: {USER} removed you from this session" in bob.screen
        bob.disconnect()
        bob = Guest(own.deployment.folder / "guests" / "bob-again", "bob", own.deployment.keys["bob"], own.invite)
        bob.connect()
        wait_until(lambda: "GUEST-SSH-EXITED" in bob.screen, 30, "bob's reconnect to be refused")
        # The relay itself refuses him now: his key left its live list (tests/test_live_guests.py).
        assert "Permission denied (publickey)" in bob.screen, bob.screen

        # Root, who passes every file mode, is still not the hook's user: the peer's uid is checked.
        as_root = subprocess.run([sys.executable, "-m", "pairing", "who"], cwd=PROJECT, capture_output=True, text=True,
                                 env={**own.host.env, "PYTHONPATH": str(PROJECT)}, timeout=30, stdin=subprocess.DEVNULL)
        assert (as_root.returncode, as_root.stdout) == (2, ""), as_root
        assert as_root.stderr == f"pairing who: the hook at {socket} says: refused: uid 0 is not the hook's user\n"
        hook.wait_for("warning: refused a control connection from uid 0: only you may control this hook", 5)
        assert who(own.host.pairing) == [("alice", "typing")]
        # The host stops: alice's terminal says so last, before the own sshd goes.
        assert hook.stop() == 0, hook.text
        wait_until(lambda: "GUEST-SSH-EXITED" in alice.screen, 10, "alice's ssh to end", show=lambda: alice.screen)
        assert f"pairing: {USER} ended the session" in alice.screen, alice.screen
    finally:
        for guest in (alice, bob):
            if guest:
                guest.disconnect()
        assert hook.stop() == 0, hook.text
    assert "Traceback" not in hook.text, hook.text
