"""`pairing direct` as complete as the relay: its port kept across restarts (invites already sent stay
valid), a second run on a held port refused in one line before anything is written, `pairing status`,
`--ask`, and `pairing invite --for/--known-hosts/--putty` for a running direct session, without Pulumi;
`pairing doctor --direct`. Real OpenSSH (the hook's own sshd as uid 65534, guests in another network
namespace), real tmux, real plink; tests/test_direct.py has the harness."""

from __future__ import annotations

import ipaddress
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys

import pytest

from pairing.hook.ports import answers
from pairing.sshkeys import parse_public_key

from .harness import PROJECT, Tmux, wait_until
from .harness.unprivileged import NOBODY, USER, UnprivilegedHost
from .test_direct import READY, Direct, land, lan_on
from .test_direct import sshd_port as port_said

# Not test_direct.py's: the two modules may run side by side.
SUBNET = ipaddress.ip_network("10.214.250.12/30")  # its own, beside the other direct modules
HOST_IP = str(SUBNET[1])


def sshd_port(hook) -> int:
    return port_said(hook, HOST_IP)


lan = lan_on(SUBNET, "d")


@pytest.fixture(scope="module")
def direct(keys, lan, tmp_path_factory):
    host = UnprivilegedHost()
    session = Direct(host, keys, lan, tmp_path_factory.mktemp("direct-session"))
    try:
        yield session
    finally:
        session.tmux.kill_server()
        host.remove()


def types_into_the_pane(direct: Direct, guest, marker: str, session: str = "pair") -> None:
    guest.type(f"echo {marker}-$((6*7))")
    wait_until(lambda: f"{marker}-42" in direct.tmux.screen(session), 10, "the guest's line in the host's pane",
               show=lambda: direct.tmux.screen(session))


def test_a_restart_keeps_the_port_so_an_invite_already_sent_still_works(direct):
    hook = direct.start("--listen", HOST_IP, "--session", "keep")
    try:
        hook.wait_for(READY)
        first = sshd_port(hook)
        assert "it keeps this port when you start it again" in hook.text
        sent = direct.guest()  # the invite as it was sent, before the restart
    finally:
        assert hook.stop() == 0, hook.text
    remembered = next((direct.host.home / ".local/state/pairing/sshd").glob("keep-*/direct.json"))
    assert (remembered.stat().st_uid, oct(remembered.stat().st_mode & 0o777)) == (NOBODY, "0o600")
    again = direct.start("--listen", HOST_IP, "--session", "keep")
    try:
        again.wait_for(READY)
        assert sshd_port(again) == first
        sent.connect()
        wait_until(lambda: "$" in sent.screen or "GUEST-SSH-EXITED" in sent.screen, 30, "the guest to land")
        types_into_the_pane(direct, sent, "kept", "keep")
    finally:
        sent.disconnect()
        assert again.stop() == 0, again.text


def test_a_second_run_on_a_held_port_fails_in_one_line_and_the_first_serves_on(direct):
    hook = direct.start("--listen", f"{HOST_IP}:2222")
    guest = None
    other = direct.host.home / "other.conf"
    try:
        hook.wait_for(READY)
        guest = land(direct)
        second = direct.host.pairing("direct", "--guest", direct.keys["guest2"].public_line, "--invite", str(other),
                                     "--tmux-socket", str(direct.tmux.socket), "--session", "other",
                                     "--listen", f"{HOST_IP}:2222")
        assert (second.returncode, second.stdout) == (2, ""), second
        assert second.stderr == (f"pairing direct: port 2222 on {HOST_IP} is held by `pairing direct --session pair` "
                                 f"(pid {hook.process.pid}); give this session another port: --listen {HOST_IP}:PORT\n")
        assert not other.exists()
        assert direct.tmux.run("has-session", "-t", "=other", check=False).returncode == 1
        types_into_the_pane(direct, guest, "still-served")
        assert READY not in hook.text.split(READY, 1)[1]  # one ready, the first run's
    finally:
        if guest:
            guest.disconnect()
        assert hook.stop() == 0, hook.text


def test_a_port_another_program_holds_is_refused_before_anything(direct):
    with socket.create_server((HOST_IP, 0)) as holder:
        port = holder.getsockname()[1]
        result = direct.host.pairing("direct", *direct.argv("--listen", f"{HOST_IP}:{port}", "--session", "taken"))
    assert (result.returncode, result.stdout) == (2, ""), result
    assert result.stderr == (f"pairing direct: --listen {HOST_IP}:{port}: port {port} is taken on this machine (Address "
                             f"already in use); stop what holds it (ss -ltnp 'sport = :{port}' names it), or give "
                             "another port\n")
    assert direct.tmux.run("has-session", "-t", "=taken", check=False).returncode == 1


