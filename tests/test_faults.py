"""Faults around `pairing host`, each ending in recovery or a clear message, and
authorized_keys byte for byte as it was (the `hook` fixture checks that after
every test that uses it; the others check their own file).

Already covered in tests/test_carriers.py (for both carriers), not repeated here:
the relay's network cut and restored (test_tunnel_returns_after_network_cut), the
relay's sshd restarted with the tunnel's connections killed
(test_tunnel_returns_after_relay_sshd_restart), a SIGKILLed hook's block replaced
on the next start (test_sigkill_then_restart_restores_authorized_keys), a port
still held by a dead connection (test_waits_while_the_relay_still_holds_the_port),
the host's sshd down (test_host_sshd_down_is_said_and_survived) and a second hook
for the same relay (test_second_hook_for_the_same_relay_refuses); in
tests/test_host_hook.py a second hook on the same authorized_keys
(test_second_hook_refuses).
"""

from __future__ import annotations

import errno
import os
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest

from pairing.relay_documents import CLIENT_ALIVE_COUNT, CLIENT_ALIVE_INTERVAL

from .harness import ORIGINAL_KEYS, ORIGINAL_MODE, Hook, Pairing, join, wait_until


# How long the relay keeps a silent connection (and its port) at most: the harness's OpenSSH 9.2
# checks every other ClientAliveInterval, newer ones every interval (half this).
RELAY_WINDOW = 2 * CLIENT_ALIVE_INTERVAL * (CLIENT_ALIVE_COUNT + 1)


def port_listening(pairing: Pairing) -> bool:
    port = pairing.deployment.settings.tunnel_port
    return f":{port} " in pairing.deployment.relay.run(["ss", "-Hltn"]).stdout


# --- the laptop sleeps --------------------------------------------------------------


def test_frozen_past_the_relays_window_the_hook_comes_back(pairing, hook, guests):
    """SIGSTOP until the relay has given the frozen hook up and freed the port, then SIGCONT."""
    after = len(hook.text)
    frozen = time.monotonic()
    os.kill(hook.process.pid, signal.SIGSTOP)
    try:
        wait_until(lambda: not port_listening(pairing), 40, "the relay to drop the frozen hook", interval=0.5)
        dropped = time.monotonic() - frozen
    finally:
        os.kill(hook.process.pid, signal.SIGCONT)
    resumed = time.monotonic()
    hook.wait_for("tunnel back up", timeout=30, after=after)
    back = time.monotonic() - resumed
    print(f"relay dropped the frozen hook after {dropped:.1f} s; tunnel back {back:.1f} s after SIGCONT")
    assert dropped <= RELAY_WINDOW + 2, "the relay held a dead hook's port longer than its keepalive window"
    assert back <= 5
    guest = join(pairing, guests, "guest")
    guest.type("echo after-sleep-$((11*11))")
    wait_until(lambda: "after-sleep-121" in pairing.host_screen(), 10, "the guest's line after the sleep")


FREEZE = 5.0  # a stall within every window: the relay's (8 s at least), the hook's (12 s), the guests' (15 s)


def test_a_short_stall_costs_the_attached_guest_nothing(pairing, hook, guests):
    guest = join(pairing, guests, "guest")
    after = len(hook.text)
    os.kill(hook.process.pid, signal.SIGSTOP)
    try:
        time.sleep(FREEZE)  # the stimulus: a laptop asleep this long, not a wait for a condition
    finally:
        os.kill(hook.process.pid, signal.SIGCONT)
    guest.type("echo still-here-$((12*12))")
    wait_until(lambda: "still-here-144" in pairing.host_screen(), 15, "the same guest's line after the freeze",
               show=lambda: guest.screen)
    assert "GUEST-SSH-EXITED" not in guest.screen
    assert "reconnecting" not in hook.text[after:], hook.text[after:]


# --- the tmux session ends under attached guests -------------------------------------------


@pytest.fixture()
def host_private_session(pairing):
    """The host's other work on the same tmux server, and tmux set to hand clients of an
    ended session another one (detach-on-destroy off, a common setting)."""
    tmux = pairing.host_tmux
    tmux.run("new-session", "-d", "-s", "host-private", "-x", "80", "-y", "24")
    tmux.type("host-private", "echo HOST-PRIVATE-$((14*14))")
    tmux.run("set-option", "-g", "detach-on-destroy", "off")
    yield "HOST-PRIVATE-196"
    tmux.run("set-option", "-gu", "detach-on-destroy")
    tmux.run("kill-session", "-t", "=host-private")


def test_session_killed_under_attached_guests(pairing, hook, guests, host_private_session):
    typing, viewer = join(pairing, guests, "guest"), join(pairing, guests, "viewer")
    after = len(hook.text)
    pairing.host_tmux.run("kill-session", "-t", f"={pairing.session}")
    for guest in (typing, viewer):
        wait_until(lambda: "GUEST-SSH-EXITED" in guest.screen, 10, f"{guest.name} to leave tmux", show=lambda: guest.screen)
        assert host_private_session not in guest.screen, f"{guest.name} was handed the host's other session"
    clients = pairing.host_tmux.run("list-clients", "-F", "#{client_session}").stdout.split()
    assert "host-private" not in clients
    hook.wait_for("was gone; created a new one", timeout=10, after=after)
    again = join(pairing, guests, "viewer")
    pairing.host_types("echo new-session-$((15*15))")
    wait_until(lambda: "new-session-225" in again.screen, 10, "the viewer in the new session")


# --- authorized_keys on a full disk or a read-only ~/.ssh ----------------------------------


