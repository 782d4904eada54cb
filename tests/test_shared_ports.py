"""Shared ports (`--share-port`, `pairing share`/`unshare`: pairing/shared_ports.py), all real: the harness's
relay, the hook's own sshd run as uid 65534 (tests/harness/unprivileged.py), real OpenSSH and plink guests.

The host's page is a tiny HTTP server on this machine's loopback. The guests here share that loopback (one
network namespace), so each opens the page as another port on their side (PORT:GUEST_PORT); the default,
the same port, is tested over `pairing direct`'s veth, where the guest has a loopback of its own.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest

from pairing import cli, up
from pairing.invite import write_invite
from pairing.shared_ports import ShareError, SharedPort

from .harness import PROJECT, Guest, free_port, stop_process, wait_until
from .harness.served import fetch, serving
from .test_direct import HOST_IP, direct, land, lan  # noqa: F401 (the fixtures, for the direct test)
from .test_guest_clients import GuestTerminal
from .test_own_sshd import READY, OwnSession, own_session

PAGE = "the-hosts-dev-server-42"
REFUSED = "open failed: administratively prohibited"


@pytest.fixture(scope="module")
def own(keys, tmp_path_factory):
    with own_session(keys, tmp_path_factory.mktemp("shared")) as session:
        yield session


def invite_as_host(own: OwnSession, *flags: str) -> subprocess.CompletedProcess:
    """`pairing invite` as the host's user, beside its running hook (which it asks what is shared)."""
    result = own.host.pairing("invite", "--outputs", str(own.outputs), "--invite", str(own.host.home / "shared.conf"),
                              *flags)
    assert result.returncode == 0, result.stderr
    return result


def guest_of(own: OwnSession, name: str, folder) -> Guest:
    """A guest with a copy of the invite written beside the running hook (its LocalForward lines), as sent."""
    (folder / name).mkdir(parents=True, exist_ok=True)
    received = shutil.copyfile(own.host.home / "shared.conf", folder / name / "pairing.conf")
    return Guest(folder / name, name, own.deployment.keys[name], received)


def lands(guest: Guest) -> Guest:
    guest.connect()
    try:
        wait_until(lambda: "$" in guest.screen or "GUEST-SSH-EXITED" in guest.screen, 30, f"{guest.name} to land")
        assert "GUEST-SSH-EXITED" not in guest.screen, guest.screen + guest.log.read_text()
    except BaseException:
        guest.disconnect()  # its terminal (a tmux server) goes with the failed test
        raise
    return guest


def page_through(port: int, guest: Guest) -> str:
    """What the guest's browser gets at localhost:PORT, once their ssh listens there (bounded)."""
    got: list[str] = []
    wait_until(lambda: got.append(fetch(port, timeout=5)) or PAGE in got[-1] or REFUSED in guest.log.read_text(),
               20, "the page through the guest's LocalForward", show=lambda: f"{got[-1:]} {guest.log.read_text()}")
    return got[-1]


def run_as(guest: Guest, *argv: str, given: str = "") -> subprocess.CompletedProcess:
    """One ssh run of the guest's; .log: what its ssh logged in this run."""
    start = guest.log.stat().st_size if guest.log.exists() else 0
    done = subprocess.run(guest.command(*argv), capture_output=True, text=True, timeout=30, input=given)
    done.log = guest.log.read_bytes()[start:].decode(errors="replace")
    return done


