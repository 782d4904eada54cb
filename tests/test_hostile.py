"""Hostile clients on both hops, each refusal asserted by the server's own answer.

Every request a hostile guest, viewer or holder of the tunnel key could send
is sent raw (tests/harness/ssh_probe.py), with want_reply, to the real relay booted
from our user data, and then to the host's sshd through the real tunnel held
by `pairing host`, exactly the path a guest's ProxyJump takes. The relay's
and the host sshd's logs are checked too where sshd names its refusal.

Then the compromised relay: one that puts another sshd behind the tunnel port
is refused by the guest's pinned config before the guest offers any key.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess

import pytest

from pairing.accounts import GUEST_USER, TUNNEL_USER
from pairing.forced_command import tmux_attach_command
from pairing.hook import GIVE_UP_GRACE
from pairing.sshkeys import parse_public_key

from .harness import (ADMINISTRATIVELY_PROHIBITED, ORIGINAL_KEYS, ORIGINAL_MODE, SESSION_REQUESTS, OpenRefused, Pairing,
                      Probe, Tmux, client_env, join, make_key, wait_until)

PORT = 1337  # the default tunnelPort, which the shared deployment uses
ROLES = {"guest": (GUEST_USER, "guest"), "viewer": (GUEST_USER, "viewer"), "tunnel": (TUNNEL_USER, "host")}


def relay_probe(pairing: Pairing, role: str) -> Probe:
    user, key = ROLES[role]
    deployment = pairing.deployment
    return Probe.connect(deployment.relay.address, deployment.relay.port, user, deployment.keys[key].path,
                         deployment.relay_key.public_line)


@pytest.fixture(scope="module")
def probes(pairing):
    """One authenticated connection per role, kept for all of its requests (a refusal must not end it)."""
    opened = {role: relay_probe(pairing, role) for role in ROLES}
    yield opened
    for probe in opened.values():
        probe.close()


def relay_log_grows(pairing: Pairing, needle: str, before: int) -> None:
    relay = pairing.deployment.relay
    wait_until(lambda: needle in relay.sshd_log()[before:], 5, f"the relay's sshd to log {needle!r}",
               show=lambda: relay.sshd_log()[before:])


# --- hop 1, the relay: no session of any kind for any account -------------------


@pytest.mark.parametrize("request_type", SESSION_REQUESTS)
@pytest.mark.parametrize("role", ["guest", "viewer"])
def test_relay_refuses_every_session_request(pairing, probes, role, request_type):
    """The session channel itself is refused (MaxSessions 0), so no request can follow; the
    forced /usr/sbin/nologin behind it is only the second layer."""
    before = len(pairing.deployment.relay.sshd_log())
    name, fields = SESSION_REQUESTS[request_type]
    with pytest.raises(OpenRefused):
        channel = probes[role].open_session()
        pytest.fail(f"the relay opened a session for {role}; {name} was answered {probes[role].request(channel, name, *fields)}")
    relay_log_grows(pairing, "no more sessions", before)


# What the tunnel key's one session may ask: a command, a shell or a subsystem all run its forced command
# (pairing-guests), which refuses anything but its two verbs; the rest is refused outright. `env LANG` is
# Debian's own AcceptEnv (LANG LC_* ...): harmless to a forced command.
TUNNEL_ANSWERS = {"exec": "forced", "shell": "forced", "subsystem sftp": "forced", "pty-req": "failure",
                  "env LANG": "success", "env LD_PRELOAD": "failure", "auth-agent-req": "failure", "x11-req": "failure"}


@pytest.mark.parametrize("request_type", SESSION_REQUESTS)
def test_the_tunnel_keys_session_runs_its_forced_command_only(pairing, request_type):
    """The tunnel key gets one session (MaxSessions 1) for the relay's guest list and end: whatever it asks, it
    gets pairing-guests, which refuses anything else (tests/test_relay_live.py has the verbs)."""
    name, fields = SESSION_REQUESTS[request_type]
    with relay_probe(pairing, "tunnel") as probe:
        channel = probe.open_session()
        answer = probe.request(channel, name, *fields)
        if TUNNEL_ANSWERS[request_type] != "forced":
            assert answer == TUNNEL_ANSWERS[request_type]
            return
        assert answer == "success"
        channel.settimeout(10)
        out, err = channel.makefile("rb").read(), channel.makefile_stderr("rb").read()
        assert channel.recv_exit_status() == 1
        assert b"PROBE-RAN" not in out and b"uid=" not in out
        refusal = b"pairing relay: refused: this key may only set the relay's guests (guests) or its end (end [SECONDS])\n"
        assert err == (b"" if name == "subsystem" else refusal)  # sshd drops a subsystem's stderr


def effective_sshd_config(pairing: Pairing, user: str) -> dict[str, str]:
    """The relay's own sshd, asked what it enforces for `user` (sshd -T, inside the relay)."""
    address = pairing.deployment.relay.address
    result = pairing.deployment.relay.run(["/usr/sbin/sshd", "-T", "-C", f"user={user},host=scanner,addr={address}"])
    return dict(line.partition(" ")[::2] for line in result.stdout.splitlines())


