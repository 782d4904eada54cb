"""The relay as EC2 would make it from our user data: real cloud-init in an
isolated root, then its own sshd, probed from outside with the real OpenSSH
client against the pinned host key. Every refusal is asserted by what the
relay's sshd answers."""

from __future__ import annotations

import re
import socket
import subprocess
import time

import pytest

from pairing import relay_documents
from pairing.accounts import GUEST_USER, KEYS_USER, TUNNEL_USER
from pairing.names import roster
from pairing.relay_guests import HOST_NAME
from pairing.sshkeys import PublicKey

from .harness import DHEAT, JUSTIFIED, Deployment, deploy, findings, first_line, ssh_audit

PORT = 1337
DENIED_OPEN = "administratively prohibited"
NO_SESSION = "channel 0: open failed"  # what OpenSSH says when sshd refuses the session channel


@pytest.fixture(scope="module")
def deployment(keys, tmp_path_factory) -> Deployment:
    deployment = deploy(tmp_path_factory.mktemp("relay"), keys, tunnelPort=str(PORT), ttlMinutes="90")
    with deployment.relay:
        deployment.host_sshd.start()
        try:
            yield deployment
        finally:
            deployment.host_sshd.stop()


# --- the state cloud-init left -------------------------------------------------


def passwd(deployment, user: str) -> list[str]:
    return next(line.split(":") for line in deployment.relay.read("/etc/passwd").splitlines() if line.startswith(user + ":"))


@pytest.mark.parametrize("user", [GUEST_USER, TUNNEL_USER])
def test_accounts_and_their_key_files(deployment, user):
    entry = passwd(deployment, user)
    # The tunnel account's shell runs its forced command (sshd runs commands through it), nothing else.
    assert entry[6] == {GUEST_USER: "/usr/sbin/nologin", TUNNEL_USER: "/bin/sh"}[user]
    shadow = next(line for line in deployment.relay.read("/etc/shadow").splitlines() if line.startswith(user + ":"))
    assert shadow.split(":")[1].startswith("!"), "password must be locked"
    uid, gid = int(entry[2]), int(entry[3])
    home = deployment.relay.root / entry[5].lstrip("/")
    ssh_dir, keys_file = home / ".ssh", home / ".ssh" / "authorized_keys"
    if user == GUEST_USER:  # the guests' keys are the live list (pairing-guests), no file of theirs
        assert not keys_file.exists() or keys_file.read_text() == ""
        return
    assert (ssh_dir.stat().st_mode & 0o777, ssh_dir.stat().st_uid, ssh_dir.stat().st_gid) == (0o700, uid, gid)
    assert (keys_file.stat().st_mode & 0o777, keys_file.stat().st_uid) == (0o600, uid)


def test_key_option_lines_byte_for_byte(deployment):
    """What sshd reads for a guest: each listed key with the restrictions the relay adds itself, the same
    bytes as relay_documents.guest_key_line renders; the tunnel's line as rendered."""
    settings, root = deployment.settings, deployment.relay.root
    guests = roster(settings.guest_keys, settings.viewer_keys)
    printed = deployment.relay.run(["runuser", "-u", KEYS_USER, "--", "/usr/local/sbin/pairing-guests", "keys"]).stdout
    expected = [relay_documents.guest_key_line(PublicKey(k.key.kind, k.key.blob, k.name), PORT) for k in guests]
    expected.append(relay_documents.guest_key_line(PublicKey(settings.host_public_key.kind, settings.host_public_key.blob,
                                                             HOST_NAME), PORT))
    assert printed == "".join(line + "\n" for line in expected)
    expected_tunnel = relay_documents.tunnel_key_line(settings.host_public_key, PORT) + "\n"
    assert (root / "home/tunnel/.ssh/authorized_keys").read_text() == expected_tunnel


def test_sshd_dropin_and_pinned_host_key(deployment):
    root = deployment.relay.root
    assert (root / "etc/ssh/sshd_config.d/10-pairing.conf").read_text() == relay_documents.sshd_dropin(deployment.settings)
    assert (root / "etc/ssh/ssh_host_ed25519_key").read_text() == deployment.relay_key.path.read_text()
    assert (root / "etc/ssh/ssh_host_ed25519_key.pub").read_text().split()[:2] == deployment.relay_key.public_line.split()[:2]
    assert sorted(p.name for p in (root / "etc/ssh").glob("ssh_host_*")) == ["ssh_host_ed25519_key", "ssh_host_ed25519_key.pub"]


