"""The host's own sshd (pairing/hook/sshd.py), all real: the system's sshd run as uid 65534 (no root),
the real ssh client, ssh-agent and ssh-audit.

The sshd runs under a small parent (the hook's stand-in) in a private mount namespace that gives
uid 65534 an account with a home in a temp folder and a shell (a private /etc/passwd), and a
/dev/pts that gives new terminals the tty group, as systemd mounts it on a real host (this
machine's has no gid=5). Nothing of the machine's own ~/.ssh, /etc/ssh or /etc/passwd is touched.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

from pairing.forced_command import guest_line
from pairing.hook.sshd import accepted_fingerprints, host_key, key_path, render_config
from pairing.shared_ports import SharedPort
from pairing.sshkeys import parse_public_key, public_half

from .harness import JUSTIFIED, findings, free_port, ssh_audit, stop_process, wait_until
from .harness.installed import installed
from .harness.served import serving
from .harness.unprivileged import alive, descendants

NOBODY = 65534
USER = "pairtest"  # uid 65534's name in the private passwd (nss-systemd calls "nobody" locked)
COMMAND = "tty; echo agent=${SSH_AUTH_SOCK:-none}; echo forced; read line"
# uid 65534 may reach neither this checkout nor the tests' venv (a clone in /root): pairing as installed
# from its wheel, in a venv every uid may read (tests/harness/installed.py), runs the parent.
SSHD = shutil.which("sshd", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")

# The hook's stand-in: starts the sshd, says its port, stops it on "stop" or SIGTERM (as the hook does).
PARENT = """
import signal, sys
from pathlib import Path
from pairing.hook.sshd import PrivateSshd, SshdError, host_key, key_path
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
data, folder, port = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]) or None
try:
    host_key(data)
    with PrivateSshd(folder, key_path(data), sys.argv[4:], port=port) as sshd:
        print("port", sshd.port, flush=True)
        sys.stdin.readline()
except SshdError as exc:
    print("error", exc, flush=True)
    sys.exit(2)