def test_a_typing_guest_opens_the_shared_port_and_nothing_else(own, tmp_path):
    with serving(PAGE) as host_port, serving("not-shared") as other:
        guest_port = free_port()
        hook = own.start_hook("--share-port", f"{host_port}:{guest_port}")
        guest = None
        try:
            hook.wait_for(READY)
            assert f"shared with typing guests (not viewers): the host's port {host_port} (their localhost:{guest_port})" \
                in hook.text, hook.text
            invite = invite_as_host(own)
            conf = (own.host.home / "shared.conf").read_text()
            assert f"    LocalForward {guest_port} localhost:{host_port}\n" in conf, conf
            assert f"#     http://localhost:{guest_port} on your machine opens the host's port {host_port}\n" in conf
            assert "# A port already in use on your machine: your ssh warns (Address already in use)" in conf
            assert f"'-oLocalForward={guest_port} localhost:{host_port}'" in invite.stdout  # the one-line command too
            guest = lands(guest_of(own, "guest", tmp_path))
            assert page_through(guest_port, guest) == PAGE
            # Any other port of the host, or another host: refused in OpenSSH's words; -R too (the same key, with
            # the invite of before, which forwards nothing itself).
            plain = Guest(tmp_path / "plain", "guest", own.deployment.keys["guest"], own.invite)
            for target in (f"localhost:{other}", f"127.0.0.1:{other}", f"10.0.0.1:{host_port}"):
                stdio = run_as(plain, "-W", target, given="GET / HTTP/1.0\r\n\r\n")
                assert "not-shared" not in stdio.stdout and f"channel 0: {REFUSED}: open failed" in stdio.log, target
            remote = run_as(plain, "-o", "ExitOnForwardFailure=yes", "-N", "-R", f"{free_port()}:127.0.0.1:{host_port}")
            assert "Error: remote port forwarding failed for listen port" in remote.log, remote.log
            assert remote.returncode == 255
            who = own.host.pairing("who")
            assert who.stdout.splitlines()[-1] == (f"shared with typing guests (not viewers): the host's port {host_port} "
                                                   f"(their localhost:{guest_port})"), who.stdout
            # unshare: said so, and the guest's next connection no longer opens it.
            gone = own.host.pairing("unshare", str(host_port))
            assert gone.stdout == (f"no longer shared: the host's port {host_port}, from each guest's next connection "
                                   "on (one already open keeps what it had); `pairing invite` writes the guests' "
                                   "invite with it\n"), gone
            guest.disconnect()
            guest = lands(guest_of(own, "guest", tmp_path / "again"))
            assert PAGE not in page_through(guest_port, guest)
            assert REFUSED in guest.log.read_text()
            assert own.host.pairing("who").stdout.count("shared") == 0
        finally:
            if guest:
                guest.disconnect()
            assert hook.stop() == 0, hook.text


@pytest.mark.parametrize("viewers", [False, True])
def test_a_viewer_opens_it_only_with_share_port_viewers(own, tmp_path, viewers):
    with serving(PAGE) as host_port:
        guest_port = free_port()
        hook = own.start_hook("--share-port", f"{host_port}:{guest_port}", *(["--share-port-viewers"] * viewers))
        viewer = None
        try:
            hook.wait_for(READY)
            invite_as_host(own)
            viewer = lands(guest_of(own, "viewer", tmp_path))
            got = page_through(guest_port, viewer)
            assert (got == PAGE) if viewers else (PAGE not in got and REFUSED in viewer.log.read_text()), got
        finally:
            if viewer:
                viewer.disconnect()
            assert hook.stop() == 0, hook.text


def test_share_while_running_and_plink_with_the_printed_l(own, tmp_path):
    """`pairing share` on a running hook; `pairing invite --putty` then prints plink's -L, which gets the page."""
    with serving(PAGE) as host_port:
        guest_port = free_port()
        hook = own.start_hook()
        guest = None
        try:
            hook.wait_for(READY)
            shared = own.host.pairing("share", f"{host_port}:{guest_port}")
            assert shared.stdout.startswith(f"shared: http://localhost:{guest_port} on your machine opens the host's "
                                            f"port {host_port}, from each guest's next connection on"), shared
            home = tmp_path / "putty"
            home.mkdir()
            subprocess.run(["puttygen", str(own.deployment.keys["guest2"].path), "-O", "private", "-o",
                            str(home / "work.ppk")], check=True, capture_output=True, stdin=subprocess.DEVNULL)
            printed = invite_as_host(own, "--putty", "work.ppk").stdout.splitlines()
            line = next(line.strip() for line in printed if line.startswith("    plink "))
            assert f" -L {guest_port}:localhost:{host_port} " in line, line
            assert f"    http://localhost:{guest_port} on your machine opens the host's port {host_port}" in printed
            guest = GuestTerminal(home, line, cwd=home, name="putty")  # disconnected by the finally
            wait_until(lambda: "$" in guest.screen or "GUEST-EXITED" in guest.screen, 30, "plink to land",
                       show=lambda: guest.screen)
            assert "GUEST-EXITED" not in guest.screen, guest.screen
            got: list[str] = []
            wait_until(lambda: got.append(fetch(guest_port, timeout=5)) or got[-1] == PAGE, 20,
                       "the page through plink's -L", show=lambda: f"{got[-1:]} {guest.screen}")
        finally:
            if guest:
                guest.disconnect()
            assert hook.stop() == 0, hook.text