def test_status_describes_the_running_direct_session(direct):
    hook = direct.start("--listen", f"{HOST_IP}:2223")
    guest = None
    try:
        hook.wait_for(READY)
        guest = land(direct)
        hook.wait_for("guest joined the session", 10)
        status = direct.host.pairing("status")
        assert status.returncode == 6, status
        assert re.fullmatch(
            rf"direct  listening on {re.escape(HOST_IP)}:2223 \(pairing direct --session pair, pid {hook.process.pid}, "
            r"since \d\d:\d\d:\d\d\); no relay\n"
            r"guests  1 typing, 0 watching in tmux session 'pair': guest \(typing\)\n", status.stdout), status.stdout
        # A name typed as a person writes it: the running hook's nearest guest.
        watch = direct.host.pairing("watch", "Guest")
        assert (watch.returncode, watch.stderr) == (2, "pairing watch: 'Guest' is not a guest name: use lowercase "
                                                       "letters, digits, '.', '_' and '-', at most 32 characters (did "
                                                       "you mean guest?)\n"), watch
        kick = direct.host.pairing("kick", "gest")
        assert kick.stderr.startswith("pairing kick: no guest is called 'gest' (did you mean guest?); "), kick
    finally:
        if guest:
            guest.disconnect()
        assert hook.stop() == 0, hook.text
    assert direct.host.pairing("status").returncode != 6


def test_ask_lets_a_guest_in_only_when_the_host_says_so(direct):
    hook = direct.start("--listen", HOST_IP, "--ask")
    guest = None
    try:
        hook.wait_for(READY)
        guest = direct.guest()
        guest.connect()
        hook.wait_for("guest wants to join (typing): pairing allow guest / pairing deny guest (within 60 s)", 20)
        assert "$" not in guest.screen
        allowed = direct.host.pairing("allow", "guest")
        assert allowed.returncode == 0, allowed
        wait_until(lambda: "$" in guest.screen or "GUEST-SSH-EXITED" in guest.screen, 20, "the guest to land")
        types_into_the_pane(direct, guest, "asked")
    finally:
        if guest:
            guest.disconnect()
        assert hook.stop() == 0, hook.text


def test_invite_for_a_running_direct_session_needs_no_pulumi(direct):
    hook = direct.start("--listen", f"{HOST_IP}:2224")
    folder = direct.host.home / "for-viewer"
    guest = None
    try:
        hook.wait_for(READY)
        folder.mkdir()
        os.chown(folder, NOBODY, NOBODY)
        result = direct.host.pairing("invite", "--for", "viewer", "--known-hosts", "--invite", str(folder / "v.conf"))
        assert result.returncode == 0, result
        assert result.stdout.startswith(f"wrote {folder}/v.conf and {folder}/v.known_hosts for viewer: send both")
        key = direct.host.pairing("sshd-key").stdout.split()[:2]
        assert (folder / "v.known_hosts").read_text() == f"pairing-host {' '.join(key)}\n"
        header = [line for line in (folder / "v.conf").read_text().splitlines() if line.startswith("#")]
        assert "# For viewer, who may only watch (read-only); your key: " + parse_public_key(direct.keys["viewer"].public_line).fingerprint in header
        assert not [line for line in header if "relay" in line and "no relay" not in line], header
        # The viewer joins with it, the two files in the folder they run ssh in, no /bin/echo needed.
        received = direct.folder / "guests" / "viewer-kh"
        received.mkdir(parents=True)
        for name in ("v.conf", "v.known_hosts"):
            shutil.copyfile(folder / name, received / name)
        guest = direct.guest("viewer")
        guest.config.write_text(guest.config.read_text().replace(str(direct.folder / "guests/viewer/pairing.conf"),
                                                                 str(received / "v.conf")))
        guest.connect(cwd=received)
        wait_until(lambda: "$" in guest.screen or "GUEST-SSH-EXITED" in guest.screen, 30, "the viewer to land",
                   show=lambda: guest.screen + guest.log.read_text())
        hook.wait_for("viewer joined the session (watching)", 10)
        wrong = direct.host.pairing("invite", "--for", "Viewer")
        assert (wrong.returncode, wrong.stderr) == (2, "pairing invite: --for 'Viewer': no guest of that name (did you "
                                                       "mean viewer?); the guests are guest, viewer\n"), wrong
    finally:
        if guest:
            guest.disconnect()
        assert hook.stop() == 0, hook.text


def test_a_putty_guest_joins_a_direct_session_with_the_printed_plink_command(direct):
    hook = direct.start("--listen", f"{HOST_IP}:2225")
    home = direct.folder / "putty"
    home.mkdir()
    terminal = Tmux(home / "putty.tmux")
    try:
        hook.wait_for(READY)
        subprocess.run(["puttygen", str(direct.keys["guest"].path), "-O", "private", "-o", str(home / "work.ppk")],
                       check=True, capture_output=True, stdin=subprocess.DEVNULL)
        printed = direct.host.pairing("invite", "--putty", "work.ppk")
        assert printed.returncode == 0, printed
        command = [line.strip() for line in printed.stdout.splitlines() if line.startswith("    plink ")]
        fingerprint = re.search(r"host sshd: (SHA256:\S+)", printed.stdout)[1]
        assert command == [f"plink -ssh -t -batch -i work.ppk -l {USER} -P 2225 -hostkey {fingerprint} {HOST_IP}"]
        assert "relay" not in printed.stdout.replace("no relay", "")
        # plink keeps its random seed under ~/.putty: the guest's own folder, never this machine's.
        terminal.run("new-session", "-d", "-s", "guest", "-x", "100", "-y", "30", "-c", str(home),
                     f"env HOME={home} TERM=screen ip netns exec {direct.lan} {command[0]}; echo GUEST-EXITED; sleep 600")
        wait_until(lambda: "$" in terminal.screen("guest") or "GUEST-EXITED" in terminal.screen("guest"), 30,
                   "plink to land", show=lambda: terminal.screen("guest"))
        terminal.type("guest", "echo plink-direct-$((6*7))")
        wait_until(lambda: "plink-direct-42" in direct.tmux.screen("pair"), 10, "plink's line in the host's pane")
    finally:
        terminal.kill_server()
        assert hook.stop() == 0, hook.text


