"""A second `pairing up` or `pairing host` for a session that is running never harms it:
it refuses first, in one line saying what runs (pid, since when) and how to stop it,
with nothing written and no relay touched. The lock is on the real authorized_keys (a
symlink is the same file), and what a killed hook left is not believed or is cleaned.
All real: the relay from the harness, the host's sshd, hooks as processes. Fixtures: conftest.py."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pairing import cli, up
from pairing.hook import PreflightError, SingleHook, state_file

from .harness import ORIGINAL_KEYS, ORIGINAL_MODE, PROJECT, Hook, Pairing, join, wait_until


def record_file(pairing: Pairing) -> Path:
    """The hook's state file in its HOME (the tests' hooks have no XDG_STATE_HOME)."""
    name = state_file(pairing.deployment.authorized_keys).name  # named by the real file's path
    return Path(pairing.hook_env()["HOME"]) / ".local" / "state" / "pairing" / name


def refusal(pairing: Pairing, hook: Hook, command: str = "host") -> str:
    """The line a second run must print, from what the first one wrote about itself."""
    real = os.path.realpath(pairing.deployment.authorized_keys)
    record = json.loads(record_file(pairing).read_text())
    assert record["pid"] == hook.process.pid
    since = dt.datetime.fromtimestamp(record["started"]).strftime("%Y-%m-%d %H:%M:%S")
    return (f"another `pairing {command}` is already running for {real} (pid {hook.process.pid}, since {since}); "
            f"stop it first: Ctrl-C in its terminal, or kill {hook.process.pid}")


def still_serves(pairing: Pairing, guests: list, word: str) -> None:
    guest = join(pairing, guests, "guest")
    guest.type(f"echo {word}-$((8*8))")
    wait_until(lambda: f"{word}-64" in pairing.host_screen(), 10, "the guest's line in the first session's pane")


def test_second_up_refuses_before_anything(pairing, hook, guests, keys, tmp_path):
    """Same --authorized-keys as the running session: no doctor, no deploy, no invite, no destroy."""
    folder = tmp_path / "cwd"
    folder.mkdir()
    invite = folder / "pairing.conf"
    invite.write_bytes(b"# the invite the guests already have\n")
    other_invite = folder / "elsewhere.conf"
    other_invite.write_bytes(b"# another one\n")
    before = pairing.authorized_keys()
    env = dict(pairing.hook_env(), PYTHONPATH=str(PROJECT))
    for extra in ([], ["--invite", str(other_invite)]):
        result = subprocess.run(
            [sys.executable, "-m", "pairing", "up", "--guest", keys["guest"].public_line, "--region", "eu-west-1",
             "--identity", str(pairing.deployment.keys["host"].path),
             "--authorized-keys", str(pairing.deployment.authorized_keys), *extra],
            cwd=folder, env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
        )
        assert (result.returncode, result.stdout) == (2, ""), result.stdout + result.stderr
        assert result.stderr == f"pairing up: {refusal(pairing, hook)}\n"
    assert invite.read_bytes() == b"# the invite the guests already have\n"
    assert other_invite.read_bytes() == b"# another one\n"
    assert sorted(os.listdir(folder)) == ["elsewhere.conf", "pairing.conf"]
    assert pairing.authorized_keys() == before
    still_serves(pairing, guests, "after-second-up")


def test_second_host_refuses_naming_pid_and_since(pairing, hook, guests):
    before = pairing.authorized_keys()
    second = pairing.start_hook()
    assert second.process.wait(60) == 2, second.text
    assert second.text == f"pairing host: {refusal(pairing, hook)}\n"
    assert pairing.authorized_keys() == before
    still_serves(pairing, guests, "after-second-host")


def test_a_symlink_to_the_same_file_is_the_same_session(pairing, hook, tmp_path):
    """Dotfiles: ~/.ssh/authorized_keys a symlink to the running hook's file. Refused, not a second block."""
    linked = tmp_path / "dotfiles-home" / ".ssh"
    linked.mkdir(parents=True)
    (linked / "authorized_keys").symlink_to(pairing.deployment.authorized_keys)
    argv = pairing.hook_argv()
    argv[argv.index("--authorized-keys") + 1] = str(linked / "authorized_keys")
    before = pairing.authorized_keys()
    second = Hook(pairing.folder / "hooks", argv, pairing.hook_env())
    try:
        assert second.process.wait(60) == 2, second.text
    finally:
        second.stop()
    assert second.text == f"pairing host: {refusal(pairing, hook)}\n"
    assert pairing.authorized_keys() == before and pairing.authorized_keys()[0].count(b"# >>> pairing") == 1


