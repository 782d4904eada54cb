"""`pairing direct`: no relay. The hook's own sshd (the system's OpenSSH sshd binary, run as uid 65534 in
its namespace: tests/harness/unprivileged.py) on one veth address; a guest in another network namespace
joins over it with real OpenSSH, in its own terminal (a tmux pane), and types into the host's real tmux.
No system sshd, no relay, nothing of this machine's ~/.ssh or /etc/ssh."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import shutil
import subprocess
from contextlib import contextmanager
from typing import Iterator

import pytest

from pairing.sshkeys import parse_public_key

from .harness import Guest, Hook, Tmux, stop_process, wait_until
from .harness.unprivileged import NOBODY, USER, UnprivilegedHost, ends_with_the_hook, listeners

READY = "ready: guests can join now"
# Outside the relay harness's 10.213.0.0/16 (tests/harness/netns.py), so its random /30s never meet this one.
SUBNET = ipaddress.ip_network("10.214.250.0/30")
HOST_IP, GUEST_IP = str(SUBNET[1]), str(SUBNET[2])


def ip(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *argv], capture_output=True, text=True, check=check)


@contextlib.contextmanager
def veth_lan(subnet: ipaddress.IPv4Network, tag: str = "") -> Iterator[str]:
    """A guest's network namespace, joined to ours by a veth pair on `subnet` (a /30: ours .1, the guest's
    .2); deleted after, by name. Each module its own subnet and tag (a letter), so that modules may run
    side by side and two modules' interfaces never share a name."""
    pid = os.getpid() % 100000
    name, host_if, guest_if = f"pairing-direct{tag}-{os.getpid()}-{subnet[0].packed[3]}", \
        f"pd{tag}h{pid}-{subnet[0].packed[3]}", f"pd{tag}g{pid}-{subnet[0].packed[3]}"
    assert not ip("-4", "-o", "addr", "show", "to", str(subnet)).stdout.strip(), f"{subnet} is in use on this machine"
    ip("netns", "add", name)
    try:
        ip("link", "add", host_if, "type", "veth", "peer", "name", guest_if, "netns", name)
        ip("addr", "add", f"{subnet[1]}/30", "dev", host_if)
        ip("-n", name, "addr", "add", f"{subnet[2]}/30", "dev", guest_if)
        ip("link", "set", "dev", host_if, "up")
        ip("-n", name, "link", "set", "dev", guest_if, "up")
        ip("-n", name, "link", "set", "dev", "lo", "up")
        yield name
    finally:
        ip("link", "del", host_if, check=False)  # deleting the netns alone removes the veth later
        ip("netns", "del", name, check=False)


def lan_on(subnet: ipaddress.IPv4Network, tag: str = ""):
    """A module's `lan` fixture: its guests' namespace on its own subnet (and tag), so modules run side by side."""
    @pytest.fixture(scope="module")
    def lan():
        with veth_lan(subnet, tag) as name:
            yield name
    return lan


lan = lan_on(SUBNET)


class Direct:
    def __init__(self, host: UnprivilegedHost, keys, lan: str, folder) -> None:
        self.host, self.keys, self.lan, self.folder = host, keys, lan, folder
        self.tmux = Tmux(host.home / "tmux.sock")
        self.invite = host.home / "pairing.conf"  # written by uid 65534, in its home

    def argv(self, *extra: str) -> list[str]:
        return ["--guest", self.keys["guest"].public_line, "--viewer", self.keys["viewer"].public_line,
                "--invite", str(self.invite), "--tmux-socket", str(self.tmux.socket), *extra]

    def start(self, *extra: str) -> Hook:
        return Hook(self.host.top / "hooks", self.argv(*extra), self.host.env, prefix=self.host.prefix(), command="direct")

    def guest(self, name: str = "guest") -> Guest:
        """In the other namespace, with a copy of the invite as the host would send it."""
        folder = self.folder / "guests" / name
        folder.mkdir(parents=True, exist_ok=True)
        received = shutil.copyfile(self.invite, folder / "pairing.conf")
        return Guest(folder, name, self.keys[name], received, wrap=("ip", "netns", "exec", self.lan))


@pytest.fixture(scope="module")
def direct(keys, lan, tmp_path_factory):
    host = UnprivilegedHost()
    session = Direct(host, keys, lan, tmp_path_factory.mktemp("direct"))
    try:
        yield session
    finally:
        session.tmux.kill_server()
        host.remove()


def sshd_port(hook: Hook, address: str = HOST_IP) -> int:
    return int(re.search(rf"your own sshd for guests listens on {re.escape(address)}:(\d+) ", hook.text)[1])


