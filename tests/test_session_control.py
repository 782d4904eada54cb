"""Session control, end to end and all real: guests by name through their gate (pairing/gate.py), the hook's
control socket (pairing/hook/control.py), `pairing who`, `watch`, `drive`, `kick`, and consent (`--ask` with
`allow` and `deny`), with real OpenSSH guests alice and bob on ptys, real tmux, the relay from the harness.
With --target (the system sshd: tests/harness' private one) here; the hook's own sshd, as uid 65534, in
tests/test_session_control_own.py; consent by name and what guests are told, in tests/test_consent.py."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest

from .harness import ORIGINAL_KEYS, ORIGINAL_MODE, PROJECT, Hook, Tmux, join, make_key, pairing_session, wait_until

READY = "ready: guests can join now"
WHO = re.compile(r"(?P<name>\S+) +(?P<state>typing|watching|waiting) +since \d\d:\d\d:\d\d(  idle \d+ (s|min \d+ s))?")


def named_keys(keys, folder) -> dict:
    """The session's keys, and alice, bob (guests) and carol (a viewer) whose comments are their names."""
    named = dict(keys)
    for name in ("alice", "bob", "carol"):
        key = make_key(folder, name)
        subprocess.run(["ssh-keygen", "-q", "-c", "-C", name, "-f", str(key.path)], check=True, capture_output=True)
        named[name] = key
    return named


def names_config(keys) -> dict:
    return {"guestKeys": [keys["alice"].public_line, keys["bob"].public_line], "viewerKeys": [keys["carol"].public_line]}


@pytest.fixture(scope="module")
def pairing(keys, tmp_path_factory):
    named = named_keys(keys, tmp_path_factory.mktemp("named-keys"))
    yield from pairing_session(named, tmp_path_factory, **names_config(named))


def pairing_cli(pairing, *argv: str) -> subprocess.CompletedProcess:
    """A command the host runs in another terminal, as the hook's user with its HOME."""
    return subprocess.run([sys.executable, "-m", "pairing", *argv], cwd=PROJECT, env=pairing.hook_env(),
                          capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)


def host_terminal(pairing) -> Tmux:
    """The host's own terminal attached to the shared session: never a guest."""
    terminal = Tmux(pairing.folder / f"host-terminal-{time.monotonic_ns()}.tmux")
    before = len(pairing.host_tmux.run("list-clients", "-F", "#{client_tty}").stdout.split())
    terminal.run("new-session", "-d", "-s", "host", "-x", "100", "-y", "30",
                 f"env -u TMUX tmux -S {pairing.host_tmux.socket} attach -t ={pairing.session}")
    wait_until(lambda: len(pairing.host_tmux.run("list-clients", "-F", "#{client_tty}").stdout.split()) == before + 1, 10,
               "the host's own client")
    return terminal


def who(run) -> list[tuple[str, str]]:
    result = run("who")
    assert result.returncode == 0 and result.stderr == "", result
    if result.stdout == "nobody is connected to tmux session 'pair'\n":
        return []
    rows = [WHO.fullmatch(line) for line in result.stdout.splitlines()]
    assert all(rows), result.stdout
    return [(row["name"], row["state"]) for row in rows]


def test_who_names_the_guests_not_the_host_and_kick_ends_one(pairing, hook, guests):
    pairing.host_tmux.run("set-option", "-g", "display-time", "10000")
    terminal = host_terminal(pairing)
    try:
        alice = join(pairing, guests, "alice")
        hook.wait_for("alice joined the session (typing)", 10)
        bob = join(pairing, guests, "bob")
        hook.wait_for("bob joined the session (typing)", 10)
        # The tmux message in the shared session, on everyone's status line.
        wait_until(lambda: "pairing: bob joined (typing)" in alice.screen, 10, "the notice on alice's screen",
                   show=lambda: alice.screen)
        listed = pairing_cli(pairing, "who")
        print(f"$ pairing who\n{listed.stdout}", end="")  # what README.md shows
        assert who(lambda *a: pairing_cli(pairing, *a)) == [("alice", "typing"), ("bob", "typing")]
        wait_until(lambda: hook.text.rstrip().endswith("2 typing, 0 watching"), 10, "the status line to count 2",
                   show=lambda: hook.text)
        status = pairing_cli(pairing, "status", "--outputs", str(pairing.outputs), "--tmux-socket",
                             str(pairing.host_tmux.socket))
        assert "guests  2 typing, 0 watching in tmux session 'pair': alice (typing), bob (typing)" in status.stdout

        started = time.monotonic()
        kicked = pairing_cli(pairing, "kick", "bob")
        wait_until(lambda: "GUEST-SSH-EXITED" in bob.screen, 2, "bob's connection to end", interval=0.01,
                   show=lambda: bob.screen)
        took = time.monotonic() - started
        print(f"kick: bob's ssh ended {took:.2f} s after `pairing kick bob` started")
        assert "pairing: root removed you from this session" in bob.screen  # told why, last thing on his screen
        assert (kicked.returncode, kicked.stdout, kicked.stderr) == (
            0, "kicked bob (1 connection ended); kept out until pairing allow bob\n", "")
        hook.wait_for("kicked bob (1 connection ended); kept out until pairing allow bob", 5)
        hook.wait_for("bob left the session", 5)

        # The relay refuses his key at the jump, in ssh's words: it left the relay's live list.
        again = join_refused(pairing, guests, "bob")
        assert "Permission denied (publickey)" in again.screen and "GUEST-SSH-EXITED 255" in again.screen, again.screen
        assert who(lambda *a: pairing_cli(pairing, *a)) == [("alice", "typing")]
        alice.type("echo still-in-$((5*5))")
        wait_until(lambda: "still-in-25" in pairing.host_screen(), 10, "alice still typing")
        print(f"the hook's terminal:\n{hook.text}", end="")
    finally:
        terminal.kill_server()


