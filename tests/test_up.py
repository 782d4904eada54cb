"""`pairing up/down/status/doctor`: everything up to the Automation API call, for real.
No test pretends to be Pulumi: where its CLI is missing, the commands stop with doctor's message."""

from __future__ import annotations

import datetime as dt
import http.server
import inspect
import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pulumi
import pytest

from pairing import backend as backends
from pairing import doctor, keysources
from pairing.cli import parser
from pairing.program import load_settings
from pairing.outputs import StackOutputs
from pairing.sshkeys import parse_public_key
from pairing.up import up_arguments
from pairing.up_plan import UpError, default_stack, plan

from .harness import PROJECT, HostSshd, fido_public_line

GITHUB_KEYS = {}  # user -> (status, body), served by the fixture below


class KeyPages(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        status, body = GITHUB_KEYS.get(self.path.strip("/").removesuffix(".keys"), (404, b"Not Found"))
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def key_pages():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), KeyPages)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/{{user}}.keys"
    server.shutdown()
    server.server_close()


@pytest.fixture()
def sites(key_pages, monkeypatch):
    monkeypatch.setitem(keysources.KEY_PAGES, "github", key_pages)
    monkeypatch.setitem(keysources.KEY_PAGES, "gitlab", key_pages)
    GITHUB_KEYS.clear()
    return GITHUB_KEYS