def status(pairing: Pairing) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "pairing", "status", "--outputs", str(pairing.outputs),
         "--authorized-keys", str(pairing.deployment.authorized_keys), "--tmux-socket", str(pairing.host_tmux.socket)],
        cwd=PROJECT, env=pairing.hook_env(), capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    line = next(line for line in result.stdout.splitlines() if line.startswith("tunnel  "))
    assert result.returncode == (3 if line.startswith("tunnel  not held: run pairing host ") else 0), result.stderr
    return line


def test_after_sigkill_status_believes_no_stale_file_and_the_next_start_cleans_up(pairing):
    ssh = pairing.deployment.authorized_keys.parent
    killed = pairing.start_hook()
    killed.wait_for("ready: guests can join now")
    assert f"pid {killed.process.pid})" in status(pairing)
    assert killed.stop(signal.SIGKILL) == -signal.SIGKILL
    # What the crash left: the block, the state file naming the dead pid, and (killed mid-write) a temp copy.
    record = record_file(pairing)
    assert json.loads(record.read_text())["pid"] == killed.process.pid
    (ssh / ".authorized_keys.q7_0zk3m.pairing").write_bytes(ORIGINAL_KEYS[:40])
    (ssh / ".authorized_keys.q7_0zk3m.pairing").chmod(0o640)
    assert status(pairing) == f"tunnel  not held: run pairing host --outputs {pairing.outputs} --tmux-socket {pairing.host_tmux.socket}"
    # Something else holds the lock (a new hook not yet past its first line, here flock(1)):
    # the dead hook's word is still not taken for its.
    holder = subprocess.Popen(["flock", "--nonblock", "--no-fork", str(ssh), "sleep", "600"])
    try:
        wait_until(lambda: "held by" in status(pairing), 10, "flock to hold the folder")
        assert status(pairing) == f"tunnel  held by a running `pairing host` (pid {holder.pid})"
    finally:
        holder.kill()
        holder.wait()
    again = pairing.start_hook()
    again.wait_for("ready: guests can join now", timeout=60)
    assert sorted(os.listdir(ssh)) == ["authorized_keys"]  # our leftover gone
    assert pairing.authorized_keys()[0].count(b"# >>> pairing") == 1
    shown = status(pairing)
    assert shown.startswith("tunnel  up since ") and shown.endswith(f", pid {again.process.pid})")
    assert again.stop() == 0, again.text
    assert pairing.authorized_keys() == (ORIGINAL_KEYS, ORIGINAL_MODE)
    assert not record.exists()


# --- cmd_up's control flow, in process: where the refusal happens, nothing after it runs --------


def test_up_refused_never_reaches_deploy_or_destroy(tmp_path, monkeypatch, keys):
    path = tmp_path / ".ssh" / "authorized_keys"
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    ran: list[str] = []
    for name in ("run_checks", "plan", "deploy", "write_invite", "run", "ask_to_destroy", "destroy"):
        monkeypatch.setattr(up, name, lambda *a, _name=name, **k: ran.append(_name))
    first = SingleHook(path)  # the running session's lock, held here
    try:
        args = cli.parser().parse_args(["up", "--guest", keys["guest"].public_line, "--authorized-keys", str(path)])
        with pytest.raises(PreflightError, match=r"^another `pairing host` is already running for .* \(pid \d+, since "):
            cli.COMMANDS["up"](args)
    finally:
        first.release()
    assert ran == []