def join_refused(pairing, guests, name):
    guest = pairing.guest(name)
    guests.append(guest)
    guest.connect()
    wait_until(lambda: "GUEST-SSH-EXITED" in guest.screen, 30, f"{name}'s ssh to end", show=lambda: guest.screen)
    return guest


def test_watch_then_drive_without_reconnecting(pairing, hook, guests):
    pairing.host_tmux.run("set-option", "-g", "assume-paste-time", "0")
    pairing.host_tmux.run("set-option", "-g", "display-time", "10000")
    alice = join(pairing, guests, "alice")
    watched = pairing_cli(pairing, "watch", "alice")
    assert (watched.returncode, watched.stdout) == (0, "alice is watching now\n"), watched
    hook.wait_for("alice is watching now", 5)
    assert who(lambda *a: pairing_cli(pairing, *a)) == [("alice", "watching")]
    # Whatever she types or asks tmux for: a command prompt to make herself typing again, a switch.
    alice.type("echo typed-while-watching-$((2*3))")
    for chord in (["C-b", ":"], ["switch-client -r", "Enter"], ["C-b", "("], ["C-b", ")"], ["C-b", "c"]):
        alice.terminal.run("send-keys", "-t", "guest", *chord)
    alice.type("echo after-the-prompt-$((2*4))")
    # A key a read-only client may use, whose answer shows on her screen: every key before it was dealt with.
    alice.terminal.run("send-keys", "-t", "guest", "C-b", "L")
    wait_until(lambda: "Can't find last session" in alice.screen, 10, "alice's last key to be dealt with",
               show=lambda: alice.screen)
    assert pairing.host_tmux.run("list-clients", "-F", "#{client_readonly} #{client_session}").stdout == "1 pair\n"
    screen = pairing.host_screen()
    assert "typed-while-watching" not in screen and "after-the-prompt" not in screen and "switch-client" not in screen
    assert pairing.host_tmux.run("list-windows", "-t", "=pair", "-F", "#{window_index}").stdout == "0\n"

    # A binding of the host's that toggles read-only (switch-client -r works for read-only clients):
    # she may make herself typing, and the hook sets her back within a second.
    pairing.host_tmux.run("bind-key", "-n", "F5", "switch-client", "-r")
    alice.terminal.run("send-keys", "-t", "guest", "F5")
    hook.wait_for("warning: alice made their tmux client typing (a key bound to switch-client -r?); set back to "
                  "watching", 5)
    wait_until(lambda: pairing.host_tmux.run("list-clients", "-F", "#{client_readonly}").stdout == "1\n", 3,
               "alice watching again")
    pairing.host_tmux.run("unbind-key", "-n", "F5")

    driven = pairing_cli(pairing, "drive", "alice")
    assert (driven.returncode, driven.stdout) == (0, "alice is typing now\n"), driven
    alice.type("echo typed-while-driving-$((3*3))")
    wait_until(lambda: "typed-while-driving-9" in pairing.host_screen(), 10, "alice's line in the pane",
               show=pairing.host_screen)
    assert "typed-while-watching" not in pairing.host_screen()
    assert who(lambda *a: pairing_cli(pairing, *a)) == [("alice", "typing")]
    pairing_cli(pairing, "watch", "alice")  # for the next joins of this module's hook... none: the hook ends here


def test_a_viewer_key_may_be_promoted(pairing, hook, guests):
    carol = join(pairing, guests, "carol")
    hook.wait_for("carol joined the session (watching)", 10)
    assert pairing_cli(pairing, "drive", "carol").stdout == "carol is typing now\n"
    carol.type("echo promoted-$((4*4))")
    wait_until(lambda: "promoted-16" in pairing.host_screen(), 10, "carol's line in the pane", show=pairing.host_screen)