def test_bad_values_are_one_line_each_before_anything_is_touched(own):
    state = own.host.home / ".local" / "state"
    before = sorted(p.relative_to(state) for p in state.rglob("*")) if state.exists() else []
    tunnel = own.deployment.stack_outputs.tunnel_port
    cases = {
        ("0",): "pairing host: --share-port 0: 0 is not a TCP port (the host's); use 1 to 65535, e.g. --share-port 3000",
        ("70000",): "pairing host: --share-port 70000: 70000 is not a TCP port (the host's); use 1 to 65535, e.g. "
                    "--share-port 3000",
        ("3000:0",): "pairing host: --share-port 3000:0: 0 is not a TCP port (the guest's); use 1 to 65535, e.g. "
                     "--share-port 3000",
        ("web",): "pairing host: --share-port web: not PORT or PORT:GUEST_PORT; e.g. --share-port 3000, or "
                  "--share-port 3000:3001 to open it as 3001 on the guest's machine",
        (str(tunnel),): f"pairing host: --share-port {tunnel}: {tunnel} is the tunnel's port (on the relay); share "
                        "another port",
        ("80", "8080"): "pairing host: --share-port 8080: the guest's port 8080 is taken (by the host's port 80); give "
                        "this one another: --share-port 8080:8081",
    }
    for values, line in cases.items():
        hook = own.start_hook(*[word for value in values for word in ("--share-port", value)])
        assert hook.process.wait(30) == 2
        assert hook.text == line + "\n", hook.text
    after = sorted(p.relative_to(state) for p in state.rglob("*")) if state.exists() else []
    assert after == before  # no sshd folder, no control socket, no lock


def test_the_low_port_rule_and_80_80(own):
    """Below 1024 a guest port of PORT+8000 (binding 80 needs root on their side), 80:80 when asked."""
    hook = own.start_hook("--share-port", "80", "--share-port", "443:443")
    try:
        hook.wait_for(READY)
        invite_as_host(own)
        conf = (own.host.home / "shared.conf").read_text()
        assert re.findall(r"LocalForward .*", conf) == ["LocalForward 8080 localhost:80", "LocalForward 443 localhost:443"]
        assert "# Shared by the host with typing guests (not viewers), while you are connected:\n" \
               "#     http://localhost:8080 on your machine opens the host's port 80\n" in conf, conf
    finally:
        assert hook.stop() == 0, hook.text


# --- pairing direct: the guest in a network namespace of its own, so the guest's port is the host's ------------

def fetch_in(netns: str, port: int) -> str:
    """The page at the guest's own localhost:PORT, fetched in its namespace."""
    code = f"from tests.harness.served import fetch; print(fetch({port}, timeout=5), end='')"
    return subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=30, cwd=PROJECT).stdout