@pytest.mark.parametrize("user", [GUEST_USER, TUNNEL_USER])
def test_relay_sshd_says_the_same(pairing, user):
    config = effective_sshd_config(pairing, user)
    assert (config["maxsessions"], config["permittty"], config["forcecommand"]) == {
        GUEST_USER: ("0", "no", "/usr/sbin/nologin"), TUNNEL_USER: ("1", "no", "/usr/local/sbin/pairing-guests")}[user]
    assert (config["permittunnel"], config["allowstreamlocalforwarding"], config["x11forwarding"]) == ("no", "no", "no")
    assert config["allowagentforwarding"] == "no"


def forbidden_destinations(pairing: Pairing) -> list[tuple[str, int]]:
    relay = pairing.deployment.relay
    return [
        ("localhost", 22), ("127.0.0.1", 22), ("::1", 22), (relay.address, 22),  # the relay's own sshd
        ("127.0.0.1", PORT), ("::1", PORT), (relay.address, PORT), ("LOCALHOST", PORT),  # the tunnel, by other names
        ("localhost", PORT + 1), ("localhost", 0), ("localhost", 65535),
        ("169.254.169.254", 80), ("fd00:ec2::254", 80), ("169.254.169.123", 123),  # instance metadata, time
        (str(pairing.deployment.relay._net.host_ip), 22),  # the machine on the other side of the relay's link
        ("example.com", 443), ("10.0.0.1", 22),
    ]


@pytest.mark.parametrize("role", ROLES)
def test_relay_opens_nothing_else(pairing, probes, role):
    """direct-tcpip to every other port and address: refused by policy, never tried."""
    refused = []
    destinations = forbidden_destinations(pairing) + ([("localhost", PORT)] if role == "tunnel" else [])
    for host, port in destinations:
        before = len(pairing.deployment.relay.sshd_log())
        with pytest.raises(OpenRefused) as caught:
            probes[role].direct_tcpip(host, port)
        assert caught.value.code == ADMINISTRATIVELY_PROHIBITED, (host, port, caught.value)
        wanted = "refused local port forward" if role == "tunnel" else "but the request was denied"
        relay_log_grows(pairing, f"{host} port {port}", before)
        assert wanted in pairing.deployment.relay.sshd_log()[before:]
        refused.append((host, port))
    assert len(refused) == len(destinations)


@pytest.mark.parametrize("role", ["guest", "viewer"])
def test_the_one_open_a_guest_may_make(pairing, probes, role):
    """localhost:<port> is granted: with nothing listening the relay tries, and says connect failed."""
    with pytest.raises(OpenRefused) as caught:
        probes[role].direct_tcpip("localhost", PORT)
    assert caught.value.code != ADMINISTRATIVELY_PROHIBITED


@pytest.fixture(scope="module")
def relay_socket(pairing):
    """A listening Unix socket on the relay that records any connection it gets."""
    relay = pairing.deployment.relay
    script = (
        "import socket, sys\n"
        "s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen()\n"
        "print('listening', flush=True)\n"
        "c, _ = s.accept(); open(sys.argv[1] + '.connected', 'w').write('yes')\n"
    )
    path = "/run/pairing-probe.sock"
    started = relay.run(["sh", "-c", 'python3 -c "$0" "$1" >/dev/null 2>&1 & echo $!', script, path])
    pid = started.stdout.strip()
    wait_until(lambda: relay.run(["test", "-S", path], check=False).returncode == 0, 10, "the relay's probe socket")
    yield path
    relay.run(["kill", pid], check=False)


