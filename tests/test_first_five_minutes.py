"""A new user's first runs, as they see them: `pairing up` says every bad flag (as typed, with the fix) before it
looks at the machine, takes the region from the AWS profile like every AWS tool, `--version`, and doctor's fixes
that fit what is wrong. Real `python -m pairing` runs in a temp HOME with no Pulumi CLI on PATH; nothing mocked."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from pairing import doctor
from pairing.cli import parser
from pairing.up import REQUIRED_CHECKS
from pairing.up_plan import plan

from .harness import PROJECT

NO_PULUMI_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


def run(*argv: str, home: Path, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    environ = {"HOME": str(home), "PATH": NO_PULUMI_PATH, "LANG": "C.UTF-8", "PYTHONPATH": str(PROJECT), **env}
    return subprocess.run([sys.executable, "-m", "pairing", *argv], cwd=cwd, env=environ, capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)


def new_home(tmp_path: Path, keys, pub: bool = True) -> Path:
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_ed25519").write_bytes(keys["host"].path.read_bytes())
    (home / ".ssh" / "id_ed25519").chmod(0o600)
    if pub:
        (home / ".ssh" / "id_ed25519.pub").write_text(keys["host"].public_line + "\n")
    return home


def stopped(stdout: str) -> str:
    """The last line `pairing up` says when the machine is not ready: the required checks that failed, counted.
    (Which fail besides pulumi and credentials depends on the machine: as root, pairing's own sshd does.)"""
    names = [line[5:].split(":")[0] for line in stdout.splitlines() if line.startswith("FAIL ")]
    names = [name for name in names if name in REQUIRED_CHECKS]
    return (f"pairing up: stopped before creating anything: {len(names)} required check{'s' if len(names) > 1 else ''}"
            f" failed ({', '.join(names)}); fix each FAIL line above\n")


def written(home: Path, cwd: Path) -> list[str]:
    """What a run left: state (stacks, keys), an invite, or a lock's record. The lock's empty folder is not state."""
    files = [p for p in (home / ".local").rglob("*") if p.is_file()] if (home / ".local").exists() else []
    return sorted(str(p) for p in files + list(cwd.iterdir()))


def test_every_bad_flag_is_said_before_the_machine_is_checked(tmp_path, keys):
    home, cwd = new_home(tmp_path, keys), tmp_path / "cwd"
    cwd.mkdir()
    result = run("up", "--ttl", "0", "--port", "22", "--allow", "10.0.0.0/8", "--allow", "10.0.0.0/33",
                 "--instance-type", "t9.huge", home=home, cwd=cwd)
    assert result.returncode == 2
    assert result.stdout == ""  # no doctor line: the flags come first
    assert result.stderr.splitlines() == [
        "pairing up: no --guest: give at least one guest: --guest gh:USER, --guest ~/their_key.pub "
        "or --guest 'ssh-ed25519 AAAA...'",
        "pairing up: --allow 10.0.0.0/33: '10.0.0.0/33' is not an IPv4 or IPv6 CIDR; write e.g. 203.0.113.7/32 "
        "or 2001:db8::/48",
        "pairing up: --ttl 0: 0 is out of range; use 1 to 1440 minutes (24 hours)",
        "pairing up: --port 22: 22 is out of range; use an unprivileged port from 1024 to 65535, e.g. 1337",
        "pairing up: --instance-type t9.huge: 't9.huge' is not an EC2 instance type; use e.g. t3.micro (x86_64) "
        "or t4g.micro (arm64)",
        "pairing up: no AWS region: pass --region (e.g. --region eu-central-1), set AWS_REGION, or set region in "
        "your AWS profile (aws configure set region eu-central-1)",
    ]
    assert written(home, cwd) == []


def test_good_flags_then_every_failed_check_then_their_count(tmp_path, keys):
    home, cwd = new_home(tmp_path, keys), tmp_path / "cwd"
    cwd.mkdir()
    result = run("up", "--guest", keys["guest"].public_line, "--region", "eu-west-1", home=home, cwd=cwd)
    assert result.returncode == 2
    fails = [line for line in result.stdout.splitlines() if line.startswith("FAIL")]
    assert fails[:2] == [
        "FAIL pulumi: the Pulumi CLI is not installed; fix: install it: curl -fsSL https://get.pulumi.com | sh "
        "(or brew install pulumi), then open a new shell",
        f"FAIL aws credentials: none in the environment or for profile 'default' in {home}/.aws/credentials / "
        f"{home}/.aws/config (an EC2 instance role was not checked); fix: run `aws configure` (or `aws sso login`), "
        "or export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
    ]
    assert result.stdout.splitlines()[-1] == f"{len(fails)} of 9 checks failed"
    assert result.stderr == stopped(result.stdout)
    assert result.stderr.startswith("pairing up: stopped before creating anything: ")
    assert "failed (pulumi, aws credentials" in result.stderr
    assert written(home, cwd) == []


def test_region_from_the_active_profile(tmp_path, keys):
    home, cwd = new_home(tmp_path, keys), tmp_path / "cwd"
    cwd.mkdir()
    config = tmp_path / "aws-config"
    config.write_text("[default]\nregion = us-east-1\n\n[profile work]\nregion = eu-west-1\nsso_session = corp\n\n"
                      "[profile broken]\nregion = eu west\n")
    env = {"AWS_PROFILE": "work", "AWS_CONFIG_FILE": str(config)}
    args = parser().parse_args(["up", "--guest", keys["guest"].public_line, "--sshd-key", keys["sshd"].public_line])
    assert plan(args, home=home, environ=env).config["aws:region"] == "eu-west-1"
    assert plan(args, home=home, environ={"AWS_CONFIG_FILE": str(config)}).config["aws:region"] == "us-east-1"
    assert plan(args, home=home, environ={**env, "AWS_DEFAULT_REGION": "ap-south-1"}).config["aws:region"] == "ap-south-1"

    # The real command: the profile's region and credentials are found, so only the Pulumi CLI is missing.
    result = run("up", "--guest", keys["guest"].public_line, home=home, cwd=cwd, **env)
    assert result.returncode == 2
    assert f"ok   aws credentials: profile 'work' in {config} (sso_session; not verified against AWS)" in result.stdout
    assert result.stderr == stopped(result.stdout) and "failed (pulumi" in result.stderr
    broken = run("up", "--guest", keys["guest"].public_line, home=home, cwd=cwd, AWS_PROFILE="broken",
                 AWS_CONFIG_FILE=str(config))
    assert broken.returncode == 2 and broken.stdout == ""
    assert broken.stderr == (f"pairing up: region in profile 'broken' of {config}: 'eu west' is not an AWS region "
                             "name; use e.g. eu-central-1\n")
    assert written(home, cwd) == []


def test_version(tmp_path, keys):
    result = run("--version", home=new_home(tmp_path, keys), cwd=tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (0, "pairing 0.1.0\n", "")


def test_doctor_says_start_an_installed_but_stopped_sshd(tmp_path, keys):
    assert doctor.SYSTEM_SSHD.exists()  # the tests' own sshd instances run it
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = run("doctor", "--target", f"127.0.0.1:{port}", home=new_home(tmp_path, keys), cwd=tmp_path)
    assert result.returncode == 1
    assert (f"FAIL sshd: nothing answers on 127.0.0.1:{port} (Connection refused); fix: start it: sudo systemctl "
            "start ssh (/usr/sbin/sshd is installed; macOS: System Settings > General > Sharing > Remote Login), "
            "or pass --target HOST:PORT") in result.stdout.splitlines()
    absent = doctor.check_sshd(("127.0.0.1", port), None, sshd_binary=tmp_path / "no-sshd")
    assert absent.fix.startswith("install and start it (Debian/Ubuntu: sudo apt install openssh-server;")


def test_a_key_without_its_pub_gets_it_written_back(tmp_path, keys):
    home, cwd = new_home(tmp_path, keys, pub=False), tmp_path / "cwd"
    cwd.mkdir()
    key = home / ".ssh" / "id_ed25519"
    result = run("doctor", home=home, cwd=cwd)
    assert (f"FAIL identity: {key} has no {key}.pub beside it; fix: write it: ssh-keygen -y -f {key} > {key}.pub"
            in result.stdout.splitlines())
    up = run("up", "--guest", keys["guest"].public_line, "--region", "eu-west-1", home=home, cwd=cwd)
    assert up.returncode == 2 and up.stdout == ""
    assert up.stderr == (f"pairing up: no public key for {key}; write it: ssh-keygen -y -f {key} > {key}.pub, "
                         "or pass --host-key FILE.pub\n")
    # The fix as said works, and leaves the key itself as it was.
    before = key.read_bytes()
    subprocess.run(f"ssh-keygen -y -f {key} > {key}.pub", shell=True, check=True, env={"HOME": str(home)})
    assert key.read_bytes() == before
    assert f"ok   identity: {key}" in run("doctor", home=home, cwd=cwd).stdout.splitlines()
