"""`pairing host` refuses to start, with one line naming the problem and the fix,
before it touches anything: each of its preflight checks against the real
relay, the real host sshd and real tools, and how it stops (Ctrl-C, on a
terminal) once running. Fixtures: conftest.py."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading

import pytest

from pairing.sshkeys import parse_public_key

from .harness import (ORIGINAL_KEYS, ORIGINAL_MODE, PROJECT, Hook, fido_private_file, fido_public_line, free_port,
                      locked_copy, wait_until)

PASSPHRASE = "correct horse battery"


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


def test_identity_a_fido_key_file(pairing, tmp_path):
    """A token's key file (no token here, nor needed): another key than hostPublicKey, said so."""
    fido = fido_private_file(tmp_path)
    line = refused(pairing, with_option(pairing.hook_argv(), "--identity", str(fido)))
    shown = parse_public_key(fido_public_line()).fingerprint
    assert f"--identity {fido} is {shown}, but the relay expects" in line


def test_identity_not_a_key(pairing, tmp_path):
    junk = tmp_path / "id_junk"
    junk.write_text("not a key\n")
    line = refused(pairing, with_option(pairing.hook_argv(), "--identity", str(junk)))
    assert f"cannot read the identity {junk}" in line


def test_identity_with_a_passphrase_and_no_terminal(pairing, tmp_path):
    locked = locked_copy(pairing.deployment.keys["host"], tmp_path, PASSPHRASE)
    line = refused(pairing, with_option(pairing.hook_argv(), "--identity", str(locked)))
    assert line == (f"pairing host: {locked} needs a passphrase and there is no terminal to ask it on; add the key to "
                    f"ssh-agent first (ssh-add {locked}) or run pairing in a terminal")


def test_openssh_tunnel_with_a_passphrase_key_not_in_the_agent(pairing, tmp_path):
    locked = locked_copy(pairing.deployment.keys["host"], tmp_path, PASSPHRASE)
    argv = with_option(with_option(pairing.hook_argv(), "--identity", str(locked)), "--tunnel", "openssh")
    line = refused(pairing, argv)
    assert f"--tunnel openssh cannot ask for the passphrase of {locked}; add the key to ssh-agent first (ssh-add {locked})" in line


@pytest.mark.parametrize("tunnel", ["paramiko", "openssh"])
def test_fido_host_key_is_refused(pairing, tunnel):
    """No token here: the refusal comes before any signing, so the public half is all it takes."""
    fido = pairing.deployment.outputs_file("fido.json", hostPublicKey=fido_public_line())
    argv = with_option(with_option(pairing.hook_argv(), "--outputs", str(fido)), "--tunnel", tunnel)
    line = refused(pairing, argv)
    assert line.startswith("pairing host: pairing:hostPublicKey is a FIDO key (sk-ssh-ed25519@openssh.com), which "
                           "`pairing host` cannot use with either --tunnel")
    assert "ssh-keygen -t ed25519" in line


@pytest.fixture()
def agent(tmp_path):
    """A real ssh-agent on a private socket; its environment for the hook."""
    sock = tmp_path / "agent.sock"
    started = subprocess.run(["ssh-agent", "-s", "-a", str(sock)], capture_output=True, text=True, check=True)
    pid = int(re.search(r"SSH_AGENT_PID=(\d+)", started.stdout)[1])
    yield {"SSH_AUTH_SOCK": str(sock)}
    os.kill(pid, signal.SIGTERM)


@pytest.mark.parametrize("tunnel", ["paramiko", "openssh"])
def test_passphrase_key_held_by_ssh_agent_needs_no_prompt(pairing, tmp_path, agent, tunnel):
    locked = locked_copy(pairing.deployment.keys["host"], tmp_path, PASSPHRASE)
    subprocess.run(["ssh-add", "-q", str(pairing.deployment.keys["host"].path)], env={**os.environ, **agent},
                   check=True, capture_output=True)
    argv = with_option(with_option(pairing.hook_argv(), "--identity", str(locked)), "--tunnel", tunnel)
    hook = Hook(pairing.folder / "hooks", argv, {**pairing.hook_env(), **agent})  # stdin: /dev/null, no terminal
    hook.wait_for("ready: guests can join now")
    assert hook.stop() == 0, hook.text
    assert "passphrase" not in hook.text
    assert pairing.authorized_keys() == (ORIGINAL_KEYS, ORIGINAL_MODE)