@pytest.mark.parametrize("role", ROLES)
def test_relay_refuses_streamlocal_both_ways(pairing, probes, relay_socket, role):
    relay = pairing.deployment.relay
    before = len(relay.sshd_log())
    with pytest.raises(OpenRefused):
        probes[role].direct_streamlocal(relay_socket)
    relay_log_grows(pairing, f"refused streamlocal port forward: originator  port 0, target {relay_socket}", before)
    assert relay.run(["test", "-e", relay_socket + ".connected"], check=False).returncode == 1
    listen = f"/run/pairing-listen-{role}.sock"
    assert probes[role].global_request("streamlocal-forward@openssh.com", listen) == "failure"
    assert relay.run(["test", "-e", listen], check=False).returncode == 1


@pytest.mark.parametrize("mode", [1, 2], ids=["tun-point-to-point", "tun-ethernet"])
@pytest.mark.parametrize("role", ROLES)
def test_relay_refuses_tun(pairing, probes, role, mode):
    with pytest.raises(OpenRefused):
        probes[role].tun(mode)
    assert effective_sshd_config(pairing, ROLES[role][0])["permittunnel"] == "no"


LISTENS = [("localhost", PORT + 1), ("127.0.0.1", PORT), ("", PORT), ("0.0.0.0", PORT), ("::", PORT),
           ("localhost", 0), ("localhost", 22), ("relay", PORT)]


@pytest.mark.parametrize("role", ROLES)
def test_relay_refuses_every_other_listen(pairing, probes, role):
    relay = pairing.deployment.relay
    listens = [(relay.address if host == "relay" else host, port) for host, port in LISTENS]
    if role != "tunnel":
        listens.append(("localhost", PORT))  # only the tunnel key may take the tunnel port
    answers = {f"{host}:{port}": probes[role].global_request("tcpip-forward", host, port) for host, port in listens}
    assert set(answers.values()) == {"failure"}, answers
    listening = relay.run(["ss", "-Hltn"]).stdout
    assert f":{PORT} " not in listening and f":{PORT + 1} " not in listening


def test_the_one_listen_the_tunnel_key_may_make(pairing):
    with relay_probe(pairing, "tunnel") as probe:
        assert probe.global_request("tcpip-forward", "localhost", PORT) == "success"
        wait_until(lambda: f"127.0.0.1:{PORT} " in pairing.deployment.relay.run(["ss", "-Hltn"]).stdout, 5,
                   "the tunnel key's listen")
        assert probe.global_request("cancel-tcpip-forward", "localhost", PORT) == "success"


# --- a compromised relay --------------------------------------------------------------


@pytest.fixture()
def rogue_sshd(pairing, request, tmp_path):
    """What a compromised relay can do: its own sshd, with a key of its own, on the tunnel port."""
    relay = pairing.deployment.relay
    kind = request.param
    key = make_key(tmp_path, f"rogue_{kind}", kind)
    folder = relay.root / "run-rogue"
    folder.mkdir(mode=0o700, exist_ok=True)
    inside = "/run-rogue/host_key"
    (folder / "host_key").unlink(missing_ok=True)
    (folder / "host_key").write_bytes(key.path.read_bytes())
    (folder / "host_key").chmod(0o600)
    (folder / "sshd_config").write_text(
        f"ListenAddress 127.0.0.1:{PORT}\nHostKey {inside}\nPidFile /run-rogue/sshd.pid\nLogLevel VERBOSE\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nPermitRootLogin yes\n"
        "AuthorizedKeysFile /dev/null\n"
    )
    (folder / "sshd.log").unlink(missing_ok=True)
    relay.run(["/usr/sbin/sshd", "-f", "/run-rogue/sshd_config", "-E", "/run-rogue/sshd.log"])
    wait_until(lambda: f"127.0.0.1:{PORT} " in relay.run(["ss", "-Hltn"]).stdout, 10, "the rogue sshd on the tunnel port")
    yield key, folder / "sshd.log"
    relay.run(["sh", "-c", "kill $(cat /run-rogue/sshd.pid)"])
    wait_until(lambda: f":{PORT} " not in relay.run(["ss", "-Hltn"]).stdout, 10, "the rogue sshd to go")