def test_ttl_is_armed(deployment):
    root = deployment.relay.root
    deadline = int((root / "var/lib/pairing/live/deadline").read_text())
    assert abs(deadline - (time.time() + 90 * 60)) < 300
    latest = int((root / "var/lib/pairing/latest").read_text())  # maxTtlMinutes' default: 24 h
    assert abs(latest - (time.time() + 24 * 3600)) < 300
    assert (root / "etc/systemd/system/timers.target.wants/pairing-ttl.timer").is_symlink()
    assert (root / "usr/local/sbin/pairing-ttl").stat().st_mode & 0o777 == 0o755


def test_no_packages_installed_at_boot(deployment):
    assert "apt-get" not in deployment.relay.cloud_init_log()


# --- guests: -W localhost:<port> and nothing else ------------------------------


@pytest.fixture(scope="module")
def tunnel_held(deployment):
    """The host's key holds -R localhost:1337 -> the host's sshd, with OpenSSH itself."""
    with deployment.openssh_tunnel(PORT) as process:
        yield process


def test_guest_reaches_the_host_sshd_through_the_tunnel(deployment, tunnel_held):
    banner, err = first_line(deployment.ssh_argv(GUEST_USER, "guest", "-W", f"localhost:{PORT}"))
    assert banner.startswith("SSH-2.0-OpenSSH"), err


def test_viewer_key_reaches_it_too(deployment, tunnel_held):
    banner, err = first_line(deployment.ssh_argv(GUEST_USER, "viewer", "-W", f"localhost:{PORT}"))
    assert banner.startswith("SSH-2.0-OpenSSH"), err


def test_the_tunnel_listens_on_loopback_only(deployment, tunnel_held):
    listening = deployment.relay.run(["ss", "-Hltn"]).stdout
    addresses = {line.split()[3] for line in listening.splitlines() if line.split()[3].endswith(f":{PORT}")}
    assert addresses and addresses <= {f"127.0.0.1:{PORT}", f"[::1]:{PORT}"}


@pytest.mark.parametrize("destination", [
    "localhost:22", "localhost:1338", "127.0.0.1:1337", "169.254.169.254:80", "[::1]:1337", "example.com:443",
])
def test_guest_cannot_open_anything_else(deployment, destination):
    result = deployment.ssh(GUEST_USER, "guest", "-W", destination)
    assert result.returncode != 0
    assert DENIED_OPEN in result.stderr, result.stderr


def test_guest_runs_no_command(deployment):
    result = deployment.ssh(GUEST_USER, "guest", command="id; echo RAN")
    assert result.returncode != 0
    assert "RAN" not in result.stdout and "uid=" not in result.stdout
    assert NO_SESSION in result.stderr  # MaxSessions 0; the forced nologin behind it is the second layer


def test_guest_gets_no_shell_and_no_pty(deployment):
    result = deployment.ssh(GUEST_USER, "guest", "-tt")
    assert NO_SESSION in result.stderr  # refused before a pty could even be asked for
    assert result.stdout.strip() == ""
    assert result.returncode != 0


def test_guest_cannot_listen(deployment):
    result = deployment.ssh(GUEST_USER, "guest", "-N", "-o", "ExitOnForwardFailure=yes", "-R", "localhost:1339:127.0.0.1:9")
    assert result.returncode == 255
    assert "remote port forwarding failed for listen port 1339" in result.stderr


def test_guest_cannot_take_the_tunnel_port(deployment):
    """Even with the tunnel down, a guest cannot listen where the host's sshd is expected."""
    result = deployment.ssh(GUEST_USER, "guest", "-N", "-o", "ExitOnForwardFailure=yes", "-R", f"localhost:{PORT}:127.0.0.1:9")
    assert result.returncode == 255
    assert f"remote port forwarding failed for listen port {PORT}" in result.stderr


def test_guest_has_no_agent_x11_or_sftp(deployment):
    verbose = deployment.ssh(GUEST_USER, "guest", "-v", "-o", "ForwardX11=yes", "-o", "ForwardAgent=yes", command="true")
    # The relay's sshd tells the client which key options it granted: a forced
    # command and forwarding to the permitted destination; no agent, X11, pty or rc.
    options = re.search(r"Remote: .*:\d+: key options: (.*)", verbose.stderr)
    assert options, verbose.stderr
    assert set(options.group(1).split()) == {"command", "port-forwarding", "permitopen"}
    sftp = subprocess.run(["sftp", *deployment.ssh_options("guest"), "-b", "-", f"{GUEST_USER}@{deployment.relay.address}"],
                          input="ls\n", capture_output=True, text=True, timeout=30)
    assert sftp.returncode != 0
    assert "channel 0: open failed" in sftp.stderr, sftp.stderr  # the relay refused the session channel itself


# --- the tunnel key: listen on localhost:<port> and nothing else ---------------