def test_outputs_missing_a_key(pairing, tmp_path):
    outputs = json.loads(pairing.outputs.read_text())
    del outputs["relayKnownHosts"]
    partial = tmp_path / "outputs.json"
    partial.write_text(json.dumps(outputs))
    line = refused(pairing, with_option(pairing.hook_argv(), "--outputs", str(partial)))
    assert "lack relayKnownHosts; run `pulumi up` to completion first" in line


def test_relay_unreachable(pairing):
    # The relay's address, but a port nothing listens on: as a relay behind a closed security group.
    relay = pairing.deployment
    closed = relay.outputs_file("closed.json", relayPort=9,
                                relayKnownHosts=f"[{relay.relay.address}]:9 {relay.relay_public_key.bare}\n")
    line = refused(pairing, with_option(pairing.hook_argv(), "--outputs", str(closed)))
    assert f"cannot reach the relay at {pairing.deployment.relay.address}:9" in line and "allowedCidrs" in line


# A banner as whoever answers the relay's address may send it: an OSC 52 clipboard write and an OSC 0
# title, in the version field paramiko quotes back in its error ("Incompatible version (...)").
HOSTILE_BANNER = b"SSH-\x1b]52;c;cm0gLXJmIH4K\x07\x1b]0;pwned\x07-x\r\n"


@pytest.fixture()
def hostile_relay():
    """A listener on 127.0.0.1 that answers every connection with HOSTILE_BANNER; its port."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:  # closed: the test is over
                return
            with conn:
                conn.sendall(HOSTILE_BANNER)
                conn.settimeout(5)
                try:
                    conn.recv(4096)  # the client's version line, or its close
                except OSError:
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    server.close()
    thread.join(10)


@pytest.mark.parametrize("tunnel", ["paramiko", "openssh"])
def test_a_relays_banner_reaches_no_terminal_raw(pairing, hostile_relay, tunnel):
    """Finding 5 (issue 19): no ESC byte on stdout or stderr, no library traceback, and the line says what failed."""
    relay = pairing.deployment
    hostile = relay.outputs_file("hostile.json", relayAddress="127.0.0.1", relayPort=hostile_relay,
                                 relayKnownHosts=f"[127.0.0.1]:{hostile_relay} {relay.relay_public_key.bare}\n")
    argv = with_option(with_option(pairing.hook_argv(), "--outputs", str(hostile)), "--tunnel", tunnel)
    result = subprocess.run([sys.executable, "-m", "pairing", "host", *argv], cwd=PROJECT, capture_output=True,
                            timeout=60, stdin=subprocess.DEVNULL, env=pairing.hook_env())
    assert b"\x1b" not in result.stdout + result.stderr, result.stderr
    assert (result.returncode, result.stdout) == (2, b"")
    assert result.stderr.decode().splitlines() == [
        f"pairing host: cannot reach the relay at 127.0.0.1:{hostile_relay} (Incompatible version "
        "(\\x1b]52;c;cm0gLXJmIH4K\\x07\\x1b]0;pwned\\x07 instead of 2.0)); check that pairing:allowedCidrs "
        "includes your address and that the relay is running (see expiresAt)"]
    assert pairing.authorized_keys() == (ORIGINAL_KEYS, ORIGINAL_MODE)



class TurningRelay:
    """A TCP relay on 127.0.0.1 to the real relay that can turn hostile: from turn() on, every connection it
    held is cut and every new one answered with HOSTILE_BANNER, as whoever took over the relay's address."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target, self.hostile, self.held = target, False, []
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:  # closed
                return
            if self.hostile:
                with conn:
                    conn.sendall(HOSTILE_BANNER)
                    conn.settimeout(5)
                    try:
                        conn.recv(4096)
                    except OSError:
                        pass
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                conn.close()
                continue
            upstream.settimeout(None)
            self.held += [conn, upstream]
            for a, b in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        for end in (source, sink):
            try:
                end.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def turn(self) -> None:
        self.hostile = True
        for conn in self.held:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        self.server.close()
        for conn in self.held:
            conn.close()