print("stopped", flush=True)
"""


class Host:
    """uid 65534's temp home, and the parent running its sshd there."""

    def __init__(self, top: Path) -> None:
        self.top, self.home = top, top / "home"
        self.data, self.folder = self.home / ".local/share/pairing", self.home / ".run/pairing/sshd"
        self.home.mkdir(mode=0o700)
        for path in (top, self.home):
            os.chown(path, NOBODY, NOBODY)
        self.passwd = top / "passwd"
        entries = [line for line in Path("/etc/passwd").read_text().splitlines() if line.split(":")[2] != str(NOBODY)]
        self.passwd.write_text("\n".join(entries + [f"{USER}:x:{NOBODY}:{NOBODY}::{self.home}:/bin/sh"]) + "\n")
        self.passwd.chmod(0o644)
        self.out = top / "parent.out"
        self.parent: subprocess.Popen | None = None
        self.port = 0

    def argv(self, *argv: str, devpts: str = "gid=5,mode=620", hide_sshd: bool = False) -> list[str]:
        """`devpts`: the options of the /dev/pts the sshd sees (a real host's by default)."""
        mounts = ['mount --bind "$0" /etc/passwd',
                  f"mount -t devpts -o newinstance,{devpts},ptmxmode=666 devpts /dev/pts",
                  "mount --bind /dev/pts/ptmx /dev/ptmx"]
        if hide_sshd:
            mounts.append(f"mount --bind /dev/null {SSHD}")
        script = " && ".join(mounts) + f' && exec setpriv --reuid={NOBODY} --regid={NOBODY} --clear-groups "$@"'
        return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, str(self.passwd), *argv]

    @property
    def env(self) -> dict[str, str]:
        return {"HOME": str(self.home), "PATH": os.environ["PATH"], "PYTHONDONTWRITEBYTECODE": "1"}

    def run(self, *argv: str, **options) -> subprocess.CompletedProcess:
        return subprocess.run(self.argv(*argv), env=self.env, cwd=self.top, capture_output=True, text=True,
                              timeout=60, stdin=subprocess.DEVNULL)

    def start(self, lines: list[str], port: int = 0, folder: Path | None = None, **mounts) -> str:
        """Start the parent; its first line ("port N" or "error ...")."""
        self.folder = folder or self.folder
        with self.out.open("w") as out:
            self.parent = subprocess.Popen(
                self.argv(str(installed().python), "-c", PARENT, str(self.data), str(self.folder), str(port), *lines, **mounts),
                env=self.env, cwd=self.top, stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT, text=True)
        said = wait_until(lambda: self._first_line(),
                          30, "the parent to start the sshd", show=self.out.read_text)
        if said.startswith("port "):
            self.port = int(said.split()[1])
        return said

    def _first_line(self) -> str:
        """The parent's first line; all it said if that was a traceback."""
        text = self.out.read_text()
        if text.startswith("Traceback") and self.parent.poll() is not None:
            return text
        return text.partition("\n")[0] if "\n" in text else ""

    def stop(self) -> None:
        if self.parent is not None:
            stop_process(self.parent)
            self.parent = None

    @property
    def log(self) -> str:
        return (self.folder / "sshd.log").read_text()

    def known_hosts(self) -> Path:
        path = self.top / "known_hosts"
        path.write_text(f"[127.0.0.1]:{self.port} {public_half(key_path(self.data).read_text()).bare}\n")
        return path

    def ssh_argv(self, key: Path, *extra: str) -> list[str]:
        return ["ssh", "-F", "/dev/null", "-i", str(key), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
                "-o", f"UserKnownHostsFile={self.known_hosts()}", "-o", "GlobalKnownHostsFile=/dev/null",
                "-o", "StrictHostKeyChecking=yes", "-o", "ConnectTimeout=10", "-p", str(self.port), *extra,
                f"{USER}@127.0.0.1", "echo", "not-the-forced-command"]

    def ssh(self, key: Path, *extra: str, env: dict | None = None) -> subprocess.CompletedProcess:
        """Logged in, the session ends at the newline given it (the forced command's `read`)."""
        return subprocess.run(self.ssh_argv(key, *extra), capture_output=True, text=True, timeout=30,
                              input="\n", env=env or _without_agent())


def _without_agent() -> dict[str, str]:
    return {name: value for name, value in os.environ.items() if name != "SSH_AUTH_SOCK"}


@pytest.fixture()
def host():
    top = Path(tempfile.mkdtemp(prefix="pairing-sshd-"))  # outside root's 0700 pytest folder: 65534 reaches it
    top.chmod(0o755)
    made = Host(top)
    yield made
    made.stop()
    shutil.rmtree(top)


@pytest.fixture()
def guest_lines(keys):
    return [guest_line(parse_public_key(keys["guest"].public_line), COMMAND)]


@pytest.fixture()
def running(host, guest_lines):
    said = host.start(guest_lines)
    assert said.startswith("port "), host.out.read_text()
    return host


def _listening() -> str:
    return subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True, check=True).stdout


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


# --- the config ----------------------------------------------------------------------------