@pytest.fixture()
def home(tmp_path, keys):
    """A user's home with their own key pair, as `pairing up` would find it."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    for suffix in ("", ".pub"):
        (home / ".ssh" / f"id_ed25519{suffix}").write_bytes(Path(f"{keys['host'].path}{suffix}").read_bytes())
    return home


def up_args(*argv: str):
    return parser().parse_args(["up", *argv])


def test_flags_become_the_config_the_program_reads(keys, home, sites, tmp_path):
    guest_file = tmp_path / "team.pub"
    guest_file.write_text(f"# the team\n{keys['guest'].public_line}\n\n{keys['guest2'].public_line}\n")
    blob = keys["viewer"].public_line.split()[1]
    sites["octocat"] = (200, f"ssh-ed25519 {blob}\n".encode())
    args = up_args("--guest", str(guest_file), "--viewer", "gh:octocat", "--ttl", "45", "--allow", "198.51.100.0/24",
                   "--allow", "2001:db8::/32", "--region", "eu-west-1", "--port", "2222",
                   "--sshd-key", keys["sshd"].public_line, "--session", "mob")
    up_plan = plan(args, home=home, environ={})
    assert up_plan.config["aws:region"] == "eu-west-1"
    # Each key named (its comment): guest@test -> guest, a GitHub user's key -> the user.
    assert json.loads(up_plan.config["pairing:guestKeys"]) == [
        " ".join(keys["guest"].public_line.split()[:2] + ["guest"]), " ".join(keys["guest2"].public_line.split()[:2] + ["guest2"])]
    assert json.loads(up_plan.config["pairing:viewerKeys"]) == [f"ssh-ed25519 {blob} octocat"]
    assert up_plan.config["pairing:hostPublicKey"] == keys["host"].public_line

    # The Pulumi program, given this config, reads the very same settings.
    pulumi.runtime.set_all_config(up_plan.config)
    assert load_settings() == up_plan.settings
    assert up_plan.settings.ttl_minutes == 45 and up_plan.settings.tunnel_port == 2222
    assert [str(n) for n in up_plan.settings.allowed_cidrs] == ["198.51.100.0/24", "2001:db8::/32"]


def test_same_flags_same_config(keys, home, sites):
    args = up_args("--guest", keys["guest"].public_line, "--region", "eu-west-1", "--sshd-key", keys["sshd"].public_line)
    assert plan(args, home=home, environ={}).config == plan(args, home=home, environ={}).config


@pytest.mark.parametrize("user, page, message", [
    ("ghost", None, "--guest gh:ghost: no such github user (http://127.0.0.1:"),
    ("empty", (200, b""), "--guest gh:empty: github has no public SSH keys for empty; ask them to add one, or give "
                          "their .pub file"),
    ("broken", (200, b"<html>rate limited</html>\n"), "--guest gh:broken: http://127.0.0.1:"),
    ("down", (503, b"busy"), "answered 503"),
])
def test_github_key_pages(keys, home, sites, user, page, message):
    if page:
        sites[user] = page
    with pytest.raises(UpError) as caught:
        plan(up_args("--guest", f"gh:{user}", "--region", "eu-west-1"), home=home, environ={})
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_gitlab_keys_and_duplicates(keys, home, sites):
    line = keys["guest2"].public_line.split()
    sites["gitlabber"] = (200, f"{line[0]} {line[1]} gitlab-laptop\n{line[0]} {line[1]} again\n".encode())
    up_plan = plan(up_args("--guest", "gl:gitlabber", "--region", "eu-west-1", "--sshd-key", keys["sshd"].public_line),
                   home=home, environ={})
    assert json.loads(up_plan.config["pairing:guestKeys"]) == [f"{line[0]} {line[1]} gitlabber"]  # named by the user


@pytest.mark.parametrize("argv, message", [
    ((), "no --guest: give at least one guest"),
    (("--guest", "/nonexistent/key.pub"), "/nonexistent/key.pub: no such file"),
    (("--guest", "ssh-ed25519 AAAA-broken"), "is not a valid ssh-ed25519 key"),
    (("--guest", "gh:bad/name"), "not a github user name"),
    (("--ttl", "0"), "--ttl 0: 0 is out of range"),
])
def test_bad_flags(keys, home, sites, argv, message):
    argv = argv if "--guest" in argv or not argv else ("--guest", keys["guest"].public_line, *argv)
    with pytest.raises(UpError, match=message.replace("(", r"\(")):
        plan(up_args(*argv, "--region", "eu-west-1", "--sshd-key", keys["sshd"].public_line), home=home, environ={})


def test_region_is_required(keys, home):
    with pytest.raises(UpError, match="no AWS region: pass --region"):
        plan(up_args("--guest", keys["guest"].public_line), home=home, environ={})
    assert plan(up_args("--guest", keys["guest"].public_line, "--sshd-key", keys["sshd"].public_line),
                home=home, environ={"AWS_REGION": "us-east-2"}).config["aws:region"] == "us-east-2"


def test_fido_host_key_stops_up_before_the_deploy(keys, home, tmp_path):
    """The hook cannot use a FIDO host key (see test_host_preflight): said before a relay exists, not after."""
    fido = tmp_path / "id_ed25519_sk.pub"
    fido.write_text(fido_public_line() + "\n")
    with pytest.raises(UpError) as refused:
        plan(up_args("--guest", keys["guest"].public_line, "--host-key", str(fido), "--sshd-key", keys["sshd"].public_line,
                     "--region", "eu-west-1"), home=home, environ={})
    assert str(refused.value).startswith(f"--host-key {fido} is a FIDO key (sk-ssh-ed25519@openssh.com), which "
                                         "`pairing host` cannot use with either --tunnel")


def test_backend_choice_and_passphrase(tmp_path):
    home = tmp_path / "home"
    local = backends.choose(home=home, environ={})
    assert local.url == f"file://{home}/.local/share/pairing/state"
    passphrase = Path(local.env["PULUMI_CONFIG_PASSPHRASE_FILE"])
    backends.prepare(local)
    assert passphrase.stat().st_mode & 0o777 == 0o600
    assert Path(local.url[len("file://"):]).is_dir()
    first = passphrase.read_text()
    backends.prepare(local)
    assert passphrase.read_text() == first and len(first.strip()) >= 40

    assert backends.choose("s3://team-bucket", home=home, environ={}).env == {"PULUMI_BACKEND_URL": "s3://team-bucket"}
    assert backends.choose(home=home, environ={"PULUMI_BACKEND_URL": "s3://x"}).env == {}
    (home / ".pulumi").mkdir()
    (home / ".pulumi" / "credentials.json").write_text(json.dumps({"current": "https://api.pulumi.com"}))
    assert backends.choose(home=home, environ={}).env == {}


# --- doctor, against real conditions --------------------------------------


def test_doctor_sshd_absent_and_present(tmp_path):
    sshd = HostSshd(tmp_path / "sshd", tmp_path / "authorized_keys")
    absent = doctor.check_sshd(("127.0.0.1", sshd.port), sshd.host_key.path.with_suffix(".pub"))
    assert not absent.ok and "nothing answers on 127.0.0.1" in absent.line() and "fix: start it" in absent.line()
    sshd.start()
    try:
        present = doctor.check_sshd(("127.0.0.1", sshd.port), Path(f"{sshd.host_key.path}.pub"))
        assert present.ok and present.detail.startswith("SSH-2.0-OpenSSH")
    finally:
        sshd.stop()


def test_doctor_tmux_absent(monkeypatch, tmp_path):
    assert doctor.check_tmux().ok
    monkeypatch.setenv("PATH", str(tmp_path))
    check = doctor.check_tmux()
    assert not check.ok and "apt install tmux" in check.line()


def test_doctor_aws_credentials(tmp_path):
    home = tmp_path
    assert not doctor.check_aws_credentials({}, home).ok
    assert doctor.check_aws_credentials({"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "x"}, home).ok
    (home / ".aws").mkdir()
    (home / ".aws" / "config").write_text("[profile work]\nsso_session = corp\n")
    assert doctor.check_aws_credentials({"AWS_PROFILE": "work"}, home).ok
    assert "not verified against AWS" in doctor.check_aws_credentials({"AWS_PROFILE": "work"}, home).detail
    assert not doctor.check_aws_credentials({"AWS_PROFILE": "other"}, home).ok


def test_doctor_identity(tmp_path, home):
    assert doctor.check_identity(home).ok
    assert not doctor.check_identity(tmp_path / "empty").ok
    # --identity replaces the search: a key elsewhere is enough, a missing one is named.
    given = home / ".ssh" / "id_ed25519"
    assert doctor.check_identity(tmp_path / "empty", given=given).ok
    missing = doctor.check_identity(home, given=tmp_path / "nothing")
    assert not missing.ok and f"{tmp_path / 'nothing'} is not a readable file" in missing.line()


def test_doctor_sshd_key_unreadable_or_given(tmp_path):
    sshd = HostSshd(tmp_path / "sshd", tmp_path / "authorized_keys")
    sshd.start()
    try:
        unreadable = doctor.check_sshd(("127.0.0.1", sshd.port), tmp_path / "no-such-key.pub")
        assert not unreadable.ok and "is not readable" in unreadable.line()
        # The flag is pairing up's (doctor has none): the fix says whose.
        assert unreadable.fix == ("pass its key line to pairing up with --sshd-key (ssh-keyscan -t ed25519 localhost), "
                                  "or make the file readable")
        given = doctor.check_sshd(("127.0.0.1", sshd.port), None)  # --sshd-key LINE: no file needed
        assert given.ok and "given with --sshd-key" in given.detail
    finally:
        sshd.stop()


def test_doctor_openssh_version():
    assert doctor.check_openssh().ok  # this machine's real ssh (CI installs openssh-client)
    old = doctor.openssh_verdict("OpenSSH_8.2p1 Ubuntu-4ubuntu0.11, OpenSSL 1.1.1f  31 Mar 2020")
    assert not old.ok and "upgrade OpenSSH to 8.5 or newer" in old.line()
    assert doctor.openssh_verdict("OpenSSH_10.0p2 Debian-7, OpenSSL 3.5.1 1 Jul 2025").ok
    assert not doctor.openssh_verdict(None).ok and "not installed" in doctor.openssh_verdict(None).line()


def run_cli(*argv: str, home: Path, path: str = "/usr/sbin:/usr/bin:/sbin:/bin") -> subprocess.CompletedProcess:
    """The real command, with a PATH that holds no Pulumi CLI."""
    env = {"HOME": str(home), "PATH": path, "LANG": "C.UTF-8"}
    return subprocess.run([sys.executable, "-m", "pairing", *argv], cwd=PROJECT, env=env, capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)


def test_up_without_pulumi_stops_with_doctors_message(home, keys):
    result = run_cli("up", "--guest", keys["guest"].public_line, "--region", "eu-west-1", home=home)
    assert result.returncode == 2
    assert "FAIL pulumi: the Pulumi CLI is not installed" in result.stdout
    assert result.stderr.startswith("pairing up: stopped before creating anything: ")
    assert "required check" in result.stderr and "pulumi" in result.stderr
    assert not (home / ".local" / "share" / "pairing").exists()  # nothing made


def test_down_without_pulumi(home):
    result = run_cli("down", home=home)
    assert result.returncode == 2
    assert "the Pulumi CLI is not installed" in result.stderr
    assert "no guest keys were left in" in result.stdout


def test_down_removes_a_crashed_hooks_keys_even_without_pulumi(home):
    """What a SIGKILLed `pairing host` left is taken out first, byte for byte, whatever becomes of the destroy."""
    from pairing.authorized_keys import with_block

    keys = home / ".ssh" / "authorized_keys"
    original = b"# mine\r\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHBhaXJpbmcgZXhhbXBsZSBob3N0OyByZXBsYWNlLS0t me"
    keys.write_bytes(with_block(original.decode(), ['restrict,command="tmux attach" ssh-ed25519 AAAA guest']).encode())
    keys.chmod(0o640)
    result = run_cli("down", "--authorized-keys", str(keys), home=home)
    assert f"removed the guest keys block that was left in {keys}" in result.stdout
    assert result.returncode == 2 and "the Pulumi CLI is not installed" in result.stderr
    assert keys.read_bytes() == original and keys.stat().st_mode & 0o777 == 0o640


def test_status_from_outputs(tmp_path, home, keys):
    from pairing.outputs import render_outputs
    from pairing.settings import settings_from
    from pairing.sshkeys import parse_public_key

    settings = settings_from({"guestKeys": [keys["guest"].public_line], "hostPublicKey": keys["host"].public_line,
                              "hostSshdKey": keys["sshd"].public_line, "ttlMinutes": "120"})
    import datetime as dt
    launched = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    outputs = render_outputs(settings, relay_address="203.0.113.10", relay_host_key=parse_public_key(keys["stranger"].public_line),
                             instance_id="i-0abc", launch_time=launched)
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(outputs))
    result = run_cli("status", "--outputs", str(path), "--tmux-socket", str(tmp_path / "none.sock"), home=home)
    assert result.returncode == 3, result.stderr  # up, not held (status.NOT_HELD)
    assert "relay   203.0.113.10" in result.stdout and "i-0abc" in result.stdout
    assert "(1 h 29 min left)" in result.stdout or "(1 h 30 min left)" in result.stdout
    assert f"tunnel  not held: run pairing host --outputs {path} --tmux-socket {tmp_path / 'none.sock'}\n" in result.stdout
    assert "guests  0 typing, 0 watching" in result.stdout


class SlowPages(http.server.BaseHTTPRequestHandler):
    """A keys page that drips (a byte every 0.8 s) or never ends (2 MiB of key-like lines)."""

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        try:
            if "slow" in self.path:
                for _ in range(100):
                    self.wfile.write(b"s")
                    self.wfile.flush()
                    time.sleep(0.8)  # the server's pace, not a wait in the test
            else:
                self.wfile.write(b"# ssh-ed25519 AAAA padding line\n" * (2 * 1024 * 1024 // 32))
        except OSError:
            pass  # the client gave up, as it should

    def log_message(self, *args):
        pass


@pytest.fixture()
def slow_pages(monkeypatch):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), SlowPages)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setitem(keysources.KEY_PAGES, "github", f"http://127.0.0.1:{server.server_address[1]}/{{user}}.keys")
    monkeypatch.setattr(keysources, "FETCH_TIMEOUT", 3)
    yield
    server.shutdown()
    server.server_close()


def test_a_dripping_key_page_has_an_overall_deadline(home, slow_pages):
    began = time.monotonic()
    with pytest.raises(UpError) as caught:
        plan(up_args("--guest", "gh:slow", "--region", "eu-west-1"), home=home, environ={})
    took = time.monotonic() - began
    assert str(caught.value).startswith("--guest gh:slow: http://127.0.0.1:") and str(caught.value).endswith(
        "/slow.keys did not answer within 3 s; try again, or give their .pub file")
    assert took < 3 + 1.5, f"held for {took:.1f} s"


def test_a_key_page_over_a_mebibyte_is_refused_not_cut(home, slow_pages):
    with pytest.raises(UpError) as caught:
        plan(up_args("--guest", "gh:huge", "--region", "eu-west-1"), home=home, environ={})
    assert str(caught.value).endswith("/huge.keys sent more than 1024 KiB, which is no keys page; give their .pub file")


def test_local_backend_folders_are_private_and_an_empty_passphrase_is_repaired(tmp_path):
    home = tmp_path / "home"
    local = backends.choose(home=home, environ={})
    backends.prepare(local)
    data = home / ".local" / "share" / "pairing"
    assert [oct(p.stat().st_mode & 0o777) for p in (data, data / "state")] == ["0o700", "0o700"]
    passphrase = data / "passphrase"
    passphrase.write_bytes(b"")  # a crash between creating and writing it
    data.chmod(0o755)  # as an earlier version made it
    backends.prepare(local)
    assert len(passphrase.read_text().strip()) >= 40 and passphrase.stat().st_mode & 0o777 == 0o600
    assert oct(data.stat().st_mode & 0o777) == "0o700"
    assert sorted(p.name for p in data.iterdir()) == ["passphrase", "state"]  # no temp file left


# --- stacks: one per user and machine, refreshed before each update ------------------


def test_default_stack_is_one_per_user_and_machine():
    assert default_stack("alice", "laptop.example.com") == "pair-alice-laptop"
    assert default_stack("Bob.Smith", "Bob's MacBook Pro.local") == "pair-bob-smith-bob-s-macbook-pro"
    assert default_stack("alice", "laptop") != default_stack("bob", "laptop") != default_stack("bob", "desktop")
    # What Pulumi takes as a stack name.
    assert re.fullmatch(r"[A-Za-z0-9_.-]{1,100}", default_stack("x" * 200, "y" * 200))


def test_up_and_down_default_to_that_stack():
    for command in ("up", "down"):
        assert parser().parse_args([command]).stack == default_stack()


def test_up_refreshes_before_it_updates():
    """A relay that ended itself is seen as gone and replaced; the arguments are the real API's."""
    from pulumi.automation import Stack

    said = []
    arguments = up_arguments(said.append)
    assert arguments["refresh"] is True
    assert set(arguments) <= set(inspect.signature(Stack.up).parameters)
    arguments["on_output"]("updating")
    assert said == ["updating"]