def test_doctor_direct_passes_where_direct_runs_and_says_what_it_lacks_elsewhere(direct):
    doctor = direct.host.pairing("doctor", "--direct")
    assert doctor.returncode == 0, doctor
    assert [line.split(":")[0] for line in doctor.stdout.splitlines()] == [
        "ok   python", "ok   sshd", "ok   terminals", "ok   sshd host key", "ok   tmux", "all checks passed"]
    assert "pulumi" not in doctor.stdout and "aws" not in doctor.stdout
    # Without the namespace's devpts (this machine's gives no tty group), doctor and direct say the same.
    prefix = [word for word in direct.host.prefix() if True]
    script = prefix[6].replace(" && mount -t devpts -o newinstance,gid=5,mode=620,ptmxmode=666 devpts /dev/pts", "")
    script = script.replace(" && mount --bind /dev/pts/ptmx /dev/ptmx", "")
    prefix[6] = script
    env = direct.host.env

    def bare(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run([*prefix, "python", "-m", "pairing", *argv], env=env, capture_output=True, text=True,
                              timeout=60, stdin=subprocess.DEVNULL, cwd=direct.host.home)

    if os.stat("/dev/pts/ptmx").st_gid == 5:
        pytest.skip("this machine's devpts gives the tty group")
    failed = bare("doctor", "--direct")
    assert failed.returncode == 1, failed
    line = next(line for line in failed.stdout.splitlines() if line.startswith("FAIL terminals"))
    assert line.endswith("guests would be cut off; fix: mount devpts with gid=5,mode=620 (as systemd does)"), line
    refused = bare("direct", *direct.argv("--listen", HOST_IP, "--session", "nopty"))
    assert refused.returncode == 2 and "guests would be cut off" in refused.stderr, refused


def test_ready_waits_for_this_runs_own_sshd_by_its_banner_word(direct):
    """The proof behind "ready": the word at the end of this run's sshd banner; any other sshd (a second run's, of
    the same host key) lacks it. Read off the real OpenSSH's banner."""
    hook = direct.start("--listen", f"{HOST_IP}:2226")
    try:
        hook.wait_for(READY)
        config = next((direct.host.home / ".local/state/pairing/sshd").glob("pair-*/sshd_config")).read_text()
        nonce = re.search(r"^VersionAddendum (pairing-[0-9a-f]{16})$", config, re.M)[1]
        with socket.create_connection((HOST_IP, 2226), timeout=5) as sock:
            banner = sock.makefile("rb").readline(256).decode().strip()
        assert banner.startswith("SSH-2.0-OpenSSH_") and banner.endswith(f" {nonce}"), banner
        assert answers(HOST_IP, 2226, nonce) and not answers(HOST_IP, 2226, "pairing-" + "0" * 16)
    finally:
        assert hook.stop() == 0, hook.text


def test_ctrl_c_at_the_hosts_terminal_wipes_the_status_line(direct):
    """The host's terminal (a tmux pane): after Ctrl-C, `stopped`, then the shell's prompt on a line of its own."""
    terminal = Tmux(direct.folder / "host-terminal.tmux")
    env = [f"{key}={value}" for key, value in direct.host.env.items()]
    line = shlex.join(["env", "-i", *env, *direct.host.prefix(), sys.executable, "-m", "pairing", "direct",
                       *direct.argv("--listen", HOST_IP, "--session", "ctrlc")])
    terminal.run("new-session", "-d", "-s", "host", "-x", "250", "-y", "40", "-c", str(PROJECT),
                 f"{line}; printf 'alice@vm:~$ '; sleep 600")
    try:
        wait_until(lambda: "| no guests attached" in terminal.screen("host"), 30, "the status line",
                   show=lambda: terminal.screen("host"))
        terminal.run("send-keys", "-t", "host", "C-c")
        wait_until(lambda: "alice@vm:~$" in terminal.screen("host"), 15, "the prompt", show=lambda: terminal.screen("host"))
        shown = [row.rstrip() for row in terminal.screen("host").splitlines() if row.strip()]
        assert shown[-2:] == ["stopped", "alice@vm:~$"], shown
        assert not any("no guests attached" in row for row in shown), shown
    finally:
        terminal.kill_server()