def test_config_renders_and_sshd_accepts_it(host):
    host.home.joinpath("run").mkdir(mode=0o700)
    os.chown(host.home / "run", NOBODY, NOBODY)
    made = host.run(str(installed().python), "-c", "import sys; from pathlib import Path; from pairing.hook.sshd import host_key; "
                    "host_key(Path(sys.argv[1]))", str(host.data))
    assert made.returncode == 0, made.stderr
    config = host.home / "run" / "sshd_config"
    config.write_text(render_config(USER, 2222, host.home / "run", key_path(host.data)))
    checked = host.run(SSHD, "-t", "-f", str(config))
    assert checked.returncode == 0 and checked.stderr == "", checked.stderr
    effective = host.run(SSHD, "-T", "-f", str(config)).stdout.splitlines()
    for setting in ("listenaddress 127.0.0.1:2222", f"allowusers {USER}", "authenticationmethods publickey",
                    "passwordauthentication no", "kbdinteractiveauthentication no", "usepam no", "strictmodes yes",
                    "permittty yes", "allowtcpforwarding local", "allowstreamlocalforwarding no",
                    "permitopen localhost:* 127.0.0.1:* [::1]:*", "permitlisten none",
                    "allowagentforwarding no", "x11forwarding no", "permittunnel no", "gatewayports no",
                    "permituserenvironment no", "loglevel VERBOSE", f"authorizedkeysfile {host.home}/run/authorized_keys"):
        assert setting in effective, setting
    assert not any(line.startswith("subsystem") for line in effective)
    # The relay's limit on connections not logged in; through the tunnel all come from 127.0.0.1, so no per-address
    # one (docs/SECURITY.md); `pairing direct`'s guests come from their own addresses, so the relay's too.
    assert "maxstartups 10:30:60" in effective and "logingracetime 15" in effective
    assert "persourcemaxstartups none" in effective or not any(l.startswith("persourcemaxstartups") for l in effective)
    config.write_text(render_config(USER, 2222, host.home / "run", key_path(host.data), tunneled=False))
    effective = host.run(SSHD, "-T", "-f", str(config)).stdout.splitlines()
    assert "maxstartups 10:30:60" in effective and "persourcemaxstartups 4" in effective


def test_listens_on_loopback_only(running):
    pid = int((running.folder / "sshd.pid").read_text())
    listening = _listening().splitlines()
    ours = [line.split() for line in listening if line.split()[3].rpartition(":")[2] == str(running.port)]
    assert [fields[3] for fields in ours] == [f"127.0.0.1:{running.port}"]
    assert f"pid={pid}," in ours[0][5]
    assert stat_uid(pid) == NOBODY


def stat_uid(pid: int) -> int:
    return os.stat(f"/proc/{pid}").st_uid


# --- what a guest gets -------------------------------------------------------------------


def test_guest_gets_the_forced_command_and_a_pty(running, keys):
    result = running.ssh(keys["guest"].path, "-tt")
    lines = result.stdout.replace("\r", "").splitlines()
    assert any(line.startswith("/dev/pts/") for line in lines), result.stdout + result.stderr  # `tty`: a pty
    assert "forced" in lines and "not-the-forced-command" not in result.stdout
    # The log tells which key it was.
    fingerprint = parse_public_key(keys["guest"].public_line).fingerprint
    wait_until(lambda: accepted_fingerprints(running.log, USER) == [fingerprint], 5, "the login in the log",
               show=lambda: running.log)


def test_another_key_is_refused(running, keys):
    result = running.ssh(keys["stranger"].path, "-tt")
    assert f"{USER}@127.0.0.1: Permission denied (publickey)." in result.stderr
    assert result.returncode == 255 and accepted_fingerprints(running.log) == []


def test_forwards_are_refused(running, keys, tmp_path):
    guest = keys["guest"].path
    remote = running.ssh(guest, "-o", "ExitOnForwardFailure=yes", "-R", "0:127.0.0.1:22", "-N")
    assert "Error: remote port forwarding failed for listen port 0" in remote.stderr
    stdio = running.ssh(guest, "-W", f"127.0.0.1:{running.port}")
    assert "channel 0: open failed: administratively prohibited: open failed" in stdio.stderr
    assert "stdio forwarding failed" in stdio.stderr
    # -L: the client listens; the sshd refuses the channel when something connects through it.
    forwarded = free_port()
    local = subprocess.Popen(running.ssh_argv(guest, "-N", "-v", "-L", f"127.0.0.1:{forwarded}:127.0.0.1:{running.port}"),
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                             env=_without_agent())
    try:
        # ssh says "Local forwarding listening" before its listen(): wait for the socket itself.
        wait_until(lambda: f"127.0.0.1:{forwarded} " in _listening() or local.poll() is not None, 10, "ssh -L to listen")
        with socket.create_connection(("127.0.0.1", forwarded)) as sock:
            sock.settimeout(10)
            assert sock.recv(64) == b""  # closed without a byte of the sshd behind it
        wait_until(lambda: "open failed: administratively prohibited: open failed" in local.stderr.readline(), 10,
                   "ssh -L to say the sshd refused")
    finally:
        stop_process(local)
    # -A: with an agent at hand, the session still has none.
    agent_sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(agent_sock)], stdout=subprocess.DEVNULL)
    try:
        wait_until(agent_sock.exists, 10, "ssh-agent")
        env = dict(_without_agent(), SSH_AUTH_SOCK=str(agent_sock))
        forwarded_agent = running.ssh(guest, "-tt", "-A", env=env)
        assert "agent=none" in forwarded_agent.stdout and "forced" in forwarded_agent.stdout, forwarded_agent.stdout
    finally:
        stop_process(agent)


