"""`pairing host` without --target: its own sshd, all real. The relay from the harness, the system's
OpenSSH sshd binary run by the hook as an unprivileged user (uid 65534, a temp home with no ~/.ssh,
an empty /etc/ssh in its mount namespace: tests/harness/unprivileged.py), real tmux and guests.
No system sshd is started for these tests."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from pairing.hook.sshd import KEY_NAME

from .harness import PROJECT, Guest, Hook, Tmux, deploy, stop_process, wait_until
from .harness.unprivileged import NOBODY, USER, UnprivilegedHost, ends_with_the_hook, listeners

READY = "ready: guests can join now"


class OwnSession:
    def __init__(self, host: UnprivilegedHost, deployment, outputs, invite, sshd_key: str) -> None:
        self.host, self.deployment, self.outputs, self.invite, self.sshd_key = host, deployment, outputs, invite, sshd_key
        self.identity = host.give(deployment.keys["host"].path, "host_key")
        self.tmux = Tmux(host.home / "tmux.sock")

    def argv(self, *extra: str) -> list[str]:
        return ["--outputs", str(self.outputs), "--identity", str(self.identity), "--tmux-socket", str(self.tmux.socket),
                *extra]

    def start_hook(self, *extra: str) -> Hook:
        return Hook(self.host.top / "hooks", self.argv(*extra), self.host.env, prefix=self.host.prefix())

    def guest(self, name: str) -> Guest:
        return Guest(self.deployment.folder / "guests" / name, name, self.deployment.keys[name], self.invite)


@contextmanager
def own_session(keys, folder: Path, **settings) -> Iterator[OwnSession]:
    """A relay whose outputs pin the own sshd of uid 65534 (settings: more of the stack's), and its invite."""
    host = UnprivilegedHost()
    try:
        made = host.pairing("sshd-key")
        assert made.returncode == 0, made.stderr
        deployment = deploy(folder, keys, hostUser=USER, hostSshdKey=made.stdout.strip(), **settings)
        with deployment.relay:
            outputs = host.top / "outputs.json"
            outputs.write_text(json.dumps(deployment.outputs()))
            outputs.chmod(0o644)
            invite = folder / "pairing.conf"
            result = subprocess.run([sys.executable, "-m", "pairing", "invite", "--outputs", str(outputs), "--invite",
                                     str(invite)], cwd=PROJECT, capture_output=True, text=True)
            assert result.returncode == 0, result.stderr
            session = OwnSession(host, deployment, outputs, invite, made.stdout.strip())
            try:
                yield session
            finally:
                session.tmux.kill_server()
    finally:
        host.remove()


@pytest.fixture(scope="module")
def own(keys, tmp_path_factory):
    with own_session(keys, tmp_path_factory.mktemp("own")) as session:
        yield session


def sshd_port(hook: Hook) -> int:
    return int(re.search(r"your own sshd for guests listens on 127\.0\.0\.1:(\d+) ", hook.text)[1])


def land(own: OwnSession, name: str = "guest") -> Guest:
    guest = own.guest(name)
    guest.connect()
    # uid 65534's /bin/sh prompt in the host's tmux, seen in the guest's own terminal.
    wait_until(lambda: "$" in guest.screen or "GUEST-SSH-EXITED" in guest.screen, 30, f"{name} to land in tmux")
    assert "GUEST-SSH-EXITED" not in guest.screen, guest.screen + guest.log.read_text()
    return guest


def test_a_guest_lands_and_types_with_no_system_sshd_and_no_dot_ssh(own):
    hook = own.start_hook()
    guest = None
    try:
        hook.wait_for(READY)
        port = sshd_port(hook)
        # Only 127.0.0.1, as the hook's user.
        ours = listeners(port)
        assert [line.split()[3] for line in ours] == [f"127.0.0.1:{port}"], ours
        pid = int(re.search(r"pid=(\d+),", ours[0])[1])
        assert os.stat(f"/proc/{pid}").st_uid == NOBODY
        guest = land(own)
        guest.type("echo own-$((6*7))")
        wait_until(lambda: "own-42" in own.tmux.screen("pair"), 10, "the guest's line in the host's pane",
                   show=lambda: own.tmux.screen("pair"))
        hook.wait_for("joined the session (typing)", 10)
    finally:
        if guest:
            guest.disconnect()
        assert hook.stop() == 0, hook.text
    assert not (own.host.home / ".ssh").exists()  # neither read nor written: it never was there
    assert hook.text.rstrip().endswith("stopped"), hook.text
    assert "Traceback" not in hook.text, hook.text


@pytest.mark.parametrize("how", ["SIGINT", "SIGTERM", "SIGKILL"])
def test_its_sshd_and_the_guests_sessions_end_with_the_hook(own, how):
    """Ctrl-C, SIGTERM, SIGKILL: the sshd (process and port) and each guest's session are gone."""
    hook = own.start_hook()
    guest = None
    try:
        hook.wait_for(READY)
        port = sshd_port(hook)
        guest = land(own)
        ends_with_the_hook(hook, how, guest, port)
    finally:
        if guest:
            guest.disconnect()
        stop_process(hook.process)


def test_a_second_hook_refuses_and_status_sees_the_first(own):
    hook = own.start_hook()
    try:
        hook.wait_for(READY)
        second = own.start_hook()
        assert second.process.wait(30) == 2
        folder = next((own.host.home / ".local/state/pairing/sshd").glob("pair-*"))
        assert second.text.startswith(f"pairing host: another `pairing host` is already running for "
                                      f"{folder}/authorized_keys (pid {hook.process.pid}, since "), second.text
        assert second.text.count("\n") == 1 and "your own sshd" not in second.text
        status = own.host.pairing("status", "--outputs", str(own.outputs), "--tmux-socket", str(own.tmux.socket))
        assert status.returncode == 0, status.stderr
        # the carrier in use: OpenSSH's, the default where ssh is installed
        assert f"(pairing host --tunnel openssh, pid {hook.process.pid})" in status.stdout, status.stdout
        assert oct(folder.stat().st_mode & 0o777) == "0o700"
    finally:
        assert hook.stop() == 0, hook.text
    assert not (folder / "authorized_keys").exists()  # the guests' keys went with the sshd


def test_a_key_guests_would_not_pin_is_refused_in_one_line(own, keys):
    changed = own.host.top / "other-key.json"
    changed.write_text(json.dumps({**own.deployment.outputs(), "hostSshdKey": keys["sshd"].public_line}))
    changed.chmod(0o644)
    hook = Hook(own.host.top / "hooks", ["--outputs", str(changed), *own.argv()[2:]], own.host.env,
                prefix=own.host.prefix())
    assert hook.process.wait(30) == 2
    fingerprint = own.deployment.stack_outputs.host_sshd_key.fingerprint
    assert hook.text.startswith("pairing host: guests will pin SHA256:") and f"own sshd key is {fingerprint}" in hook.text
    assert hook.text.rstrip().endswith("or pass --target HOST:PORT to use your system sshd") and hook.text.count("\n") == 1


def test_guests_landing_as_another_user_is_refused_in_one_line(own):
    changed = own.host.top / "other-user.json"
    changed.write_text(json.dumps({**own.deployment.outputs(), "hostUser": "alice"}))
    changed.chmod(0o644)
    hook = Hook(own.host.top / "hooks", ["--outputs", str(changed), *own.argv()[2:]], own.host.env,
                prefix=own.host.prefix())
    assert hook.process.wait(30) == 2
    assert hook.text == (f"pairing host: guests will log in as 'alice' (pairing:hostUser), but pairing host runs as "
                         f"'{USER}' and its own sshd lets in only you; set pairing:hostUser to {USER}, or pass "
                         "--target HOST:PORT to use your system sshd\n")


def test_sshd_key_prints_the_key_guests_pin_and_keeps_it(own):
    path = own.host.home / ".local/share/pairing/sshd" / KEY_NAME
    before = path.read_bytes()
    again = own.host.pairing("sshd-key")
    assert again.returncode == 0 and again.stdout == own.sshd_key + "\n" and again.stderr == ""
    assert own.sshd_key.startswith("ssh-ed25519 ") and path.read_bytes() == before
    assert oct(path.stat().st_mode & 0o777) == "0o600" and path.stat().st_uid == NOBODY
    assert own.deployment.stack_outputs.host_sshd_key.bare == own.sshd_key


def test_doctor_checks_the_sshd_binary_not_a_listening_one(own):
    result = own.host.pairing("doctor")
    line = next(line for line in result.stdout.splitlines() if " sshd: " in line)
    assert re.fullmatch(rf"ok   sshd: /usr/sbin/sshd \(OpenSSH_[\d.]+\w*\) accepts pairing's config as {USER}; pairing "
                        r"runs it on 127\.0\.0\.1 \(no sshd need be running\)", line), line
    as_root = subprocess.run([sys.executable, "-m", "pairing", "doctor"], cwd=PROJECT, capture_output=True, text=True)
    assert "FAIL sshd: /usr/sbin/sshd (OpenSSH_" in as_root.stdout and "you are root" in as_root.stdout
    told = own.host.pairing("doctor", "--target", "127.0.0.1:9")
    assert "FAIL sshd: nothing answers on 127.0.0.1:9" in told.stdout
