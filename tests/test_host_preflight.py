"""`pairing host` refuses to start, with one line naming the problem and the fix,
before it touches anything: each of its preflight checks against the real
relay, the real host sshd and real tools, and how it stops (Ctrl-C, on a
terminal) once running. Fixtures: conftest.py."""

from __future__ import annotations

import json
import os
import pty
import select
import shutil
import signal
import subprocess
import sys

from .host_side import PROJECT, free_port, wait_until
from .pairing_env import ORIGINAL_KEYS, ORIGINAL_MODE


def tools_only(folder, *names: str) -> str:
    """A PATH holding just these programs."""
    folder.mkdir(exist_ok=True)
    for name in names:
        (folder / name).symlink_to(shutil.which(name))
    return str(folder)


def refused(pairing, argv: list[str], env: dict | None = None) -> str:
    result = subprocess.run([sys.executable, "-m", "pairing", "host", *argv], cwd=PROJECT, capture_output=True,
                            text=True, timeout=60, stdin=subprocess.DEVNULL, env={**pairing.hook_env(), **(env or {})})
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout == ""  # nothing started, nothing said as if it had
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert pairing.authorized_keys() == (ORIGINAL_KEYS, ORIGINAL_MODE)
    return lines[0]


def with_option(argv: list[str], option: str, value: str) -> list[str]:
    at = argv.index(option)
    return [*argv[:at + 1], value, *argv[at + 2:]]


def test_no_sshd_on_the_target(pairing):
    port = free_port()
    line = refused(pairing, with_option(pairing.hook_argv(), "--target", f"127.0.0.1:{port}"))
    assert f"no sshd answers on 127.0.0.1:{port} (Connection refused)" in line and "--target" in line


def test_tmux_missing(pairing, tmp_path):
    line = refused(pairing, pairing.hook_argv(), {"PATH": tools_only(tmp_path / "bin", "ssh")})
    assert "tmux is not installed; install it" in line


def test_openssh_tunnel_without_ssh(pairing, tmp_path):
    argv = with_option(pairing.hook_argv(), "--tunnel", "openssh")
    line = refused(pairing, argv, {"PATH": tools_only(tmp_path / "bin", "tmux")})
    assert "--tunnel openssh needs OpenSSH's ssh; install it" in line


def test_identity_missing(pairing, tmp_path):
    line = refused(pairing, with_option(pairing.hook_argv(), "--identity", str(tmp_path / "nothing")))
    assert f"--identity {tmp_path / 'nothing'}: no such file" in line


def test_identity_of_another_key(pairing):
    stranger = pairing.deployment.keys["stranger"]
    line = refused(pairing, with_option(pairing.hook_argv(), "--identity", str(stranger.path)))
    assert "but the relay expects" in line and "pass the matching private key" in line


def test_identity_not_a_key(pairing, tmp_path):
    junk = tmp_path / "id_junk"
    junk.write_text("not a key\n")
    line = refused(pairing, with_option(pairing.hook_argv(), "--identity", str(junk)))
    assert f"cannot read the identity {junk}" in line


def test_outputs_missing_a_key(pairing, tmp_path):
    outputs = json.loads(pairing.outputs.read_text())
    del outputs["relayKnownHosts"]
    partial = tmp_path / "outputs.json"
    partial.write_text(json.dumps(outputs))
    line = refused(pairing, with_option(pairing.hook_argv(), "--outputs", str(partial)))
    assert "lack relayKnownHosts; run `pulumi up` to completion first" in line


def test_relay_unreachable(pairing):
    # The relay's address, but a port nothing listens on: as a relay behind a closed security group.
    closed = pairing.deployment.outputs_file("closed.json", relayPort=9)
    line = refused(pairing, with_option(pairing.hook_argv(), "--outputs", str(closed)))
    assert f"cannot reach the relay at {pairing.deployment.relay.address}:9" in line and "allowedCidrs" in line


# --- on a terminal ---------------------------------------------------------------------


def test_on_a_terminal_a_live_status_line_and_ctrl_c(pairing):
    """The status line is redrawn in place; Ctrl-C stops the hook and gives back authorized_keys."""
    leader, follower = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "pairing", "host", *pairing.hook_argv()], cwd=PROJECT,
                               env=pairing.hook_env(), stdin=follower, stdout=follower, stderr=follower,
                               start_new_session=True)
    os.close(follower)
    seen = bytearray()

    def read() -> bytes:
        while select.select([leader], [], [], 0)[0]:
            try:
                seen.extend(os.read(leader, 65536))
            except OSError:  # the hook has gone and closed the terminal
                break
        return bytes(seen)

    try:
        wait_until(lambda: b"\r\x1b[Ktunnel up since" in read(), 60, "the status line, drawn in place")
        assert b"ready: guests can join now" in seen
        # Ctrl-C as typed: the terminal sends SIGINT to the foreground process group.
        os.killpg(process.pid, signal.SIGINT)
        assert process.wait(30) == 0, read().decode(errors="replace")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        read()
        os.close(leader)
    assert b"stopped; guest keys removed from" in seen
    assert pairing.authorized_keys() == (ORIGINAL_KEYS, ORIGINAL_MODE)