def guest_argv(pairing: Pairing, how: str, tmp_path) -> list[str]:
    key = pairing.deployment.keys["guest"].path
    config = tmp_path / "guest-defaults"
    config.write_text(f"Host *\n    IdentityFile {key}\n    IdentitiesOnly yes\n    BatchMode yes\n\nInclude {pairing.invite}\n")
    if how == "invite":
        return ["ssh", "-F", str(config), "pairing", "echo", "REACHED"]
    command = json.loads(pairing.outputs.read_text())["guestCommand"]
    argv = ["sh", "-c", command.replace("ssh ", f"ssh -F {config} ", 2) + " echo REACHED"]
    assert argv[2].count(f"-F {config}") == 2
    return argv


@pytest.mark.parametrize("how", ["invite", "one-line command"])
@pytest.mark.parametrize("rogue_sshd", ["ed25519", "rsa"], indirect=True)
def test_a_relay_that_swaps_the_host_is_refused(pairing, rogue_sshd, how, tmp_path):
    key, log = rogue_sshd
    result = subprocess.run(guest_argv(pairing, how, tmp_path), capture_output=True, text=True, timeout=60,
                            stdin=subprocess.DEVNULL, env=client_env())
    assert result.returncode == 255, result.stderr
    assert "Host key verification failed." in result.stderr
    assert "REACHED" not in result.stdout
    # The guest never even offered its key to the impostor.
    rogue_log = log.read_text()
    assert "Connection from 127.0.0.1" in rogue_log or "Connection closed by 127.0.0.1" in rogue_log, rogue_log
    assert "publickey" not in rogue_log, rogue_log
    assert f"key sent by the remote host is\n{parse_public_key(key.public_line).fingerprint}." in result.stderr


def test_a_relay_that_outlives_its_ttl_is_left(pairing):
    """A compromised relay can stop its own TTL timer. The hook leaves it anyway once
    expiresAt (and the hook's grace) has passed, and puts authorized_keys back."""
    expires = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=12 - GIVE_UP_GRACE)
    outputs = pairing.deployment.outputs_file("outliving.json", expiresAt=expires.strftime("%Y-%m-%dT%H:%M:%SZ"))
    hook = pairing.start_hook(outputs)
    try:
        hook.wait_for("ready: guests can join now")
        assert hook.process.wait(30) == 1, hook.text
    finally:
        hook.stop()
    assert "error: the relay is still up after its TTL (expiresAt), though it powers itself off by then" in hook.text
    assert pairing.authorized_keys() == (ORIGINAL_KEYS, ORIGINAL_MODE)


# --- the forced command names the session exactly ---------------------------------


@pytest.mark.parametrize("read_only", [False, True], ids=["guest", "viewer"])
def test_forced_command_never_attaches_to_another_session(tmp_path, read_only):
    """With the session gone (the hook recreates it within a second), `tmux attach -t pair`
    would take any session whose name starts with "pair" (tmux matches prefixes)."""
    host, terminal = Tmux(tmp_path / "host.tmux"), Tmux(tmp_path / "terminal.tmux")
    try:
        host.run("-f", "/dev/null", "new-session", "-d", "-s", "pairing-private")
        command = tmux_attach_command("pair", read_only=read_only, socket=str(host.socket))
        terminal.run("-f", "/dev/null", "new-session", "-d", "-s", "t", "-x", "80", "-y", "24",
                     f"sh -c {json.dumps(command)}; echo ATTACH-EXITED $?; sleep 60")
        wait_until(lambda: "ATTACH-EXITED" in terminal.screen("t"), 10, "the forced command to end",
                   show=lambda: terminal.screen("t"))
        assert host.run("list-clients", "-F", "#{client_session}").stdout == ""
        assert "can't find session" in terminal.screen("t") and "ATTACH-EXITED 1" in terminal.screen("t")
    finally:
        terminal.kill_server()
        host.kill_server()


# --- hop 2, the host's sshd through the tunnel: tmux attach and nothing else ----------


@pytest.fixture(scope="module")
def held(pairing):
    """`pairing host` holding the tunnel for this module's hop-2 tests."""
    hook = pairing.start_hook()
    hook.wait_for("ready: guests can join now")
    yield hook
    assert hook.stop() == 0, hook.text
    assert pairing.authorized_keys() == (ORIGINAL_KEYS, ORIGINAL_MODE)


