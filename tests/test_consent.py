"""Consent and what guests are told, end to end through the harness relay (issue 19, items 1, 2 and 11):
--ask never takes the host's keys, an answer applies to the guest it names and to no other, a guest
reconnecting raises one question, a kicked guest let back lands, and guests are told in their own terminal
when they are switched and when the host stops. Real OpenSSH guests on ptys, real tmux, `pairing host
--target` (the harness' private sshd); the helpers: tests/test_session_control.py."""

from __future__ import annotations

import re
import shlex
import sys
import time

from .harness import ORIGINAL_KEYS, ORIGINAL_MODE, PROJECT, Hook, Tmux, join, wait_until
from .test_session_control import READY, host_terminal, pairing, pairing_cli, who  # noqa: F401 (a fixture)

QUESTION = re.compile(r"let (?P<a>\S+) in \(|(?P<b>\S+) wants to join \(")


def ask_hook(pairing) -> Hook:
    hook = Hook(pairing.folder / "hooks", [*pairing.hook_argv(), "--ask"], pairing.hook_env())
    hook.wait_for(READY)
    return hook


def waiting_guest(pairing, guests, name: str):
    guest = pairing.guest(name)
    guests.append(guest)
    guest.connect()
    wait_until(lambda: "waiting for root to let you in" in guest.screen, 30, f"{name} told to wait",
               show=lambda: guest.screen)
    return guest


def listed(pairing) -> dict[str, str]:
    return dict(who(lambda *a: pairing_cli(pairing, *a)))


def test_the_hosts_typing_reaches_the_pane_while_a_guest_waits(pairing, guests):
    """The host's own tmux client is told who waits, on its status line, and keeps every key it types:
    `yarn test` typed while alice waits runs whole, and does not let her in."""
    hook = ask_hook(pairing)
    pairing.host_tmux.run("set-option", "-g", "assume-paste-time", "0")
    host = host_terminal(pairing)
    try:
        alice = waiting_guest(pairing, guests, "alice")
        wait_until(lambda: "alice" in host.screen("host"), 10, "alice's name on the host's tmux client",
                   show=lambda: host.screen("host"))
        notice = "pairing: alice wants to join (typing): pairing allow alice / pairing deny alice"
        shown = host.screen("host")
        for key in "yarn test":  # one key at a time, as a person types
            host.run("send-keys", "-t", "host", "-l", key)
        host.run("send-keys", "-t", "host", "Enter")
        wait_until(lambda: "not found" in pairing.host_screen(), 10, "the host's line to run",
                   show=pairing.host_screen)
        assert re.search(r"\byarn: (command )?not found", pairing.host_screen()), pairing.host_screen()
        assert listed(pairing) == {"alice": "waiting"}
        assert "waiting for root to let you in" in alice.screen and "$" not in alice.screen
        assert notice in shown, shown
        denied = pairing_cli(pairing, "deny", "alice")
        assert (denied.returncode, denied.stdout) == (0, "turned alice away\n"), denied
        wait_until(lambda: "GUEST-SSH-EXITED 1" in alice.screen, 10, "alice turned away", show=lambda: alice.screen)
    finally:
        host.kill_server()
        assert hook.stop() == 0, hook.text
    assert "Traceback" not in hook.text, hook.text


class HookTerminal:
    """`pairing host --ask` in a terminal of its own (a tmux pane): what the host sees, and keys they type."""

    def __init__(self, pairing) -> None:
        self.tmux = Tmux(pairing.folder / f"hook-terminal-{time.monotonic_ns()}.tmux")
        env = [f"{k}={v}" for k, v in pairing.hook_env().items()]
        command = shlex.join(["env", "-i", *env, sys.executable, "-m", "pairing", "host", *pairing.hook_argv(), "--ask"])
        self.tmux.run("new-session", "-d", "-s", "hook", "-x", "200", "-y", "50", "-c", str(PROJECT),
                      f"{command}; echo HOOK-EXITED $?; sleep 600")

    @property
    def screen(self) -> str:
        return self.tmux.screen("hook")

    def asked_about(self) -> str | None:
        """The guest the lowest question on the screen names: what the host reads as being asked."""
        names = [m["a"] or m["b"] for line in self.screen.splitlines() for m in [QUESTION.search(line)] if m]
        return names[-1] if names else None

    def answer(self, line: str, done) -> None:
        """Type line and Enter, as the host would; again if the hook says the question changed as they typed."""
        for _ in range(3):
            refused = self.screen.count("not answered")
            self.tmux.type("hook", line)
            wait_until(lambda: done() or self.screen.count("not answered") > refused, 15, f"{line!r} answered",
                       show=lambda: self.screen)
            if done():
                return
        raise AssertionError(f"{line!r} never answered:\n{self.screen}")

    def stop(self) -> None:
        self.tmux.run("send-keys", "-t", "hook", "C-c")
        wait_until(lambda: "HOOK-EXITED" in self.screen, 30, "the hook to stop", show=lambda: self.screen)
        assert "HOOK-EXITED 0" in self.screen and "Traceback" not in self.screen, self.screen

    def kill(self) -> None:
        self.tmux.kill_server()