@pytest.mark.parametrize("listen", ["localhost:1338", f"*:{PORT}", f"0.0.0.0:{PORT}", f"127.0.0.1:{PORT}"])
def test_tunnel_key_cannot_listen_elsewhere(deployment, listen):
    result = deployment.ssh(TUNNEL_USER, "host", "-N", "-o", "ExitOnForwardFailure=yes", "-R", f"{listen}:127.0.0.1:9")
    assert result.returncode == 255
    assert "remote port forwarding failed for listen port" in result.stderr


@pytest.mark.parametrize("destination", ["localhost:22", f"localhost:{PORT}", "169.254.169.254:80"])
def test_tunnel_key_opens_nothing(deployment, destination):
    result = deployment.ssh(TUNNEL_USER, "host", "-W", destination)
    assert result.returncode != 0
    assert DENIED_OPEN in result.stderr, result.stderr


def test_tunnel_key_runs_no_command(deployment):
    """Its forced command (pairing-guests) answers anything else with a refusal: tests/test_relay_live.py."""
    result = deployment.ssh(TUNNEL_USER, "host", command="id; echo RAN")
    assert "RAN" not in result.stdout and "uid=" not in result.stdout
    assert result.returncode == 1
    assert "pairing relay: refused: this key may only set the relay's guests" in result.stderr


# --- strangers -----------------------------------------------------------------


def test_unknown_key_is_refused(deployment):
    for user in (GUEST_USER, TUNNEL_USER, "root"):
        result = deployment.ssh(user, "stranger", command="true")
        assert result.returncode == 255
        assert "Permission denied (publickey)." in result.stderr


def test_passwords_and_root_are_refused(deployment):
    result = deployment.ssh(GUEST_USER, "guest", "-o", "PubkeyAuthentication=no", "-o", "PreferredAuthentications=password,keyboard-interactive", command="true")
    assert result.returncode == 255 and "Permission denied (publickey)." in result.stderr
    result = deployment.ssh("root", "host", command="true")
    assert result.returncode == 255 and "Permission denied (publickey)." in result.stderr


