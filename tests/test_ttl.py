"""The TTL for real: our user data on a fully booted relay (kernel, systemd, cloud-init)
under QEMU with a one-minute TTL; the machine must power itself off, not before the
deadline and not much after it. Times come from the relay's own clock (the serial
console's kernel timestamps), so a slow emulated boot cannot blur them."""

from __future__ import annotations

import re
import subprocess

import pytest

from pairing.relay_documents import TEMPLATES, RelayHostKey, user_data
from pairing.settings import settings_from

from .keys import make_key
from .relay_harness import QemuRelay

TTL_MINUTES = 1
TIMER_PERIOD = int(re.search(r"OnUnitActiveSec=(\d+)s", (TEMPLATES / "systemd" / "pairing-ttl.timer").read_text())[1])
SHUTDOWN_GRACE = 45  # from `systemctl poweroff` to the kernel's last word, emulated without KVM


def stamp(console: str, pattern: str) -> float:
    """The kernel timestamp of the first console line matching pattern."""
    found = re.search(r"^\[\s*(\d+\.\d+)\] " + pattern, console, re.MULTILINE)
    assert found, f"no console line matches {pattern!r}:\n{console[-3000:]}"
    return float(found[1])


@pytest.mark.qemu
def test_relay_powers_itself_off_on_time(keys, tmp_path):
    settings = settings_from({
        "guestKeys": [keys["guest"].public_line], "hostPublicKey": keys["host"].public_line,
        "hostSshdKey": keys["sshd"].public_line, "hostUser": "root", "ttlMinutes": str(TTL_MINUTES),
    })
    relay_key = make_key(tmp_path, "ssh_host_ed25519_key")
    document = user_data(settings, RelayHostKey(relay_key.path.read_text(), relay_key.public_line))
    with QemuRelay(document, host_key=relay_key.public_line) as relay:
        try:
            code = relay.wait_for_poweroff(timeout=TTL_MINUTES * 60 + TIMER_PERIOD + SHUTDOWN_GRACE + 300)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the relay did not power itself off:\n{relay.console_log()[-3000:]}") from None
        console = relay.console_log()
        up = relay.up_seconds
    assert code == 0, f"QEMU exited {code}"
    # The deadline is armed by runcmd in cloud-init's final stage: after it starts, before the timer is enabled.
    final_began = float(re.search(r"running 'modules:final' at .*Up (\d+\.\d+) seconds", console)[1])
    armed_by = stamp(console, r"cloud-init\[\d+\]: Created symlink \S*pairing-ttl\.timer")
    powered_off = stamp(console, r"reboot: Power down")
    print(f"relay answered ssh after {up:.0f} s; deadline armed between {final_began:.1f} s and {armed_by:.1f} s "
          f"after boot; powered off at {powered_off:.1f} s, {powered_off - armed_by - TTL_MINUTES * 60:+.1f} s "
          f"past the latest possible deadline")
    assert powered_off >= final_began + TTL_MINUTES * 60, "powered off before its TTL"
    assert powered_off <= armed_by + TTL_MINUTES * 60 + TIMER_PERIOD + 1 + SHUTDOWN_GRACE, "powered off late"