def listening(port: int) -> list[str]:
    """The local addresses listening on TCP `port`."""
    return [line.split()[3] for line in listeners(port)]


def land(direct: Direct, name: str = "guest") -> Guest:
    guest = direct.guest(name)
    guest.connect()
    wait_until(lambda: "$" in guest.screen or "GUEST-SSH-EXITED" in guest.screen, 30, f"{name} to land in tmux")
    assert "GUEST-SSH-EXITED" not in guest.screen, guest.screen + guest.log.read_text()
    return guest


def test_a_guest_in_another_namespace_joins_over_the_veth_and_types(direct):
    hook = direct.start("--listen", HOST_IP)
    guest = None
    try:
        hook.wait_for(READY)
        port = sshd_port(hook)
        assert listening(port) == [f"{HOST_IP}:{port}"]  # not 127.0.0.1, not any other address
        guest = land(direct)
        guest.type("echo direct-$((6*7))")
        wait_until(lambda: "direct-42" in direct.tmux.screen("pair"), 10, "the guest's line in the host's pane",
                   show=lambda: direct.tmux.screen("pair"))
        hook.wait_for("guest joined the session (typing)", 10)
        assert "ssh -F pairing.conf pairing" in hook.text and re.search(r"\(SHA256:[A-Za-z0-9+/]{43}\)", hook.text)
        # The same room as pairing host's: the guest by name, and out for the run when kicked.
        who = direct.host.pairing("who")
        assert who.returncode == 0 and re.fullmatch(r"guest +typing +since \S+  idle \d+ s\n", who.stdout), who
        kicked = direct.host.pairing("kick", "guest")
        assert kicked.stdout == "kicked guest (1 connection ended); kept out until pairing allow guest\n", kicked
        wait_until(lambda: "GUEST-SSH-EXITED" in guest.screen, 5, "the kicked guest's ssh to end")
        guest.disconnect()
        guest = direct.guest()  # the same key again
        guest.connect()
        wait_until(lambda: "GUEST-SSH-EXITED" in guest.screen, 15, "the kicked guest's reconnect to be refused")
        assert "removed you from this session" in guest.screen, guest.screen
    finally:
        if guest:
            guest.disconnect()
        assert hook.stop() == 0, hook.text
    assert hook.text.rstrip().endswith("stopped") and "Traceback" not in hook.text, hook.text
    assert not (direct.host.home / ".ssh").exists()


def test_record_writes_what_the_guest_typed_as_the_host_user(direct):
    """`pairing direct --record`: `pairing host`'s recorder (tests/test_recording.py), here made by uid 65534."""
    cast = direct.host.home / "direct.cast"
    hook = direct.start("--listen", HOST_IP, "--record", str(cast))
    guest = None
    try:
        hook.wait_for(READY)
        guest = land(direct)
        guest.type("echo recorded-direct-$((6*7))")
        wait_until(lambda: "recorded-direct-42" in cast.read_text(), 10, "the guest's line in the recording")
        hook.wait_for(f"| recording to {cast}", 10)
    finally:
        if guest:
            guest.disconnect()
        assert hook.stop() == 0, hook.text
    assert f"recording ended: {cast}" in hook.text and "Traceback" not in hook.text, hook.text
    assert (cast.stat().st_uid, oct(cast.stat().st_mode & 0o777)) == (NOBODY, "0o600")
    header, *events = [json.loads(line) for line in cast.read_text().splitlines()]
    assert header["version"] == 2 and "recorded-direct-42" in "".join(e[2] for e in events if e[1] == "o")