class PrivateMounts:
    """A mount namespace of our own, held by a process, where a test may mount over folders.

    `pairing host` runs inside it (nsenter execs it, so signals reach it); the test sees the
    namespace's files through /proc/PID/root. The machine's own mounts are never touched.
    """

    def __init__(self) -> None:
        # unshare execs cat, which holds the namespace until its stdin closes.
        self.process = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "cat"],
                                        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
        ours = os.readlink("/proc/self/ns/mnt")
        wait_until(lambda: os.readlink(f"/proc/{self.process.pid}/ns/mnt") != ours, 5, "the private mount namespace")

    @property
    def prefix(self) -> tuple[str, ...]:
        return ("nsenter", f"--mount=/proc/{self.process.pid}/ns/mnt", "--")

    def run(self, *argv: str) -> None:
        subprocess.run([*self.prefix, *argv], check=True, capture_output=True)

    def inside(self, path: Path) -> Path:
        return Path(f"/proc/{self.process.pid}/root") / path.relative_to("/")

    def close(self) -> None:
        self.process.stdin.close()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture()
def tight_home(pairing, tmp_path):
    """~/.ssh on a 64 KiB tmpfs in a private mount namespace, holding someone's authorized_keys."""
    mounts = PrivateMounts()
    ssh = tmp_path / "tight" / ".ssh"
    ssh.mkdir(parents=True, mode=0o700)
    try:
        mounts.run("mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", str(ssh))
        keys = mounts.inside(ssh / "authorized_keys")
        keys.write_bytes(ORIGINAL_KEYS)
        keys.chmod(ORIGINAL_MODE)
        yield mounts, ssh
    finally:
        mounts.close()


def fill(folder: Path) -> None:
    """Write until the filesystem is full."""
    with open(folder / "filler", "wb", buffering=0) as out:
        try:
            while True:
                out.write(b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc


def start_tight_hook(pairing: Pairing, mounts: PrivateMounts, ssh: Path) -> Hook:
    argv = pairing.hook_argv()
    argv[argv.index("--authorized-keys") + 1] = str(ssh / "authorized_keys")
    return Hook(pairing.folder / "hooks", argv, pairing.hook_env(), prefix=mounts.prefix)


def file_as_it_was(mounts: PrivateMounts, ssh: Path) -> tuple[bytes, int]:
    keys = mounts.inside(ssh / "authorized_keys")
    return keys.read_bytes(), stat.S_IMODE(keys.stat().st_mode)


def leftovers(mounts: PrivateMounts, ssh: Path) -> list[str]:
    return sorted(name for name in os.listdir(mounts.inside(ssh)) if name not in ("authorized_keys", "filler"))


@pytest.mark.parametrize("trouble", ["full", "read-only"])
def test_unwritable_authorized_keys_is_refused_untouched(pairing, tight_home, trouble):
    mounts, ssh = tight_home
    if trouble == "full":
        fill(mounts.inside(ssh))
        reason = "No space left on device"
    else:
        mounts.run("mount", "--bind", str(ssh), str(ssh))
        mounts.run("mount", "-o", "remount,bind,ro", str(ssh))
        reason = "Read-only file system"
    tight = start_tight_hook(pairing, mounts, ssh)
    try:
        assert tight.process.wait(60) == 1, tight.text
    finally:
        tight.stop()
    assert "error: cannot write" in tight.text and f"{reason}; it was left unchanged" in tight.text, tight.text
    assert "ready: guests can join now" not in tight.text
    assert file_as_it_was(mounts, ssh) == (ORIGINAL_KEYS, ORIGINAL_MODE)
    assert leftovers(mounts, ssh) == []


def test_disk_fills_while_running_keys_still_removed(pairing, tight_home):
    """No room for a fresh copy at exit: the block is cut off the file's end in place."""
    mounts, ssh = tight_home
    tight = start_tight_hook(pairing, mounts, ssh)
    try:
        tight.wait_for("ready: guests can join now")
        assert b"# >>> pairing" in mounts.inside(ssh / "authorized_keys").read_bytes()
        fill(mounts.inside(ssh))
    finally:
        code = tight.stop()
    assert code == 0, tight.text
    assert "stopped; guest keys removed from" in tight.text
    assert file_as_it_was(mounts, ssh) == (ORIGINAL_KEYS, ORIGINAL_MODE)
    assert leftovers(mounts, ssh) == []


def test_ssh_folder_turns_read_only_while_running(pairing, tight_home):
    """Nothing can be written: the hook says the keys are still there and how to clean up,
    exits non-zero, and the next run does clean up."""
    mounts, ssh = tight_home
    tight = start_tight_hook(pairing, mounts, ssh)
    try:
        tight.wait_for("ready: guests can join now")
        mounts.run("mount", "--bind", str(ssh), str(ssh))
        mounts.run("mount", "-o", "remount,bind,ro", str(ssh))
    finally:
        code = tight.stop()
    assert code == 1, tight.text
    assert "error: could not remove the guest keys" in tight.text and "run `pairing host` again to clean up" in tight.text
    mounts.run("umount", str(ssh))  # writable again
    again = start_tight_hook(pairing, mounts, ssh)
    try:
        again.wait_for("ready: guests can join now", timeout=60)
        assert mounts.inside(ssh / "authorized_keys").read_bytes().count(b"# >>> pairing") == 1
    finally:
        assert again.stop() == 0, again.text
    assert file_as_it_was(mounts, ssh) == (ORIGINAL_KEYS, ORIGINAL_MODE)
    assert leftovers(mounts, ssh) == []
