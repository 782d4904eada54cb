"""A pairing session under test: the relay from the harness booted on our user
data, the host's private sshd, the stack outputs and the guest's invite, with
helpers to run `pairing host` and guests against it. Fixtures: conftest.py."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .deployment import Deployment, deploy
from .host import PROJECT, Guest, Hook, Tmux, wait_until

# Someone's authorized_keys as found: a comment, CRLF line ends, an options
# line, unicode, and no newline at the end. It must come back byte for byte.
ORIGINAL_KEYS = (
    b"# my laptop\r\n"
    b'from="10.0.0.0/8" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHBhaXJpbmcgZXhhbXBsZSBzc2hkOyByZXBsYWNlLS0t s\xc3\xb8ren@work\r\n'
    b"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHBhaXJpbmcgZXhhbXBsZSBob3N0OyByZXBsYWNlLS0t last-line-no-newline"
)
ORIGINAL_MODE = 0o640


@dataclass
class Pairing:
    deployment: Deployment
    folder: Path
    outputs: Path
    invite: Path
    host_tmux: Tmux
    tunnel: str = "paramiko"  # what `pairing host --tunnel` carries the tunnel with

    @property
    def session(self) -> str:
        return self.deployment.settings.tmux_session

    def hook_argv(self, outputs: Path | None = None) -> list[str]:
        return hook_argv(self.deployment, outputs or self.outputs, self.host_tmux, self.tunnel)

    def hook_env(self) -> dict[str, str]:
        return hook_env(self.folder / "home")

    def start_hook(self, outputs: Path | None = None) -> Hook:
        return Hook(self.folder / "hooks", self.hook_argv(outputs), self.hook_env())

    def guest(self, name: str, key: str | None = None) -> Guest:
        return Guest(self.folder / "guests" / f"{name}-{time.monotonic_ns()}", name,
                     self.deployment.keys[key or name], self.invite)

    def host_screen(self) -> str:
        return self.host_tmux.screen(self.session)

    def host_types(self, text: str) -> None:
        self.host_tmux.type(self.session, text)

    def authorized_keys(self) -> tuple[bytes, int]:
        path = self.deployment.authorized_keys
        return path.read_bytes(), path.stat().st_mode & 0o777


def hook_argv(deployment: Deployment, outputs: Path, tmux: Tmux, tunnel: str) -> list[str]:
    """`pairing host`'s arguments for this deployment: the host's key and sshd, its authorized_keys
    and tmux server, the tunnel carried by `tunnel`."""
    return [
        "--outputs", str(outputs),
        "--identity", str(deployment.keys["host"].path),
        "--target", f"127.0.0.1:{deployment.host_sshd.port}",
        "--authorized-keys", str(deployment.authorized_keys),
        "--tmux-socket", str(tmux.socket),
        "--tunnel", tunnel,
    ]


def hook_env(home: Path) -> dict[str, str]:
    """The hook's environment, HOME the temp one."""
    # Nothing of this machine's user: no agent, no tmux, no XDG folders outside the temp HOME.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SSH_", "TMUX", "XDG_"))}
    env.update(HOME=str(home), SHELL="/bin/sh", PYTHONUNBUFFERED="1")
    return env


def pairing_session(keys, tmp_path_factory, tunnel: str = "paramiko", **deployed):
    """deployed: deploy()'s options (e.g. the kinds of the host keys)."""
    folder = tmp_path_factory.mktemp("pairing")
    deployment = deploy(folder, keys, **deployed)
    deployment.authorized_keys.parent.mkdir(parents=True, mode=0o700)
    deployment.authorized_keys.write_bytes(ORIGINAL_KEYS)
    deployment.authorized_keys.chmod(ORIGINAL_MODE)
    with deployment.relay:
        deployment.host_sshd.start()
        outputs = deployment.outputs_file()
        invite = folder / "invite" / "pairing.conf"
        invite.parent.mkdir()
        result = subprocess.run([sys.executable, "-m", "pairing", "invite", "--outputs", str(outputs), "--out", str(invite)],
                                cwd=PROJECT, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        assert "ssh -F pairing.conf pairing" in result.stdout
        host_tmux = Tmux(folder / "host.tmux")
        try:
            yield Pairing(deployment, folder, outputs, invite, host_tmux, tunnel)
        finally:
            host_tmux.kill_server()
            deployment.host_sshd.stop()


def running_hook(pairing):
    """A running hook that has said "ready"; stopped with SIGTERM after the test,
    which must give authorized_keys back byte for byte."""
    hook = pairing.start_hook()
    hook.wait_for("ready: guests can join now")
    yield hook
    assert hook.stop() == 0, hook.text
    assert pairing.authorized_keys() == (ORIGINAL_KEYS, ORIGINAL_MODE)
    assert "Traceback" not in hook.text, hook.text  # every failure said in a line, none as a crash of a thread


def guest_list():
    started: list[Guest] = []
    yield started
    for guest in started:
        guest.disconnect()


def join(pairing: Pairing, guests: list, name: str, key: str | None = None) -> Guest:
    guest = pairing.guest(name, key)
    guests.append(guest)
    guest.connect()
    # A shell prompt shows up in the guest's terminal: they are in the host's tmux.
    wait_until(lambda: "#" in guest.screen or "GUEST-SSH-EXITED" in guest.screen, 30, f"{name} to land in tmux")
    assert "GUEST-SSH-EXITED" not in guest.screen, guest.screen + guest.log.read_text()
    return guest