def test_direct_shares_the_same_port_and_a_kick_ends_a_forward_without_a_terminal(direct):
    taken = free_port()
    refused = direct.start("--listen", f"{HOST_IP}:{taken}", "--share-port", str(taken))
    assert refused.process.wait(30) == 2
    assert refused.text == (f"pairing direct: --share-port {taken}: {taken} is your sshd's port (--listen); share "
                            "another port\n"), refused.text
    with serving(PAGE) as host_port, serving("later") as later:
        hook = direct.start("--listen", HOST_IP, "--share-port", str(host_port))
        guest = None
        try:
            hook.wait_for(READY)
            assert f"    LocalForward {host_port} localhost:{host_port}\n" in direct.invite.read_text()
            guest = land(direct)
            got: list[str] = []
            wait_until(lambda: got.append(fetch_in(direct.lan, host_port)) or got[-1] == PAGE, 20,
                       "the page at the guest's own localhost", show=lambda: f"{got[-1:]} {guest.log.read_text()}")
            # pairing share: the invite is written again with the new LocalForward.
            shared = direct.host.pairing("share", str(later))
            assert shared.returncode == 0 and "`pairing invite`" not in shared.stdout, shared
            assert f"    LocalForward {later} localhost:{later}\n" in direct.invite.read_text()
            # The key opens a shared port without the gate (ssh -N runs no session, so no tmux client): a kick
            # ends that connection too, and the next one opens nothing.
            plain, alone = direct.guest(), free_port()
            forward = subprocess.Popen(plain.command("-N", "-L", f"{alone}:localhost:{host_port}"),
                                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                wait_until(lambda: got.append(fetch_in(direct.lan, alone)) or got[-1] == PAGE, 20,
                           "the page through ssh -N -L", show=lambda: f"{got[-1:]} {plain.log.read_text()}")
                kicked = direct.host.pairing("kick", "guest")
                assert kicked.returncode == 0, kicked
                wait_until(lambda: forward.poll() is not None, 10, "the kicked guest's ssh -N to end",
                           show=lambda: plain.log.read_text())
            finally:
                stop_process(forward)
            wait_until(lambda: re.search(r"ended \d+ connections? of guest's key to your sshd \(forwards too\)",
                                         hook.text), 5, "the hook to say so", show=lambda: hook.text)
            after = run_as(plain, "-W", f"localhost:{host_port}", given="GET / HTTP/1.0\r\n\r\n")
            assert PAGE not in after.stdout and f"channel 0: {REFUSED}: open failed" in after.log, after.log
        finally:
            if guest:
                guest.disconnect()
            assert hook.stop() == 0, hook.text


def test_an_invite_for_a_viewer_opens_nothing_unless_viewers_may(own, tmp_path):
    """`pairing invite --for NAME` of a viewer: no LocalForward and no header lines, unless --share-port-viewers."""
    outputs, path, web = own.deployment.stack_outputs, tmp_path / "viewer.conf", (SharedPort(3000, 3000),)
    for viewers in (False, True):
        write_invite(outputs, path, for_name="viewer", shared=(web, viewers))
        text = path.read_text()
        assert ("LocalForward 3000 localhost:3000" in text) is viewers, text
        assert ("# Shared by the host with every guest, viewers too, while you are connected:" in text) is viewers
    write_invite(outputs, path, for_name="guest", shared=(web, False))
    assert "    LocalForward 3000 localhost:3000\n" in path.read_text()


@pytest.mark.parametrize(("flags", "line"), [
    (["--share-port", "1337"], "--share-port 1337: 1337 is the tunnel's port (on the relay); share another port"),
    (["--port", "2000", "--share-port", "2000"], "--share-port 2000: 2000 is the tunnel's port (on the relay); share "
                                                 "another port"),
    (["--share-port", "3000", "--share-port", "3000"], "--share-port 3000: the guest's port 3000 is taken (by the "
                                                       "host's port 3000); give this one another: --share-port 3000:3001"),
])
def test_pairing_up_refuses_before_doctor_and_deploy(tmp_path, monkeypatch, keys, flags, line):
    """In process, each step after the flags replaced by a recorder: none of them is reached."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    ran: list[str] = []
    for name in ("run_checks", "plan", "deploy", "write_invite", "run", "ask_to_destroy", "destroy"):
        monkeypatch.setattr(up, name, lambda *a, _name=name, **k: ran.append(_name))
    args = cli.parser().parse_args(["up", "--guest", keys["guest"].public_line, "--host-key",
                                    f"{keys['host'].path}.pub", "--region", "eu-central-1", *flags])
    with pytest.raises(ShareError) as refused:
        cli.COMMANDS["up"](args)
    assert str(refused.value) == line and ran == []