def host_probe(pairing: Pairing, key: str) -> tuple[Probe, Probe]:
    """Through the relay as a guest, then the host's sshd as the host user: a ProxyJump by hand."""
    deployment = pairing.deployment
    jump = Probe.connect(deployment.relay.address, deployment.relay.port, GUEST_USER, deployment.keys[key].path,
                         deployment.relay_key.public_line)
    try:
        channel = jump.direct_tcpip("localhost", PORT)
        host = Probe(channel, deployment.settings.host_user, deployment.keys[key].path,
                     deployment.host_sshd.host_key.public_line)
    except BaseException:
        jump.close()
        raise
    return jump, host


@pytest.fixture(scope="module")
def on_host(pairing, held):
    opened = {role: host_probe(pairing, role) for role in ("guest", "viewer")}
    yield {role: host for role, (_, host) in opened.items()}
    for jump, host in opened.values():
        host.close()
        jump.close()


def host_log_grows(pairing: Pairing, needle: str, before: int) -> None:
    log = pairing.deployment.host_sshd.log
    wait_until(lambda: needle in log.read_text(errors="replace")[before:], 5, f"the host's sshd to log {needle!r}",
               show=lambda: log.read_text(errors="replace")[before:])


@pytest.mark.parametrize("request_type", ["exec", "shell", "subsystem sftp"])
@pytest.mark.parametrize("role", ["guest", "viewer"])
def test_host_runs_only_tmux_attach(pairing, on_host, role, request_type):
    """A command, a shell or a subsystem all become the forced `tmux attach`, which
    without a terminal refuses to start: nothing the guest asked for runs."""
    name, fields = SESSION_REQUESTS[request_type]
    channel = on_host[role].open_session()
    assert on_host[role].request(channel, name, *fields) == "success"  # sshd runs the forced command instead
    output, status = on_host[role].output(channel)
    # sshd sends a subsystem's stderr nowhere; a command's reaches the guest. No SFTP version packet either way.
    expected = b"" if name == "subsystem" else b"open terminal failed: not a terminal\n"
    assert (output, status) == (expected, 1)


@pytest.mark.parametrize("request_type", ["env LANG", "env LD_PRELOAD", "auth-agent-req", "x11-req"])
@pytest.mark.parametrize("role", ["guest", "viewer"])
def test_host_refuses_session_extras(pairing, on_host, role, request_type):
    name, fields = SESSION_REQUESTS[request_type]
    channel = on_host[role].open_session()
    try:
        assert on_host[role].request(channel, name, *fields) == "failure"
    finally:
        channel.close()


@pytest.mark.parametrize("role", ["guest", "viewer"])
def test_host_grants_the_pty_it_needs(pairing, on_host, role):
    """The one request granted besides the forced command: a terminal for tmux."""
    channel = on_host[role].open_session()
    try:
        name, fields = SESSION_REQUESTS["pty-req"]
        assert on_host[role].request(channel, name, *fields) == "success"
    finally:
        channel.close()


@pytest.mark.parametrize("role", ["guest", "viewer"])
def test_host_opens_nothing(pairing, on_host, role):
    host_sshd = pairing.deployment.host_sshd
    destinations = [("localhost", 22), ("127.0.0.1", host_sshd.port), ("localhost", PORT), ("169.254.169.254", 80),
                    (str(pairing.deployment.relay.address), 22)]
    for host, port in destinations:
        before = len(host_sshd.log.read_text(errors="replace"))
        with pytest.raises(OpenRefused) as caught:
            on_host[role].direct_tcpip(host, port)
        assert caught.value.code == ADMINISTRATIVELY_PROHIBITED, (host, port)
        host_log_grows(pairing, f"target {host} port {port}", before)