@pytest.mark.parametrize("tunnel", ["paramiko", "openssh"])
def test_a_relays_banner_in_the_reconnect_lines_is_shown_escaped(pairing, tunnel):
    """Finding 5 (issue 19): tunnel.spec.reason() feeds the reconnect lines; the hook's output holds no ESC byte."""
    relay = pairing.deployment
    turning = TurningRelay((relay.relay.address, relay.relay.port))
    try:
        outputs = relay.outputs_file(f"turning-{tunnel}.json", relayAddress="127.0.0.1", relayPort=turning.port,
                                     relayKnownHosts=f"[127.0.0.1]:{turning.port} {relay.relay_public_key.bare}\n")
        argv = with_option(with_option(pairing.hook_argv(), "--outputs", str(outputs)), "--tunnel", tunnel)
        hook = Hook(pairing.folder / "hooks", argv, pairing.hook_env())
        try:
            hook.wait_for("ready: guests can join now", 60)
            turning.turn()
            hook.wait_for("reconnecting: ", 30)
            if tunnel == "paramiko":  # paramiko's words quote the banner; ssh's (OpenSSH sanitizes it) do not
                hook.wait_for("reconnecting: Incompatible version (\\x1b]52;c;cm0gLXJmIH4K\\x07\\x1b]0;pwned\\x07 "
                              "instead of 2.0)", 30)
        finally:
            assert hook.stop() == 0, hook.text
    finally:
        turning.close()
    output = hook.output.read_bytes()
    assert b"\x1b" not in output and b"Traceback" not in output, output.decode(errors="replace")
    assert pairing.authorized_keys() == (ORIGINAL_KEYS, ORIGINAL_MODE)

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


class Terminal:
    """`pairing host` on a terminal of its own (a real pty), what it shows collected."""

    def __init__(self, argv: list[str], env: dict) -> None:
        self.leader, follower = pty.openpty()
        self.process = subprocess.Popen([sys.executable, "-m", "pairing", "host", *argv], cwd=PROJECT, env=env,
                                        stdin=follower, stdout=follower, stderr=follower, start_new_session=True)
        os.close(follower)
        self.seen = bytearray()

    def read(self) -> bytes:
        while select.select([self.leader], [], [], 0)[0]:
            try:
                self.seen.extend(os.read(self.leader, 65536))
            except OSError:  # the hook has gone and closed the terminal
                break
        return bytes(self.seen)

    def wait_for(self, needle: bytes, timeout: float = 60) -> None:
        wait_until(lambda: needle in self.read() or self.process.poll() is not None, timeout, repr(needle))
        assert needle in self.read(), self.read().decode(errors="replace")

    def type(self, text: str) -> None:
        os.write(self.leader, text.encode())

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.read()
        os.close(self.leader)


@pytest.fixture()
def locked_identity(pairing, tmp_path):
    locked = locked_copy(pairing.deployment.keys["host"], tmp_path, PASSPHRASE)
    return locked, with_option(pairing.hook_argv(), "--identity", str(locked))


def test_passphrase_typed_on_the_terminal(pairing, locked_identity):
    locked, argv = locked_identity
    terminal = Terminal(argv, pairing.hook_env())
    try:
        terminal.wait_for(f"passphrase for {locked}: ".encode())
        terminal.type(PASSPHRASE + "\n")
        terminal.wait_for(b"ready: guests can join now")
        assert PASSPHRASE.encode() not in terminal.seen  # not echoed
        os.killpg(terminal.process.pid, signal.SIGINT)
        assert terminal.process.wait(30) == 0, terminal.read().decode(errors="replace")
    finally:
        terminal.close()
    assert pairing.authorized_keys() == (ORIGINAL_KEYS, ORIGINAL_MODE)


def test_wrong_passphrase_on_the_terminal_is_one_line(pairing, locked_identity):
    locked, argv = locked_identity
    terminal = Terminal(argv, pairing.hook_env())
    try:
        terminal.wait_for(f"passphrase for {locked}: ".encode())
        terminal.type("not it\n")
        assert terminal.process.wait(30) == 2
    finally:
        terminal.close()
    said = terminal.seen.decode(errors="replace").split(f"passphrase for {locked}: ", 1)[1]
    assert said.strip().splitlines() == [
        f"pairing host: wrong passphrase for {locked}; run again and type it, or add the key to ssh-agent (ssh-add {locked})"]
    assert pairing.authorized_keys() == (ORIGINAL_KEYS, ORIGINAL_MODE)