def test_ls_rows(keys):
    from pairing.outputs import render_outputs
    from pairing.relays import Relay, rows
    from pairing.settings import settings_from
    from pairing.sshkeys import parse_public_key

    settings = settings_from({"guestKeys": [keys["guest"].public_line], "hostPublicKey": keys["host"].public_line,
                              "hostSshdKey": keys["sshd"].public_line, "hostUser": "alice"})
    outputs = StackOutputs.from_json(render_outputs(settings, relay_address="203.0.113.10",
                                                    relay_host_key=parse_public_key(keys["stranger"].public_line),
                                                    instance_id="i-0abc", launch_time="2026-11-26T15:00:00Z"))
    now = dt.datetime(2026, 11, 26, 16, 30, tzinfo=dt.timezone.utc)
    assert rows([Relay("pair-alice-laptop", "eu-central-1", outputs),
                 Relay("pair-bob-desktop", "us-east-1", None, "no relay (not deployed, or destroyed)")], now) == [
        "STACK              OWNER  REGION        ADDRESS       ENDS",
        "pair-alice-laptop  alice  eu-central-1  203.0.113.10  2026-11-26 19:00Z (2 h 30 min left)",
        "pair-bob-desktop   ?      us-east-1     -             no relay (not deployed, or destroyed)",
    ]
    later = dt.datetime(2026, 11, 26, 19, 1, tzinfo=dt.timezone.utc)
    assert rows([Relay("s", None, outputs)], later)[1].endswith("(ended: its TTL has passed)")