@pytest.mark.parametrize("role", ["guest", "viewer"])
def test_host_refuses_streamlocal_tun_and_listens(pairing, on_host, role):
    """Not even the host's tmux socket, which would be the whole tmux server."""
    host_sshd, socket_path = pairing.deployment.host_sshd, str(pairing.host_tmux.socket)
    before = len(host_sshd.log.read_text(errors="replace"))
    with pytest.raises(OpenRefused):
        on_host[role].direct_streamlocal(socket_path)
    host_log_grows(pairing, f"refused streamlocal port forward: originator  port 0, target {socket_path}", before)
    with pytest.raises(OpenRefused):
        on_host[role].tun()
    for host, port in (("localhost", 2222), ("0.0.0.0", 2222), ("localhost", 0)):
        assert on_host[role].global_request("tcpip-forward", host, port) == "failure"
    listen = pairing.folder / f"listen-{role}.sock"
    assert on_host[role].global_request("streamlocal-forward@openssh.com", str(listen)) == "failure"
    assert not listen.exists()


def test_strangers_never_reach_the_host(pairing, held):
    deployment = pairing.deployment
    with pytest.raises(Exception, match="Authentication failed"):
        Probe.connect(deployment.relay.address, deployment.relay.port, GUEST_USER, deployment.keys["stranger"].path,
                      deployment.relay_key.public_line)


# --- the viewer --------------------------------------------------------------------


VIEWER_KEYS = [
    # tmux's default bindings that change a session, and a few chords besides.
    ["C-b", "c"], ["C-b", "%"], ["C-b", '"'], ["C-b", "x"], ["C-b", "&"], ["C-b", "z"], ["C-b", "["],
    ["C-b", ":"], ["C-b", "!"], ["C-b", "n"], ["C-b", "o"], ["C-b", "Space"], ["C-b", "C-o"], ["C-b", "$"],
    ["C-b", ","], ["C-b", "D"], ["C-b", "s"], ["C-b", "w"], ["C-b", "t"], ["C-b", "M-1"], ["C-b", "Up"],
    ["C-c"], ["C-d"], ["C-z"], ["C-\\"],
]


def session_state(pairing: Pairing) -> str:
    listed = pairing.host_tmux.run("list-panes", "-s", "-t", f"={pairing.session}", "-F",
                                   "#{window_index}.#{pane_index} #{window_name} #{pane_in_mode} #{window_zoomed_flag} "
                                   "#{pane_dead} #{pane_pid}")
    return listed.stdout


def test_viewer_keys_change_nothing(pairing, held, guests):
    """Every default binding that changes a session, and the usual control keys, from a viewer:
    windows, panes, modes and the screen stay as they were."""
    pairing.host_tmux.run("set-option", "-g", "assume-paste-time", "0")
    pairing.host_types("clear; echo before-viewer-$((2*21))")
    wait_until(lambda: "before-viewer-42" in pairing.host_screen(), 10, "the host's line")
    viewer = join(pairing, guests, "viewer")
    before, screen = session_state(pairing), pairing.host_screen()
    for chord in VIEWER_KEYS:
        viewer.terminal.run("send-keys", "-t", "guest", *chord)
    viewer.type("echo typed-by-viewer")
    # The viewer's detach comes after every key above; once it has taken effect, they all were dealt with.
    viewer.terminal.run("send-keys", "-t", "guest", "C-b", "d")
    wait_until(lambda: "GUEST-SSH-EXITED" in viewer.screen, 10, "the viewer's detach", show=lambda: viewer.screen)
    assert session_state(pairing) == before
    assert pairing.host_screen() == screen
    assert "typed-by-viewer" not in pairing.host_screen()


def test_read_only_does_not_stop_switching_sessions(pairing, held, guests):
    """What `attach -r` does not prevent: tmux lets a read-only client switch to any other
    session on the same server (C-b ( and C-b )). The hook warns as soon as there is one;
    by default the pair session is on pairing's own server (tests/test_tmux_server.py), which holds nothing else."""
    tmux = pairing.host_tmux
    tmux.run("new-session", "-d", "-s", "host-private", "-x", "80", "-y", "24")
    try:
        tmux.type("host-private", "echo HOST-PRIVATE-$((16*16))")
        held.wait_for("warning: viewers can switch to your other tmux sessions on this server (host-private)",
                      timeout=10)
        viewer = join(pairing, guests, "viewer")
        tmux.run("set-option", "-g", "assume-paste-time", "0")
        viewer.terminal.run("send-keys", "-t", "guest", "C-b", ")")
        wait_until(lambda: "HOST-PRIVATE-256" in viewer.screen, 10, "the viewer to be shown the other session",
                   show=lambda: viewer.screen)
    finally:
        tmux.run("kill-session", "-t", "=host-private")
