"""`pairing host` and `pairing invite`, end to end and all real: the relay from
the harness (our user data through cloud-init), the host's private sshd, the
hook as its own process, tmux, and guests running OpenSSH in their own
terminals with nothing but the invite's file. Fixtures: conftest.py."""

from __future__ import annotations

import json
import subprocess
import sys

from .harness import ORIGINAL_KEYS, ORIGINAL_MODE, PROJECT, Guest, Tmux, join, wait_until


def test_viewer_sees_but_cannot_type(pairing, hook, guests):
    viewer = join(pairing, guests, "viewer")
    wait_until(lambda: "joined the session (watching)" in hook.text, 10, "the hook to announce the viewer")
    pairing.host_types("echo shown-to-viewer-$((4*4))")
    wait_until(lambda: "shown-to-viewer-16" in viewer.screen, 10, "the host's output on the viewer's screen")
    # Keys arrive in order: once the viewer's detach key (which read-only
    # clients may use) has taken effect, the line before it was dealt with too.
    # Keys arriving in one packet would count as a paste, where tmux ignores
    # bindings; assume-paste-time 0 has it take each key as typed.
    pairing.host_tmux.run("set-option", "-g", "assume-paste-time", "0")
    viewer.type("echo typed-by-viewer-$((3*3))")
    viewer.terminal.run("send-keys", "-t", "guest", "C-b", "d")
    wait_until(lambda: "GUEST-SSH-EXITED" in viewer.screen, 10, "the viewer's detach", show=lambda: viewer.screen)
    assert "typed-by-viewer" not in pairing.host_screen()
    assert "[detached" in viewer.screen


def test_two_guests_at_once(pairing, hook, guests):
    first = join(pairing, guests, "guest")
    second = join(pairing, guests, "guest2")
    first.type("echo first-$((1+1))")
    wait_until(lambda: "first-2" in second.screen, 10, "the first guest's line on the second guest's screen")
    second.type("echo second-$((2+2))")
    wait_until(lambda: "second-4" in first.screen and "second-4" in pairing.host_screen(), 10, "the second guest's line everywhere")
    wait_until(lambda: "2 typing, 0 watching" in hook.text, 10, "the status line to count both guests")


def test_guest_lands_even_when_the_session_was_killed(pairing, hook, guests):
    pairing.host_tmux.run("kill-session", "-t", pairing.session)
    wait_until(lambda: "was gone; created a new one" in hook.text, 10, "the hook to recreate the session")
    guest = join(pairing, guests, "guest")
    guest.type("echo fresh-session-$((7*7))")
    wait_until(lambda: "fresh-session-49" in pairing.host_screen(), 10, "the guest's line in the new session")


def test_no_tmux_server_beforehand_the_guest_still_lands(pairing, guests):
    pairing.host_tmux.kill_server()  # no server, so no session: the hook makes both
    hook = pairing.start_hook()
    hook.wait_for("ready: guests can join now")
    assert f"created tmux session {pairing.session!r}" in hook.text
    guest = join(pairing, guests, "guest")
    guest.type("echo no-server-before-$((11*11))")
    wait_until(lambda: "no-server-before-121" in pairing.host_screen(), 10, "the guest's line in the new session")
    assert hook.stop() == 0, hook.text
    assert pairing.authorized_keys() == (ORIGINAL_KEYS, ORIGINAL_MODE)