def test_the_sshd_key_defaults_to_pairings_own_and_to_the_system_sshds_with_target(home, keys, tmp_path, monkeypatch):
    """No --sshd-key: guests pin the key of pairing's own sshd (the one `pairing sshd-key` prints, made once under
    the data folder); with --target they land on the system sshd, so they pin its key."""
    from pairing import settings as settings_module
    from pairing.hook.sshd import host_key

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    own = plan(up_args("--guest", keys["guest"].public_line, "--region", "eu-west-1"), home=home, environ={})
    assert own.settings.host_sshd_key == host_key(tmp_path / "data" / "pairing")
    assert "pairing:hostSshdKey" not in own.config  # the program's default: the same key, on this machine
    assert plan(up_args("--guest", keys["guest"].public_line, "--region", "eu-west-1"), home=home,
                environ={}).settings.host_sshd_key == own.settings.host_sshd_key  # made once
    system = tmp_path / "ssh_host_ed25519_key.pub"
    system.write_text(keys["sshd"].public_line + "\n")
    monkeypatch.setattr(settings_module, "LOCAL_SSHD_KEY", system)
    monkeypatch.setattr("pairing.up_plan.LOCAL_SSHD_KEY", system)
    targeted = plan(up_args("--guest", keys["guest"].public_line, "--region", "eu-west-1", "--target", "localhost:22"),
                    home=home, environ={})
    assert targeted.config["pairing:hostSshdKey"] == keys["sshd"].public_line
    assert targeted.settings.host_sshd_key.bare == parse_public_key(keys["sshd"].public_line).bare
    system.unlink()
    with pytest.raises(UpError) as refused:
        plan(up_args("--guest", keys["guest"].public_line, "--region", "eu-west-1", "--target", "localhost:22"),
             home=home, environ={})
    assert str(refused.value) == (f"--target: {system} (your sshd's key, which guests pin) is not readable; pass its "
                                  "key line with --sshd-key (ssh-keyscan -t ed25519 localhost)")
