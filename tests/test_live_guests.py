"""A running session whose guests and end change without touching the relay's instance, end to end: `pairing add`
(the new guest types within the run), `pairing kick` at the relay (the jump refused in ssh's words) and
`pairing allow`, `pairing extend` (the relay's deadline file moves; `pairing status` shows it). Real OpenSSH
guests, real tmux, `pairing host` against the harness relay (its live list: cloud-init/pairing-guests)."""

from __future__ import annotations

import datetime as dt
import time

from .harness import Guest, join, make_key, wait_until
from .test_session_control import pairing_cli

DEADLINE = "/var/lib/pairing/live/deadline"


def lands_and_types(pairing, guest: Guest, word: str) -> None:
    wait_until(lambda: "#" in guest.screen or "GUEST-SSH-EXITED" in guest.screen, 30, f"{guest.name} to land")
    assert "GUEST-SSH-EXITED" not in guest.screen, guest.screen + guest.log.read_text()
    guest.type(f"echo {word}-$((6*7))")
    wait_until(lambda: f"{word}-42" in pairing.host_screen(), 10, f"{guest.name}'s keys in the host's pane",
               show=pairing.host_screen)


def test_a_guest_added_to_the_running_session_types(pairing, hook, guests, tmp_path):
    dave = make_key(tmp_path / "keys", "dave")  # its comment, dave@test, names him dave
    invite = tmp_path / "invites" / "dave.conf"
    invite.parent.mkdir()
    started = time.monotonic()
    added = pairing_cli(pairing, "add", "--guest", f"{dave.path}.pub", "--invite", str(invite))
    took = time.monotonic() - started
    assert added.returncode == 0 and added.stderr == "", added
    assert added.stdout.startswith("added dave (typing), who can join now\n"), added.stdout
    assert f"wrote {invite} for dave: send it to your guest" in added.stdout
    # How fast is the bench's to judge (bench/README.md, time to pair): here only that it works.
    hook.wait_for("added dave (typing); they can join now", 5)
    assert "dave" in invite.read_text()  # his own invite: his name and role in its header
    guest = Guest(tmp_path / "dave", "dave", dave, invite)
    guests.append(guest)
    guest.connect()
    lands_and_types(pairing, guest, "dave-added")
    print(f"add: `pairing add` answered in {took:.2f} s; dave typed {time.monotonic() - started:.2f} s after it started")
    hook.wait_for("dave joined the session (typing)", 10)
    # Added twice, or a name taken: one line each, nothing changed.
    again = pairing_cli(pairing, "add", "--viewer", f"{dave.path}.pub", "--invite", str(invite))
    assert (again.returncode, again.stderr) == (2, "pairing add: that key is already dave's\n"), again
    taken = pairing_cli(pairing, "add", "--guest", f"guest={tmp_path / 'keys' / 'dave.pub'}")
    assert taken.returncode == 2 and "pairing add: " in taken.stderr, taken


def test_a_kicked_guest_is_refused_by_the_relay_until_allowed(pairing, hook, guests):
    guest2 = join(pairing, guests, "guest2")
    kicked = pairing_cli(pairing, "kick", "guest2")
    assert kicked.returncode == 0, kicked
    assert kicked.stdout == "kicked guest2 (1 connection ended); kept out until pairing allow guest2\n"
    wait_until(lambda: "GUEST-SSH-EXITED" in guest2.screen, 5, "guest2's connection to end")
    again = pairing.guest("guest2")
    guests.append(again)
    again.connect()
    wait_until(lambda: "GUEST-SSH-EXITED" in again.screen, 30, "guest2's jump to be refused", show=lambda: again.screen)
    # Refused by the relay's sshd, at the jump: the key left its live list.
    assert "Permission denied (publickey)" in again.screen and "GUEST-SSH-EXITED 255" in again.screen, again.screen
    assert "guest2" not in pairing.deployment.relay.read("/var/lib/pairing/live/guests")

    allowed = pairing_cli(pairing, "allow", "guest2")
    assert (allowed.returncode, allowed.stdout) == (0, "guest2 is no longer kept out; they may join again\n"), allowed
    back = pairing.guest("guest2")
    guests.append(back)
    back.connect()
    lands_and_types(pairing, back, "guest2-back")


def test_extend_moves_the_relays_end_and_status_shows_it(pairing, hook):
    relay = pairing.deployment.relay
    before = int(relay.read(DEADLINE))
    extended = pairing_cli(pairing, "extend", "2h")
    after = before + 2 * 3600
    when = dt.datetime.fromtimestamp(after, dt.timezone.utc)
    assert (extended.returncode, extended.stderr) == (0, ""), extended
    assert extended.stdout == f"the relay now ends at {when:%Y-%m-%dT%H:%M:%SZ}\n"
    assert int(relay.read(DEADLINE)) == after  # the same relay, its end moved
    status = pairing_cli(pairing, "status", "--outputs", str(pairing.outputs), "--tmux-socket",
                         str(pairing.host_tmux.socket))
    assert f"ends    {when:%Y-%m-%dT%H:%M:%SZ} (" in status.stdout, status.stdout
    # Past the latest end (maxTtlMinutes: 24 h after boot): capped there, and said so.
    latest = int(relay.read("/var/lib/pairing/latest"))
    capped = pairing_cli(pairing, "extend", "48h")
    assert capped.returncode == 0 and int(relay.read(DEADLINE)) == latest, capped
    assert ", its latest (maxTtlMinutes); asked " in capped.stdout
    bad = pairing_cli(pairing, "extend", "soon")
    assert bad.returncode == 2 and "'soon' is not a duration such as 2h, 90m or 1h30m" in bad.stderr
    relay.run(["sh", "-c", f"echo {before} > {DEADLINE}"])  # as it was, for the module's other tests


def test_a_relay_from_before_the_live_list_keeps_its_guests(pairing, guests, tmp_path):
    """A relay made by an older pairing (its tunnel account: no session, nologin) takes no list: `pairing host`
    says so and serves the guests it has; `pairing add` is refused in one line."""
    relay, dropin = pairing.deployment.relay, "/etc/ssh/sshd_config.d/10-pairing.conf"
    original = relay.read(dropin)
    older = original.replace("MaxSessions 1\n    ForceCommand /usr/local/sbin/pairing-guests",
                             "MaxSessions 0\n    ForceCommand /usr/sbin/nologin")
    assert older != original
    relay.run(["sh", "-c", f"cat > {dropin}"], input=older)
    relay.restart_sshd()
    try:
        hook = pairing.start_hook()
        try:
            hook.wait_for("ready: guests can join now")
            assert "takes no guest list (made by an older pairing" in hook.text, hook.text
            join(pairing, guests, "guest")  # on the list it had
            erin = make_key(tmp_path / "keys", "erin")
            added = pairing_cli(pairing, "add", "--guest", f"{erin.path}.pub", "--invite", str(tmp_path / "e.conf"))
            assert added.returncode == 2 and added.stderr.startswith("pairing add: no guest can be added: "), added
            assert "\n" not in added.stderr.rstrip("\n") and not (tmp_path / "e.conf").exists()
        finally:
            assert hook.stop() == 0, hook.text
        assert "Traceback" not in hook.text, hook.text
    finally:
        relay.run(["sh", "-c", f"cat > {dropin}"], input=original)
        relay.restart_sshd()