def test_known_hosts_invite_for_older_guests(pairing, hook, guests):
    """`pairing invite --known-hosts`: both hops pinned by a file beside the config
    (OpenSSH before 8.5 has no KnownHostsCommand); a wrong key in it is refused."""
    folder = pairing.folder / "older-guest"
    folder.mkdir(exist_ok=True)
    result = subprocess.run([sys.executable, "-m", "pairing", "invite", "--outputs", str(pairing.outputs),
                             "--out", str(folder / "pairing.conf"), "--known-hosts"],
                            cwd=PROJECT, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    assert "send both to your guest" in result.stdout and "ssh -F pairing.conf pairing" in result.stdout
    config = (folder / "pairing.conf").read_text()
    assert "KnownHostsCommand" not in config and config.count("UserKnownHostsFile pairing.known_hosts") == 2
    relay_key = " ".join(pairing.deployment.relay_key.public_line.split()[:2])
    host_key = " ".join(pairing.deployment.host_sshd.host_key.public_line.split()[:2])
    assert (folder / "pairing.known_hosts").read_text() == f"pairing-relay {relay_key}\npairing-host {host_key}\n"

    def older_guest(name: str):
        guest = Guest(folder / name, "guest", pairing.deployment.keys["guest"], folder / "pairing.conf")
        guests.append(guest)
        guest.connect(cwd=folder)  # where the guest keeps the two files
        return guest

    guest = older_guest("first")
    wait_until(lambda: "#" in guest.screen or "GUEST-SSH-EXITED" in guest.screen, 30, "the guest to land in tmux")
    guest.type("echo known-hosts-file-$((12*12))")
    wait_until(lambda: "known-hosts-file-144" in pairing.host_screen(), 10, "the guest's line on the host")

    stranger = " ".join(pairing.deployment.keys["stranger"].public_line.split()[:2])
    (folder / "pairing.known_hosts").write_text(f"pairing-relay {relay_key}\npairing-host {stranger}\n")
    refused = older_guest("second")
    wait_until(lambda: "GUEST-SSH-EXITED" in refused.screen, 30, "the guest's ssh to refuse the host's key")
    assert "GUEST-SSH-EXITED 255" in refused.screen
    assert "Host key verification failed" in refused.log.read_text()


def test_invite_pins_both_hops(pairing):
    config = pairing.invite.read_text()
    outputs = json.loads(pairing.outputs.read_text())
    body = outputs["guestSshConfig"].split("\n", 1)[1]  # after its one comment line, the invite's header in its place
    assert config.endswith(body) and config.startswith("# pairing: an invitation to join root's tmux session")
    relay_key = " ".join(pairing.deployment.relay_key.public_line.split()[:2])
    host_key = " ".join(pairing.deployment.host_sshd.host_key.public_line.split()[:2])
    assert f"KnownHostsCommand /bin/echo pairing-relay {relay_key}" in config
    assert f"KnownHostsCommand /bin/echo pairing-host {host_key}" in config
    assert "StrictHostKeyChecking yes" in config and "UserKnownHostsFile /dev/null" in config


def test_one_line_guest_command_works(pairing, hook, guests, tmp_path):
    """The guestCommand output, pasted into a shell, with the guest's key as their default identity."""
    command = json.loads(pairing.outputs.read_text())["guestCommand"]
    key = pairing.deployment.keys["guest2"].path
    # Stand-in for the guest's ~/.ssh: their key for every ssh this command starts, the jump's too.
    config = tmp_path / "guest-defaults"
    config.write_text(f"Host *\n    IdentityFile {key}\n    IdentitiesOnly yes\n    BatchMode yes\n")
    shell_line = command.replace("ssh ", f"ssh -F {config} ", 2)
    assert shell_line.count(f"-F {config}") == 2
    terminal = Tmux(tmp_path / "oneliner.tmux")
    try:
        terminal.run("new-session", "-d", "-s", "guest", "-x", "100", "-y", "30",
                     f"env -u SSH_AUTH_SOCK TERM=screen {shell_line}; echo GUEST-SSH-EXITED; sleep 600")
        wait_until(lambda: "#" in terminal.screen("guest") or "EXITED" in terminal.screen("guest"), 30, "the one-liner to land")
        terminal.type("guest", "echo one-liner-$((8*8))")
        wait_until(lambda: "one-liner-64" in pairing.host_screen(), 10, "the one-liner guest's line on the host")
    finally:
        terminal.kill_server()


def test_tampered_relay_key_is_refused(pairing):
    stranger = pairing.deployment.keys["stranger"].public_line.split()
    tampered = pairing.deployment.outputs_file(
        "tampered.json", relayKnownHosts=f"{pairing.deployment.relay.address} {stranger[0]} {stranger[1]}\n"
    )
    hook = pairing.start_hook(tampered)
    hook.process.wait(60)
    assert hook.process.returncode == 2
    assert "This may be an attack" in hook.text and "refusing to connect" in hook.text
    assert pairing.authorized_keys() == (ORIGINAL_KEYS, ORIGINAL_MODE)


def test_second_hook_refuses(pairing, hook):
    second = pairing.start_hook()
    second.process.wait(60)
    assert second.process.returncode == 2
    assert "another `pairing host` is already running" in second.text


def test_guest_keys_work_only_through_the_tunnel(pairing, hook):
    """Straight to the host's sshd from another address, a guest key is refused
    (the hook's `from=`); from the tunnel's side (127.0.0.1) the same key is accepted."""
    deployment = pairing.deployment
    direct = ["ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=no",
              "-o", "UserKnownHostsFile=/dev/null", "-i", str(deployment.keys["guest"].path),
              "-p", str(deployment.host_sshd.port), "root@127.0.0.1", "-T"]
    elsewhere = subprocess.run([*direct[:1], "-b", "127.0.0.2", *direct[1:]], capture_output=True, text=True,
                               timeout=30, stdin=subprocess.DEVNULL)
    assert elsewhere.returncode == 255 and "Permission denied (publickey)" in elsewhere.stderr
    via_loopback = subprocess.run(direct, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    # Accepted: the forced `tmux attach` runs, and wants a terminal (-T gave it none).
    assert "Permission denied" not in via_loopback.stderr
    assert "open terminal failed: not a terminal" in via_loopback.stdout + via_loopback.stderr