def test_bad_input_is_one_line_each(pairing, hook, guests):
    join(pairing, guests, "alice")
    for argv, line in [
        (("kick", "zed"), "pairing kick: no guest is called 'zed'; connected: alice\n"),
        (("watch", "Bob Smith"), "pairing watch: 'Bob Smith' is not a guest name: use lowercase letters, digits, "
                                 "'.', '_' and '-', at most 32 characters\n"),
        (("allow", "bob"), "pairing allow: bob is not waiting to join; nobody is waiting\n"),
        (("who", "--session", "other"), "pairing who: no pairing hook is running for tmux session 'other' as this "
                                        "user; start one: pairing host (or pairing up)\n"),
    ]:
        result = pairing_cli(pairing, *argv)
        assert (result.returncode, result.stdout, result.stderr) == (3 if "who" in argv else 2, "", line), result


def test_commands_with_no_hook_running_say_so(pairing):
    for command in (("who",), ("kick", "bob"), ("watch", "alice"), ("drive", "alice"), ("allow", "bob"), ("deny", "bob")):
        result = pairing_cli(pairing, *command)
        assert (result.returncode, result.stdout) == (3, ""), result
        assert result.stderr == (f"pairing {command[0]}: no pairing hook is running as this user; start one: "
                                 "pairing host (or pairing up)\n")


def test_the_control_socket_is_the_users_alone(pairing, hook):
    folder = pairing.folder / "home" / ".local" / "state" / "pairing" / "control"
    (socket,) = folder.glob("*.sock")
    assert oct(folder.stat().st_mode & 0o777) == "0o700" and oct(socket.stat().st_mode & 0o777) == "0o600"
    assert socket.stat().st_uid == os.geteuid()


def test_a_guest_is_refused_when_no_hook_runs(pairing, guests):
    """The keys a killed hook left in authorized_keys lead to a gate with nobody to ask: it fails closed."""
    hook = pairing.start_hook()
    hook.wait_for(READY)
    lines = pairing.deployment.authorized_keys.read_bytes()
    assert hook.stop() == 0
    pairing.deployment.authorized_keys.write_bytes(lines)  # as a SIGKILL would leave them
    try:
        refused = pairing.guest("alice")
        guests.append(refused)
        # No tunnel without the hook: straight to the host's sshd, from loopback, as the tunnel would.
        result = subprocess.run(
            ["ssh", "-F", "/dev/null", "-tt", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o",
             "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-i",
             str(pairing.deployment.keys["alice"].path), "-p", str(pairing.deployment.host_sshd.port), "root@127.0.0.1"],
            capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
        assert result.returncode == 1, result
        assert "pairing: the host's pairing is not running, so nobody is let in; ask them to start it" in result.stdout
        assert pairing.host_tmux.run("list-clients", "-F", "#{client_tty}", check=False).stdout == ""
    finally:
        pairing.deployment.authorized_keys.write_bytes(ORIGINAL_KEYS)
        pairing.deployment.authorized_keys.chmod(ORIGINAL_MODE)



def test_a_watcher_who_switched_sessions_is_still_listed_and_kicked(pairing, hook, guests):
    """tmux lets a read-only client switch to another session (C-b )): the room follows her there."""
    tmux = pairing.host_tmux
    tmux.run("new-session", "-d", "-s", "host-private", "-x", "80", "-y", "24")
    try:
        tmux.type("host-private", "echo HOST-PRIVATE-$((16*16))")
        carol = join(pairing, guests, "carol")
        hook.wait_for("carol joined the session (watching)", 10)
        tmux.run("set-option", "-g", "assume-paste-time", "0")
        carol.terminal.run("send-keys", "-t", "guest", "C-b", ")")
        wait_until(lambda: "HOST-PRIVATE-256" in carol.screen, 10, "carol in the other session", show=lambda: carol.screen)
        assert who(lambda *a: pairing_cli(pairing, *a)) == [("carol", "watching")]
        assert "carol left the session" not in hook.text
        assert pairing_cli(pairing, "kick", "carol").stdout.startswith("kicked carol (1 connection ended)")
        wait_until(lambda: "GUEST-SSH-EXITED" in carol.screen, 2, "carol's connection to end", show=lambda: carol.screen)
    finally:
        tmux.run("kill-session", "-t", "=host-private")


def test_a_guest_who_stops_waiting_is_no_longer_listed(pairing, guests):
    hook = Hook(pairing.folder / "hooks", [*pairing.hook_argv(), "--ask"], pairing.hook_env())
    try:
        hook.wait_for(READY)
        bob = pairing.guest("bob")
        guests.append(bob)
        bob.connect()
        wait_until(lambda: "waiting for root to let you in" in bob.screen, 30, "bob told to wait", show=lambda: bob.screen)
        assert who(lambda *a: pairing_cli(pairing, *a)) == [("bob", "waiting")]
        bob.disconnect()  # his terminal closed: ssh, and so his gate, are gone
        hook.wait_for("bob stopped waiting to join", 15)  # consent.LINGER s after he hung up
        assert who(lambda *a: pairing_cli(pairing, *a)) == []
        late = pairing_cli(pairing, "allow", "bob")
        assert (late.returncode, late.stderr) == (2, "pairing allow: bob is not waiting to join; nobody is waiting\n")
    finally:
        assert hook.stop() == 0, hook.text
    assert "Traceback" not in hook.text, hook.text