def test_a_y_in_the_hooks_terminal_lets_in_the_guest_it_shows_and_no_other(pairing, guests):
    """bob asks, then alice: the host answers what their terminal shows, and only that guest is let in,
    or turned away."""
    terminal = HookTerminal(pairing)
    try:
        wait_until(lambda: READY in terminal.screen, 60, "the hook's ready", show=lambda: terminal.screen)
        bob = waiting_guest(pairing, guests, "bob")
        alice = waiting_guest(pairing, guests, "alice")
        wait_until(lambda: "alice wants to join (typing)" in terminal.screen, 10, "alice's question",
                   show=lambda: terminal.screen)
        assert listed(pairing) == {"bob": "waiting", "alice": "waiting"}
        shown = terminal.asked_about()
        other = {"alice": "bob", "bob": "alice"}[shown]
        print(f"the hook's terminal asks about {shown}:\n{terminal.screen.rstrip()}")
        terminal.answer("y", lambda: listed(pairing).get(shown) == "typing")
        assert listed(pairing) == {shown: "typing", other: "waiting"}
        let_in = {"alice": alice, "bob": bob}
        wait_until(lambda: "#" in let_in[shown].screen, 10, f"{shown} in tmux", show=lambda: let_in[shown].screen)

        wait_until(lambda: terminal.asked_about() == other, 10, f"the question about {other}",
                   show=lambda: terminal.screen)
        terminal.answer("", lambda: other not in listed(pairing))  # Enter: no
        wait_until(lambda: "GUEST-SSH-EXITED 1" in let_in[other].screen, 10, f"{other} turned away",
                   show=lambda: let_in[other].screen)
        assert "pairing: root did not let you in" in let_in[other].screen
        assert listed(pairing) == {shown: "typing"}
        terminal.stop()
    finally:
        terminal.kill()
    assert pairing.authorized_keys() == (ORIGINAL_KEYS, ORIGINAL_MODE)


def test_a_guest_reconnecting_raises_one_question(pairing, guests):
    hook = ask_hook(pairing)
    try:
        for _ in range(5):
            waiting_guest(pairing, guests, "alice").disconnect()
        alice = waiting_guest(pairing, guests, "alice")
        assert listed(pairing) == {"alice": "waiting"}
        assert hook.text.count("alice wants to join") == 1, hook.text
        allowed = pairing_cli(pairing, "allow", "alice")
        assert (allowed.returncode, allowed.stdout) == (0, "let alice in\n"), allowed
        wait_until(lambda: "#" in alice.screen, 10, "alice in tmux", show=lambda: alice.screen)
        hook.wait_for("alice joined the session (typing)", 10)
    finally:
        assert hook.stop() == 0, hook.text
    assert "Traceback" not in hook.text, hook.text


def test_a_kicked_guest_let_back_by_allow_lands(pairing, hook, guests):
    join(pairing, guests, "bob")
    hook.wait_for("bob joined the session", 10)  # the room has seen his client: his leaving is said too
    assert pairing_cli(pairing, "kick", "bob").returncode == 0
    hook.wait_for("bob left the session", 10)
    allowed = pairing_cli(pairing, "allow", "bob")
    assert (allowed.returncode, allowed.stdout, allowed.stderr) == (
        0, "bob is no longer kept out; they may join again\n", ""), allowed
    hook.wait_for("bob is no longer kept out (pairing allow bob); they may join again", 5)
    bob = join(pairing, guests, "bob")
    bob.type("echo back-in-$((7*7))")
    wait_until(lambda: "back-in-49" in pairing.host_screen(), 10, "bob's line in the pane", show=pairing.host_screen)


def test_a_guest_is_told_when_switched_to_watching_and_to_typing(pairing, hook, guests):
    alice = join(pairing, guests, "alice")
    # Once the room has seen her: its notice of her join would otherwise overwrite the line to her.
    hook.wait_for("alice joined the session", 10)
    assert pairing_cli(pairing, "watch", "alice").stdout == "alice is watching now\n"
    wait_until(lambda: "pairing: root switched you to watching" in alice.screen, 10, "alice told she watches",
               show=lambda: alice.screen)
    assert pairing_cli(pairing, "drive", "alice").stdout == "alice is typing now\n"
    wait_until(lambda: "pairing: root switched you to typing" in alice.screen, 10, "alice told she types",
               show=lambda: alice.screen)


def test_guests_are_told_when_the_host_stops(pairing, guests):
    """In tmux or still waiting, each guest's terminal says the host ended the session, last."""
    hook = ask_hook(pairing)
    try:
        alice = waiting_guest(pairing, guests, "alice")
        assert pairing_cli(pairing, "allow", "alice").returncode == 0
        wait_until(lambda: "#" in alice.screen, 10, "alice in tmux", show=lambda: alice.screen)
        hook.wait_for("alice joined the session (typing)", 10)
        bob = waiting_guest(pairing, guests, "bob")
    finally:
        assert hook.stop() == 0, hook.text
    for guest in (alice, bob):
        wait_until(lambda: "GUEST-SSH-EXITED" in guest.screen, 10, f"{guest.name}'s ssh to end",
                   show=lambda: guest.screen)
        assert "pairing: root ended the session" in guest.screen, guest.screen
    assert "told 1 guest the session ended" in hook.text, hook.text
    assert "Traceback" not in hook.text, hook.text
