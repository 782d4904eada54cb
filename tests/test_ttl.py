"""The TTL for real: our user data on a fully booted relay (kernel, systemd, cloud-init)
under QEMU with a one-minute TTL; the machine must power itself off, not before the
deadline and not much after it. Times come from the relay's own clock (the serial
console's kernel timestamps), so a slow emulated boot cannot blur them."""

from __future__ import annotations

import re
import subprocess

import pytest
import yaml

from pairing.relay_documents import BACKSTOP_UNIT, TEMPLATES, RelayHostKey, user_data
from pairing.settings import settings_from

from .harness import QemuRelay, make_key

TTL_MINUTES = 1
TIMER_PERIOD = int(re.search(r"OnUnitActiveSec=(\d+)s", (TEMPLATES / "systemd" / "pairing-ttl.timer").read_text())[1])
SHUTDOWN_GRACE = 45  # from `systemctl poweroff` to the kernel's last word, emulated without KVM


def stamp(console: str, pattern: str) -> float:
    """The kernel timestamp of the first console line matching pattern."""
    # Debian 13's console interleaves a getty's terminal queries (ESC sequences) before some
    # lines, so the kernel's stamp is the first one on the line, not always its start.
    found = re.search(r"^[^\n]*?\[\s*(\d+\.\d+)\] " + pattern, console, re.MULTILINE)
    assert found, f"no console line matches {pattern!r}:\n{console[-3000:]}"
    return float(found[1])


def boot_until_poweroff(keys, tmp_path, edit=lambda doc: doc) -> str:
    """Boot our user data (after `edit`) under QEMU; the console once it powered itself off."""
    settings = settings_from({
        "guestKeys": [keys["guest"].public_line], "hostPublicKey": keys["host"].public_line,
        "hostSshdKey": keys["sshd"].public_line, "hostUser": "root", "ttlMinutes": str(TTL_MINUTES),
    })
    relay_key = make_key(tmp_path, "ssh_host_ed25519_key")
    document = edit(user_data(settings, RelayHostKey(relay_key.path.read_text(), relay_key.public_line)))
    with QemuRelay(document, host_key=relay_key.public_line) as relay:
        try:
            code = relay.wait_for_poweroff(timeout=TTL_MINUTES * 60 + TIMER_PERIOD + SHUTDOWN_GRACE + 300)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the relay did not power itself off:\n{relay.console_log()[-3000:]}") from None
        console = relay.console_log()
        print(f"relay answered ssh after {relay.up_seconds:.0f} s")
    assert code == 0, f"QEMU exited {code}"
    return console


def stage_began(console: str, stage: str) -> float:
    return float(re.search(rf"running '{stage}' at .*Up (\d+\.\d+) seconds", console)[1])


@pytest.mark.qemu
def test_relay_powers_itself_off_on_time(keys, tmp_path):
    console = boot_until_poweroff(keys, tmp_path)
    # Two clocks run: bootcmd's backstop from the init stage, and the deadline armed by
    # runcmd in the final stage, before the timer is enabled. The earlier one wins.
    init_began = stage_began(console, "init")
    armed_by = stamp(console, r"cloud-init\[\d+\]: Created symlink \S*pairing-ttl\.timer")
    powered_off = stamp(console, r"reboot: Power down")
    print(f"armed between {init_began:.1f} s and {armed_by:.1f} s after boot; powered off at {powered_off:.1f} s, "
          f"{powered_off - armed_by - TTL_MINUTES * 60:+.1f} s past the latest possible deadline")
    assert powered_off >= init_began + TTL_MINUTES * 60, "powered off before its TTL"
    assert powered_off <= armed_by + TTL_MINUTES * 60 + TIMER_PERIOD + 1 + SHUTDOWN_GRACE, "powered off late"


@pytest.mark.qemu
def test_relay_without_runcmd_still_powers_off(keys, tmp_path):
    """As if cloud-init died before its final stage: no deadline armed, no timer enabled."""
    def without_runcmd(document: str) -> str:
        doc = yaml.safe_load(document)
        del doc["runcmd"]
        return "#cloud-config\n" + yaml.safe_dump(doc)

    console = boot_until_poweroff(keys, tmp_path, without_runcmd)
    assert "pairing-ttl.timer" not in console  # nothing but the backstop
    init_began = stage_began(console, "init")
    backstop = stamp(console, rf".*Running timer as unit: {BACKSTOP_UNIT}\.timer")
    powered_off = stamp(console, r"reboot: Power down")
    print(f"backstop started at {backstop:.1f} s after boot; powered off at {powered_off:.1f} s, "
          f"{powered_off - backstop - TTL_MINUTES * 60:+.1f} s past it + TTL")
    assert powered_off >= init_began + TTL_MINUTES * 60, "powered off before its TTL"
    assert powered_off <= backstop + TTL_MINUTES * 60 + 1 + SHUTDOWN_GRACE, "powered off late"