def test_a_shared_port_opens_that_port_and_nothing_else(host, keys):
    """A line sharing a port (shared_ports.py): its connection opens that port of the host's loopback, by each
    spelling of it, and nothing else: not another port, not the sshd itself, not another host, not -R."""
    with serving("the-shared-page") as shared, serving("not-shared") as other:
        line = guest_line(parse_public_key(keys["guest"].public_line), COMMAND, shared=(SharedPort(shared, shared),))
        assert host.start([line]).startswith("port "), host.out.read_text()
        guest = keys["guest"].path
        for name in ("localhost", "127.0.0.1", "[::1]"):
            page = _through(host, guest, f"{name}:{shared}")
            # [::1]: nothing listens there (the page is on 127.0.0.1 only), but sshd let the channel open
            assert page.stdout.endswith("the-shared-page") if name != "[::1]" else "prohibited" not in page.stderr, \
                page.stderr
        for target in (f"127.0.0.1:{other}", f"127.0.0.1:{host.port}", f"127.0.0.2:{shared}", f"0.0.0.0:{shared}"):
            refused = _through(host, guest, target)
            assert "channel 0: open failed: administratively prohibited: open failed" in refused.stderr, target
            assert "not-shared" not in refused.stdout and "SSH-" not in refused.stdout
        remote = host.ssh(guest, "-o", "ExitOnForwardFailure=yes", "-R", f"{free_port()}:127.0.0.1:{shared}", "-N")
        assert "Error: remote port forwarding failed for listen port" in remote.stderr, remote.stderr


def _through(host: Host, key: Path, target: str) -> subprocess.CompletedProcess:
    """An HTTP GET through the guest's connection (-W: the same direct-tcpip channel as -L)."""
    return subprocess.run(host.ssh_argv(key, "-W", target), input="GET / HTTP/1.0\r\n\r\n", capture_output=True,
                          text=True, timeout=30, env=_without_agent())


def test_ssh_audit_passes(running):
    report = ssh_audit("127.0.0.1", running.port)
    print(f"ssh-audit, private sshd: {sorted(findings(report))}")
    assert findings(report) == JUSTIFIED
    assert report["cves"] == []


# --- it goes with the hook ---------------------------------------------------------------


@pytest.mark.parametrize("how", ["stop", "SIGTERM", "SIGKILL"])
def test_nothing_of_it_outlives_the_parent(running, keys, how):
    session = subprocess.Popen(running.ssh_argv(keys["guest"].path, "-tt"), stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=_without_agent())
    try:
        wait_until(lambda: b"forced" in session.stdout.read1(), 10, "the guest's session")
        processes = descendants(running.parent.pid)
        sessions = [command for command in alive(processes) if f"{USER}@pts/" in command]
        assert sessions, alive(processes)  # the per-connection sshd, in a session of its own
        if how == "stop":
            running.parent.stdin.write("\n")
            running.parent.stdin.flush()
        else:
            running.parent.send_signal(getattr(signal, how))
        running.parent.wait(10)
        wait_until(lambda: not alive(processes), 10, "every process of the sshd to end", show=lambda: str(alive(processes)))
        assert _port_free(running.port)
        assert session.wait(10) == 255 or session.returncode == 0  # the guest was let go
        if how == "stop":
            assert running.out.read_text().splitlines()[-1] == "stopped"
        assert running.parent.returncode == {"stop": 0, "SIGTERM": 0, "SIGKILL": -signal.SIGKILL}[how]
    finally:
        stop_process(session)


