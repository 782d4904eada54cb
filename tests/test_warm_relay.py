"""A living relay reused (pairing/warm.py): `pairing up` on a stack whose last relay is recorded, alive, answers
with its pinned key and has the same settings makes no Pulumi call (there is no Pulumi CLI on PATH here), moves
the relay's end to the asked TTL, sets the guests live, reaches "ready", and a guest types. End to end with the
harness relay as that recorded relay."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from pairing import backend as backends
from pairing import warm

from .harness import Guest, Hook, wait_until

PATH_WITHOUT_PULUMI = "/usr/sbin:/usr/bin:/sbin:/bin"
REGION = "eu-central-1"
STACK = "pair-warm"


@pytest.fixture
def recorded(pairing, monkeypatch, tmp_path):
    """What the last `pairing up` recorded after deploying: this relay, made with the deployment's settings."""
    env = {**pairing.hook_env(), "PATH": PATH_WITHOUT_PULUMI}
    assert shutil.which("pulumi", path=env["PATH"]) is None
    monkeypatch.setenv("HOME", env["HOME"])
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    url = f"file://{tmp_path / 'state'}"
    warm.record_relay(STACK, backends.choose(url).describe(), pairing.deployment.settings, REGION,
                      pairing.deployment.outputs())
    yield env, url
    warm.forget_relay(STACK, backends.choose(url).describe())


def up_argv(pairing, url: str, invite: Path, *extra: str) -> list[str]:
    deployment, keys = pairing.deployment, pairing.deployment.keys
    return [
        "--guest", f"{keys['guest'].path}.pub", "--guest", f"{keys['guest2'].path}.pub",
        "--viewer", f"{keys['viewer'].path}.pub",
        "--host-key", f"{keys['host'].path}.pub", "--identity", str(keys["host"].path),
        "--target", f"127.0.0.1:{deployment.host_sshd.port}", "--sshd-key", deployment.host_sshd.host_key.public_line,
        "--authorized-keys", str(deployment.authorized_keys), "--tmux-socket", str(pairing.host_tmux.socket),
        "--region", REGION, "--stack", STACK, "--backend", url, "--invite", str(invite), "--keep", *extra,
    ]


def test_pairing_up_reuses_a_living_relay_without_pulumi(pairing, recorded, guests, tmp_path):
    env, url = recorded
    relay = pairing.deployment.relay
    before = int(relay.read("/var/lib/pairing/live/deadline"))
    invite = tmp_path / "warm.conf"
    started = time.monotonic()
    up = Hook(tmp_path / "up", up_argv(pairing, url, invite), env, command="up")
    try:
        up.wait_for("ready: guests can join now", 30)
        ready = time.monotonic() - started
        assert "reusing the living relay " in up.text and ": no deploy" in up.text, up.text
        assert "stack 'pair-warm' in" not in up.text  # deploy()'s first line: never reached
        # The relay armed 240 min from its boot; asked 240 min from now: its end moved, no later than its latest.
        moved = int(relay.read("/var/lib/pairing/live/deadline"))
        assert moved > before and abs(moved - (time.time() + 240 * 60)) < 120
        guest = Guest(tmp_path / "guest", "guest", pairing.deployment.keys["guest"], invite)
        guests.append(guest)
        guest.connect()
        wait_until(lambda: "#" in guest.screen or "GUEST-SSH-EXITED" in guest.screen, 30, "the guest to land")
        assert "GUEST-SSH-EXITED" not in guest.screen, guest.screen
        guest.type("echo warm-$((6*7))")
        wait_until(lambda: "warm-42" in pairing.host_screen(), 10, "the guest's keys in the host's pane",
                   show=pairing.host_screen)
        print(f"warm: `pairing up` said ready {ready:.2f} s after it started; the guest typed "
              f"{time.monotonic() - started:.2f} s after")
    finally:
        code = up.stop()
    assert code == 0, up.text
    assert "the relay keeps running until its TTL" in up.text
    assert "Traceback" not in up.text, up.text


def test_changed_relay_settings_are_not_reused(pairing, recorded, tmp_path):
    """Another tunnel port would need another relay: `pairing up` says so and deploys, which here (no Pulumi
    CLI) stops at the doctor's check, having touched nothing."""
    env, url = recorded
    up = Hook(tmp_path / "up", up_argv(pairing, url, tmp_path / "warm.conf", "--port", "1400"), env, command="up")
    wait_until(lambda: up.process.poll() is not None, 60, "pairing up to stop")
    assert up.process.returncode == 2, up.text
    assert "the relay's settings changed since it was made; deploying" in up.text
    assert "required check failed (pulumi)" in up.text or "required checks failed (pulumi" in up.text, up.text
    assert not (tmp_path / "warm.conf").exists()