def test_the_invite_goes_straight_there_with_the_key_pinned(direct):
    hook = direct.start("--listen", f"{HOST_IP}:2299")
    try:
        hook.wait_for(READY)
        key = direct.host.pairing("sshd-key").stdout.strip()
        seen = subprocess.run(["ssh", "-G", "-F", str(direct.invite), "pairing"], capture_output=True, text=True,
                              check=True, env={**os.environ, "HOME": str(direct.folder)}).stdout.splitlines()
        assert oct(direct.invite.stat().st_mode & 0o777) == "0o644"
        header = [line for line in direct.invite.read_text().splitlines() if line.startswith("# ")]
    finally:
        assert hook.stop() == 0, hook.text
    # The invite explains itself, as the relay's does: whose session, who may type, the key to compare.
    fingerprint = parse_public_key(key).fingerprint
    assert header[0].startswith(f"# pairing: an invitation to join {USER}'s tmux session"), header
    for line in ("# Connect, in the folder holding this file:  ssh -F pairing.conf pairing",
                 "# Who may type: guest. Who may only watch: viewer.",
                 "# It works while your host's `pairing direct` runs; there is no relay.",
                 f"#     host sshd: {fingerprint}",
                 "# To leave: detach with C-b d (Ctrl-b, then d), or close the terminal; the host's session goes on."):
        assert line in header, (line, header)
    assert not [line for line in header if "relay " in line and "SHA256" in line]
    for line in (f"hostname {HOST_IP}", "port 2299", f"user {USER}", "hostkeyalias pairing-host",
                 "stricthostkeychecking true", "userknownhostsfile /dev/null", "globalknownhostsfile /dev/null",
                 f"knownhostscommand /bin/echo pairing-host {key}", "requesttty true", "forwardagent no",
                 "forwardx11 no", "serveraliveinterval 5", "serveralivecountmax 3"):
        assert line in seen, (line, seen)
    assert not [line for line in seen if line.startswith("proxyjump")]


def test_listen_on_every_address_is_refused_in_one_line(direct):
    result = direct.host.pairing("direct", *direct.argv("--listen", "0.0.0.0"))
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == ("pairing direct: --listen 0.0.0.0 is every address of this machine, public ones too; give "
                             "the one guests reach (a LAN or VPN address, e.g. Tailscale's 100.x.y.z), or add "
                             "--listen-all\n")
    assert not direct.invite.exists() or "2299" in direct.invite.read_text()  # not written by this run


def test_an_address_this_machine_lacks_is_refused_in_sshds_words(direct):
    absent = str(SUBNET[3] + 4)  # 10.214.250.7: on no interface
    result = direct.host.pairing("direct", *direct.argv("--listen", f"{absent}:2298"))
    assert result.returncode == 2, result
    log = next((direct.host.home / ".local/state/pairing/sshd").glob("pair-*/sshd.log")).read_text()
    assert re.fullmatch(rf"pairing direct: the host's sshd did not start: Bind to port 2298 on {absent} failed: "
                        r"Cannot assign requested address\. \(log: \S+/sshd\.log\)\n", result.stderr), result.stderr + log
    assert listening(2298) == []


@pytest.mark.parametrize("how", ["SIGINT", "SIGTERM", "SIGKILL"])
def test_the_sshd_and_the_guests_sessions_end_with_it(direct, how):
    hook = direct.start("--listen", HOST_IP)
    guest = None
    try:
        hook.wait_for(READY)
        port = sshd_port(hook)
        guest = land(direct)
        ends_with_the_hook(hook, how, guest, port)
    finally:
        if guest:
            guest.disconnect()
        stop_process(hook.process)


def test_a_guest_added_to_a_running_direct_session_types(direct):
    """`pairing add` on `pairing direct`: the sshd's keys and the room change, the new guest's own invite is
    written (straight to this sshd), and they type, without a restart."""
    hook = direct.start("--listen", HOST_IP)
    guest = None
    try:
        hook.wait_for(READY)
        invite = direct.host.home / "guest2.conf"
        added = direct.host.pairing("add", "--guest", direct.keys["guest2"].public_line, "--invite", str(invite))
        assert added.returncode == 0 and added.stdout.startswith("added guest2 (typing), who can join now\n"), added
        folder = direct.folder / "guests" / "guest2"
        folder.mkdir(parents=True, exist_ok=True)
        received = shutil.copyfile(invite, folder / "pairing.conf")
        guest = Guest(folder, "guest2", direct.keys["guest2"], received, wrap=("ip", "netns", "exec", direct.lan))
        guest.connect()
        wait_until(lambda: "$" in guest.screen or "GUEST-SSH-EXITED" in guest.screen, 30, "guest2 to land in tmux")
        assert "GUEST-SSH-EXITED" not in guest.screen, guest.screen + guest.log.read_text()
        guest.type("echo added-direct-$((6*7))")
        wait_until(lambda: "added-direct-42" in direct.tmux.screen("pair"), 10, "guest2's line in the host's pane",
                   show=lambda: direct.tmux.screen("pair"))
        hook.wait_for("guest2 joined the session (typing)", 10)
        extend = direct.host.pairing("extend", "1h")
        assert (extend.returncode, extend.stderr) == (
            2, "pairing extend: there is no relay to extend: pairing direct ends when you stop it\n"), extend
    finally:
        if guest:
            guest.disconnect()
        assert hook.stop() == 0, hook.text
    assert "Traceback" not in hook.text, hook.text