# --- the host key ------------------------------------------------------------------------


def test_host_key_is_made_once_mode_600_and_kept(tmp_path):
    first = host_key(tmp_path)
    path = key_path(tmp_path)
    assert path == tmp_path / "sshd" / "ssh_host_ed25519_key" and first.kind == "ssh-ed25519"
    assert oct(path.stat().st_mode & 0o777) == "0o600" and oct(path.parent.stat().st_mode & 0o777) == "0o700"
    before = path.read_bytes()
    assert host_key(tmp_path) == first and path.read_bytes() == before
    assert os.listdir(path.parent) == [path.name]  # no temp copy left


def test_guests_pin_that_key(running, keys):
    """StrictHostKeyChecking=yes against host_key()'s line: the sshd shows exactly that key."""
    result = running.ssh(keys["guest"].path, "-tt")
    assert "forced" in result.stdout, result.stderr


# --- clear errors ------------------------------------------------------------------------


def test_a_taken_port_is_one_line_with_sshds_own_words(host, guest_lines):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        said = host.start(guest_lines, port=port)
    assert said.startswith("error the host's sshd did not start: ") and said.endswith(f"(log: {host.folder}/sshd.log)")
    # The failed bind's own line, naming the address and port (not the last one, "Cannot bind any address.").
    assert f"Bind to port {port} on 127.0.0.1 failed: Address already in use." in said


def test_no_sshd_is_one_line(host, guest_lines):
    said = host.start(guest_lines, hide_sshd=True)
    assert said == ("error no OpenSSH sshd found (looked in PATH, /usr/sbin, /sbin); "
                    "install it: sudo apt-get install openssh-server")


def test_a_devpts_without_the_tty_group_is_one_line(host, guest_lines):
    """A /dev/pts without gid=5 (as this test machine's own): sshd would cut every guest off at login."""
    said = host.start(guest_lines, devpts="mode=600")
    assert said.startswith("error the host's sshd cannot serve guests here: new terminals under /dev/pts get group ")
    assert said.endswith("mount devpts with gid=5,mode=620 (as systemd does)")


def test_a_folder_sshd_would_refuse_is_one_line(host, guest_lines):
    """Outside the home, StrictModes looks up to /: the world-writable /tmp would refuse every guest."""
    said = host.start(guest_lines, folder=host.top / "sshd")
    assert said == ("error the host's sshd cannot serve guests here: /tmp (mode 1777, uid 0) is writable by others "
                    "or not yours")


def test_the_log_parser_reads_each_login():
    log = ("Connection from 127.0.0.1 port 40000 on 127.0.0.1 port 2222 rdomain \"\"\n"
           "Accepted key ED25519 SHA256:859g4QjvcQcenIrAk1PBYU0kkf34wxMQybp3pkmPXDc found at /x/authorized_keys:1\n"
           "Accepted publickey for pairtest from 127.0.0.1 port 40000 ssh2: ED25519 "
           "SHA256:859g4QjvcQcenIrAk1PBYU0kkf34wxMQybp3pkmPXDc\n"
           "Accepted publickey for other from 127.0.0.1 port 40001 ssh2: RSA SHA256:" + "A" * 43 + "\n")
    assert accepted_fingerprints(log, "pairtest") == ["SHA256:859g4QjvcQcenIrAk1PBYU0kkf34wxMQybp3pkmPXDc"]
    assert accepted_fingerprints(log) == ["SHA256:859g4QjvcQcenIrAk1PBYU0kkf34wxMQybp3pkmPXDc", "SHA256:" + "A" * 43]