def test_a_wrong_relay_key_is_refused_by_the_client(deployment, tmp_path):
    forged = tmp_path / "known_hosts"
    forged.write_text(f"{deployment.relay.address} {deployment.keys['stranger'].public_line}\n")
    argv = deployment.ssh_argv(GUEST_USER, "guest", "-W", f"localhost:{PORT}")
    argv[argv.index(f"UserKnownHostsFile={deployment.known_hosts}")] = f"UserKnownHostsFile={forged}"
    result = subprocess.run(argv, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert result.returncode == 255
    assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in result.stderr or "Host key verification failed" in result.stderr


def test_all_four_cloud_init_stages_ran_cleanly(deployment):
    stages = deployment.relay.stage_seconds
    assert list(stages) == ["init-local", "init", "modules-config", "modules-final"]
    assert deployment.relay.cloud_init_warnings() == []


# --- the same document through an older cloud-init and OpenSSH ------------------
# EC2 runs Debian 13 (Debian's own AMI), and so does every other test here. The document
# also holds on Debian 12 (cloud-init 22.4, OpenSSH 9.2, which lacks PerSourcePenalties):
# a stack whose relay keeps an older image, or a relay made by hand, still works.


@pytest.fixture(scope="module")
def bookworm(keys, tmp_path_factory) -> Deployment:
    deployment = deploy(tmp_path_factory.mktemp("bookworm"), keys, suite="bookworm", tunnelPort=str(PORT))
    with deployment.relay:
        yield deployment


def test_older_cloud_init_applies_the_document_cleanly(bookworm, deployment):
    versions = {name: d.relay.run(["cloud-init", "--version"]).stdout.split()[-1] for name, d in
                (("bookworm", bookworm), ("trixie", deployment))}
    print(f"cloud-init versions: {versions}")
    assert versions["trixie"] > versions["bookworm"]
    assert bookworm.relay.cloud_init_warnings() == []
    root = bookworm.relay.root
    assert (root / "home/tunnel/.ssh/authorized_keys").read_text() == (
        relay_documents.tunnel_key_line(bookworm.settings.host_public_key, PORT) + "\n"
    )
    assert (root / "etc/ssh/ssh_host_ed25519_key").read_text() == bookworm.relay_key.path.read_text()
    assert (root / "etc/systemd/system/timers.target.wants/pairing-ttl.timer").is_symlink()


def test_older_relay_enforces_the_same(bookworm):
    result = bookworm.ssh(GUEST_USER, "guest", "-W", "localhost:22")
    assert DENIED_OPEN in result.stderr
    result = bookworm.ssh(GUEST_USER, "guest", "-W", f"localhost:{PORT}")
    assert "connect failed: Connection refused" in result.stderr  # allowed; nothing listens yet
    result = bookworm.ssh(TUNNEL_USER, "host", command="id")
    assert "uid=" not in result.stdout and result.returncode != 0


# --- ssh-audit, the standard external audit (tests/harness/audit.py) ----------------


def test_ssh_audit_passes_the_older_relay(bookworm):
    report = ssh_audit(bookworm.relay.address)
    print(f"ssh-audit, relay (bookworm): {sorted(findings(report))}; notes: {report['additional_notes']}")
    assert findings(report) == JUSTIFIED
    assert report["cves"] == []
    # OpenSSH 9.2 has no rate limit (PerSourcePenalties came in 9.8): ssh-audit still sees
    # 3 sockets reconnect fast. PerSourceMaxStartups caps what one address holds instead
    # (test_one_address_cannot_take_every_pre_auth_slot).
    assert any(note.startswith(DHEAT) for note in report["additional_notes"])


def test_ssh_audit_passes_the_host_sshd(deployment):
    report = ssh_audit("127.0.0.1", deployment.host_sshd.port)
    print(f"ssh-audit, host sshd: {sorted(findings(report))}")
    assert findings(report) == JUSTIFIED
    assert report["cves"] == []


def test_one_address_cannot_take_every_pre_auth_slot(deployment, tunnel_held):
    """PerSourceMaxStartups 4: a fifth silent connection from one address is turned away
    at once, while another address (the relay's own loopback) is still served."""
    config = deployment.relay.run(["sshd", "-T"]).stdout
    assert "persourcemaxstartups 4" in config.splitlines() and "maxstartups 10:30:60" in config.splitlines()
    silent = [socket.create_connection((deployment.relay.address, 22), timeout=5) for _ in range(4)]
    try:
        for sock in silent:
            assert sock.recv(64).startswith(b"SSH-2.0-")
        with socket.create_connection((deployment.relay.address, 22), timeout=5) as fifth:
            assert fifth.recv(64) == b"Not allowed at this time\r\n"  # OpenSSH 10.0 (9.2: "Exceeded MaxStartups")
        banner = deployment.relay.run(["python3", "-c", "import socket; print(socket.create_connection(('127.0.0.1', 22)).recv(8))"])
        assert "SSH-2.0" in banner.stdout
    finally:
        for sock in silent:
            sock.close()
    # Once they are gone the address is served again at once: a guest lands.
    banner, err = first_line(deployment.ssh_argv(GUEST_USER, "guest", "-W", f"localhost:{PORT}"))
    assert banner.startswith("SSH-2.0-OpenSSH"), err


def test_penalties_only_where_sshd_knows_them(bookworm, deployment):
    # Debian 12's 9.2 would refuse the option and not start: the candidate was left aside.
    assert not (bookworm.relay.root / "etc/ssh/sshd_config.d/11-pairing-penalties.conf").exists()
    config = deployment.relay.run(["sshd", "-T"]).stdout.splitlines()
    assert ("persourcepenalties crash:90 authfail:5 noauth:1 grace-exceeded:10 refuseconnection:10 max:120 min:30 "
            "max-sources4:65536 max-sources6:65536 overflow:permissive overflow6:permissive") in config


def test_a_guest_retrying_a_wrong_key_is_not_locked_out(deployment, tunnel_held):
    """Five failed logins from one address (25 s of penalty, over OpenSSH's default 15 s
    threshold) and the right key still lands at once."""
    # From a fresh sshd: the refusals the tests above provoke on purpose count as penalties too.
    deployment.relay.restart_sshd()
    for _ in range(5):
        result = deployment.ssh(GUEST_USER, "stranger", command="true")
        assert "Permission denied (publickey)." in result.stderr, result.stderr
    result = deployment.ssh(GUEST_USER, "guest", "-W", f"localhost:{PORT}")
    assert result.stdout.startswith("SSH-2.0-OpenSSH"), result.stderr  # logged in, through to the host sshd


def test_ssh_audit_passes_the_relay(deployment):
    """Last in the module: its rate test is a flood that the relay (rightly) penalises."""
    report = ssh_audit(deployment.relay.address)
    print(f"ssh-audit, relay (trixie): {sorted(findings(report))}; notes: {report['additional_notes']}")
    assert findings(report) == JUSTIFIED
    assert report["cves"] == []
    # PerSourcePenalties (noauth) blocks the flood after 30 connections: under 20 a second.
    assert not any(note.startswith(DHEAT) for note in report["additional_notes"])
