"""What a new user reads: every command's --help (a description, an example, required flags shown as required, one
name and one default for the same thing in every command), `pairing status`'s four answers with their exit codes,
and a quick start that installs only what running needs and leaves `git status` clean. Real `python -m pairing`
runs in a temp HOME with no Pulumi CLI on PATH; nothing mocked."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pairing.cli import parser
from pairing.outputs import render_outputs
from pairing.settings import settings_from
from pairing.sshkeys import parse_public_key
from pairing.up_plan import default_stack

from .harness import PROJECT

pytestmark = pytest.mark.pure  # needs neither root nor the relay tools (tests/conftest.py)

NO_PULUMI_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


def run(*argv: str, home: Path, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess:
    environ = {"HOME": str(home), "PATH": NO_PULUMI_PATH, "LANG": "C.UTF-8", "PYTHONPATH": str(PROJECT),
               "COLUMNS": "100", **env}
    return subprocess.run([sys.executable, "-m", "pairing", *argv], cwd=cwd or home, env=environ, capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)


def commands() -> dict[str, argparse.ArgumentParser]:
    """Every command the parser has, new ones included."""
    sub = next(a for a in parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


# --- help -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", sorted(commands()))
def test_every_command_has_a_description_and_an_example(command, tmp_path):
    result = run(command, "--help", home=tmp_path)
    assert (result.returncode, result.stderr) == (0, "")
    text = result.stdout
    usage, _, rest = text.partition("\n\n")
    assert usage.startswith(f"usage: pairing {command} ")
    description = rest.split("\n\n")[0]
    assert not description.startswith("options:") and len(description) > 40, text
    examples = text.split("\nexample:\n" if "\nexample:\n" in text else "\nexamples:\n")
    assert len(examples) == 2, text
    shown = [line for line in examples[1].splitlines() if line.startswith("  ")]
    assert shown and all(line.startswith("  pairing ") or line.startswith("  pulumi ") for line in shown), text
    assert any(line.startswith(f"  pairing {command}") for line in shown)
    assert max(len(line) for line in description.splitlines()) <= 100  # prose is wrapped to the terminal


def usage_of(command: str, tmp_path: Path) -> str:
    return " ".join(run(command, "--help", home=tmp_path).stdout.split("\n\n")[0].split())


def test_guest_shows_as_required_yet_up_says_every_problem(tmp_path):
    for command in ("up", "direct"):
        usage = usage_of(command, tmp_path)
        assert " --guest [NAME=]SOURCE " in usage and "[--guest [NAME=]SOURCE]" not in usage, usage
        assert "[--viewer [NAME=]SOURCE]" in usage
    # argparse does not stop at it alone: `pairing up` says it with the other problems (one line each).
    result = run("up", "--ttl", "0", home=tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    said = result.stderr.splitlines()
    assert said[0] == ("pairing up: no --guest: give at least one guest: --guest gh:USER, --guest ~/their_key.pub "
                       "or --guest 'ssh-ed25519 AAAA...'")
    assert "pairing up: --ttl 0: 0 is out of range; use 1 to 1440 minutes (24 hours)" in said[1:]


def test_the_guests_file_is_invite_in_every_command():
    for command in ("up", "direct", "invite"):
        options = {o: a for a in commands()[command]._actions for o in a.option_strings}
        assert options["--invite"].default == Path("pairing.conf") and options["--invite"].metavar == "FILE"
        assert options["--invite"].help == ("where to write the guest's ssh config (default: ./pairing.conf; "
                                            "git ignores that name)")
    # invite's old --out still works, unlisted.
    assert parser().parse_args(["invite", "--out", "x.conf"]).invite == Path("x.conf")
    assert parser().parse_args(["invite"]).invite == Path("pairing.conf")
    assert re.search(r"--out\b", commands()["invite"].format_help()) is None


def test_stack_defaults_to_the_same_stack_in_every_command():
    having = {name for name, sub in commands().items() for a in sub._actions if "--stack" in a.option_strings}
    assert having >= {"up", "down", "host", "invite", "status"}  # and any command added since
    for name in having:
        stack = next(a for a in commands()[name]._actions if "--stack" in a.option_strings)
        assert stack.default == default_stack(), name
        assert stack.help.endswith(f"(default: pair-USER-MACHINE, one per user and machine; here {default_stack()})")
    assert {parser().parse_args([name]).stack for name in having} == {default_stack()}


def test_doctor_has_the_identity_flag_its_fix_names(tmp_path, keys):
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    result = run("doctor", home=home)
    assert (f"FAIL identity: no id_ed25519, id_ecdsa, id_rsa key pair in {home / '.ssh'}; fix: make one: "
            "ssh-keygen -t ed25519, or pass --identity PATH") in result.stdout.splitlines()
    given = run("doctor", "--identity", str(keys["host"].path), home=home)
    assert f"ok   identity: {keys['host'].path}" in given.stdout.splitlines(), given.stderr
    missing = run("doctor", "--identity", str(tmp_path / "nothing"), home=home)
    assert (f"FAIL identity: {tmp_path / 'nothing'} is not a readable file; fix: pass --identity with your private key"
            in missing.stdout.splitlines())


def test_doctor_fails_a_public_key_or_another_key_than_host_public_key(tmp_path, keys):
    """Issue 19, finding 11: `--identity bob.pub` (someone's public key) was `ok identity`."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    bob = tmp_path / "bob.pub"
    bob.write_text(keys["guest"].public_line + "\n")
    fingerprint = parse_public_key(keys["guest"].public_line).fingerprint
    public = run("doctor", "--identity", str(bob), home=home)
    assert (f"FAIL identity: {bob} is a public key ({fingerprint}), which cannot log in to the relay; fix: pass "
            "--identity with your private key (not a .pub)") in public.stdout.splitlines()
    assert public.returncode == 1
    mine = tmp_path / "mine"
    mine.write_bytes(keys["host"].path.read_bytes())
    (tmp_path / "mine.pub").write_text(keys["host"].public_line + "\n")
    beside = run("doctor", "--identity", str(tmp_path / "mine.pub"), home=home)
    assert (f"FAIL identity: {tmp_path / 'mine.pub'} is a public key ({parse_public_key(keys['host'].public_line).fingerprint}), "
            f"which cannot log in to the relay; fix: pass --identity with its private half ({mine})"
            ) in beside.stdout.splitlines()
    # hostPublicKey is what pairing up publishes: ~/.ssh/id_ed25519.pub here; the guest's private key is not its half.
    (home / ".ssh" / "id_ed25519.pub").write_text(keys["host"].public_line + "\n")
    host = parse_public_key(keys["host"].public_line).fingerprint
    other = run("doctor", "--identity", str(keys["guest"].path), home=home)
    assert (f"FAIL identity: {keys['guest'].path} is {fingerprint}, but hostPublicKey is {host} "
            f"({home / '.ssh' / 'id_ed25519.pub'}); fix: pass --identity with the private key of "
            f"{home / '.ssh' / 'id_ed25519.pub'}, or give pairing up --host-key with {keys['guest'].path}'s own .pub"
            ) in other.stdout.splitlines()
    assert f"ok   identity: {keys['host'].path}" in run("doctor", "--identity", str(keys["host"].path),
                                                       home=home).stdout.splitlines()


# --- pairing status: four answers, four exit codes --------------------------------------------------


def outputs_file(tmp_path: Path, keys, launched: dt.datetime, ttl: int = 240) -> Path:
    settings = settings_from({"guestKeys": [keys["guest"].public_line], "hostPublicKey": keys["host"].public_line,
                              "hostSshdKey": keys["sshd"].public_line, "ttlMinutes": str(ttl), "hostUser": "alice"})
    data = render_outputs(settings, relay_address="203.0.113.10",
                          relay_host_key=parse_public_key(keys["stranger"].public_line),
                          instance_id="i-0123456789abcdef0", launch_time=launched.strftime("%Y-%m-%dT%H:%M:%SZ"))
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(data))
    return path


def relay_line(keys) -> str:
    fingerprint = parse_public_key(keys["stranger"].public_line).fingerprint
    return f"relay   203.0.113.10 ({fingerprint}), instance i-0123456789abcdef0"


def test_status_without_a_stack_is_no_relay_even_without_the_pulumi_cli(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    result = run("status", home=home)
    assert (result.returncode, result.stderr) == (5, "")
    assert result.stdout == (f"relay   none: no stack {default_stack()!r} in file://{home}/.local/share/pairing/state; "
                             "start one: pairing up --guest SOURCE\n")
    assert list(home.iterdir()) == []  # nothing made
    other = run("status", "--stack", "dev", "--backend", f"file://{tmp_path}/state", home=home)
    assert (other.returncode, other.stdout) == (5, f"relay   none: no stack 'dev' in file://{tmp_path}/state; start "
                                                   "one: pairing up --guest SOURCE\n")
    # Pulumi's file://~ is the home folder (`pulumi login --local`): state there is seen as state.
    (home / ".pulumi" / "stacks" / "pairing").mkdir(parents=True)
    (home / ".pulumi" / "stacks" / "pairing" / "dev.json").write_text("{}")
    for url in ("file://~", "file://~/", f"file://{home}"):
        seen = run("status", "--stack", "dev", "--backend", url, home=home)
        assert (seen.returncode, seen.stdout) == (2, ""), url
    shutil.rmtree(home / ".pulumi")
    # With state for that stack, only the CLI can read it: then (and only then) the CLI is what is missing.
    stacks = home / ".local" / "share" / "pairing" / "state" / ".pulumi" / "stacks" / "pairing"
    stacks.mkdir(parents=True)
    (stacks / f"{default_stack()}.json").write_text("{}")
    there = run("status", home=home)
    assert (there.returncode, there.stdout) == (2, "")
    assert there.stderr.startswith("pairing status: the Pulumi CLI is not installed; install it, or pass --outputs")


def test_status_of_a_stack_with_no_outputs_is_no_relay(tmp_path):
    empty = tmp_path / "outputs.json"
    empty.write_text("{}\n")  # what `pulumi stack output --json` prints for a stack never deployed, or destroyed
    result = run("status", "--outputs", str(empty), home=tmp_path)
    assert (result.returncode, result.stderr) == (5, "")
    assert result.stdout == (f"relay   none: {empty} has no outputs (never deployed, or destroyed); start one: "
                             "pairing up --guest SOURCE\n")


def test_status_of_an_expired_relay_says_so_and_not_to_hold_it(tmp_path, keys):
    launched = dt.datetime(2026, 11, 26, 15, 0, tzinfo=dt.timezone.utc)
    result = run("status", "--outputs", str(outputs_file(tmp_path, keys, launched)), home=tmp_path)
    assert (result.returncode, result.stderr) == (4, "")
    assert result.stdout.splitlines() == [
        relay_line(keys),
        "ends    2026-11-26T19:00:00Z (expired: the relay has ended itself; a new one: pairing up --guest SOURCE)",
    ]
    assert "pairing host" not in result.stdout


def test_status_of_a_live_relay_no_hook_is_not_held(tmp_path, keys):
    now = dt.datetime.now(dt.timezone.utc)
    path = outputs_file(tmp_path, keys, now - dt.timedelta(minutes=30))
    result = run("status", "--outputs", str(path), "--tmux-socket", str(tmp_path / "none.sock"), home=tmp_path)
    assert (result.returncode, result.stderr) == (3, "")
    ends = (now.replace(microsecond=0) + dt.timedelta(minutes=210)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert result.stdout.splitlines() == [
        relay_line(keys),
        f"ends    {ends} (3 h 29 min left)",  # under 3 h 30 min from the second it was read
        f"tunnel  not held: run pairing host --outputs {path} --tmux-socket {tmp_path}/none.sock",  # the same relay
        "guests  0 typing, 0 watching in tmux session 'pair' (no hook runs: nobody can be in)",
        f"attach  tmux -S {tmp_path}/none.sock attach -t pair",  # the host's own way in
    ]
    # No --tmux-socket: pairing's own server, where `pairing host` puts the session; nothing made by asking.
    own = run("status", "--outputs", str(path), home=tmp_path)
    assert own.stdout.splitlines()[-1] == f"attach  tmux -S {tmp_path}/.local/state/pairing/tmux/pair attach -t pair"
    assert not (tmp_path / ".local/state/pairing/tmux").exists()


HOLDER = """
import sys, time
from pairing.hook import SingleHook, lock_path
from pairing.hook.lock import TunnelStatus
from pairing.tunnel import State
lock = SingleHook(lock_path("pair", sys.argv[1]), command="host")
if sys.argv[2] == "up":
    lock.publish(TunnelStatus(State.UP, since=time.mktime((2026, 12, 1, 9, 8, 7, 0, 0, -1))), "openssh")
print("holding", flush=True)
sys.stdin.read()
"""


def test_status_of_a_held_relay(tmp_path, keys):
    """A real SingleHook, the lock and record `pairing host` keeps, held by another process."""
    now = dt.datetime.now(dt.timezone.utc)
    path = outputs_file(tmp_path, keys, now - dt.timedelta(minutes=30))
    socket = str(tmp_path / "none.sock")
    env = {"HOME": str(tmp_path), "XDG_STATE_HOME": str(tmp_path / "state"), "PYTHONPATH": str(PROJECT),
           "PATH": NO_PULUMI_PATH}
    for said, tunnel in (("", "held by a running `pairing host` (pid {pid})"),
                         ("up", "up since 09:08:07 (pairing host --tunnel openssh, pid {pid})")):
        holder = subprocess.Popen([sys.executable, "-c", HOLDER, socket, said or "-"], env=env, stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        try:
            assert holder.stdout.readline() == "holding\n"
            result = run("status", "--outputs", str(path), "--tmux-socket", socket, home=tmp_path,
                         XDG_STATE_HOME=env["XDG_STATE_HOME"])
            assert (result.returncode, result.stderr) == (0, "")
            assert result.stdout.splitlines()[2] == f"tunnel  {tunnel.format(pid=holder.pid)}"
        finally:
            holder.stdin.close()
            assert holder.wait(10) == 0
    gone = run("status", "--outputs", str(path), "--tmux-socket", socket, home=tmp_path,
               XDG_STATE_HOME=env["XDG_STATE_HOME"])
    assert gone.returncode == 3
    assert gone.stdout.splitlines()[2] == f"tunnel  not held: run pairing host --outputs {path} --tmux-socket {socket}"


def test_status_help_and_the_relay_page_document_the_exit_codes(tmp_path):
    shown = run("status", "--help", home=tmp_path).stdout
    table = shown.split("exit status:\n")[1].split("\n\n")[0].splitlines()
    codes = {int(line.split()[0]): line.split(None, 1)[1] for line in table}
    assert sorted(codes) == [0, 2, 3, 4, 5, 6]
    # The table is in the README or a page of docs/ (docs/direct.md has direct's own code).
    pages = "".join(path.read_text() for path in [PROJECT / "README.md", *sorted((PROJECT / "docs").glob("*.md"))])
    for code, meaning in codes.items():
        assert f"| {code} | {meaning} |" in pages, (code, meaning)


# --- the quick start ------------------------------------------------------------------------------


def requirements(name: str) -> list[str]:
    lines = (PROJECT / name).read_text().splitlines()
    return [re.split(r"[<>=\s]", line.strip(), 1)[0] for line in lines if line.strip() and not line.startswith("#")]


def test_the_quick_start_installs_what_running_needs_and_ci_the_tests_too():
    """The base install in pyproject.toml, the relay's packages its aws extra, requirements.txt the clone's
    editable install with that extra, requirements-test.txt that and the tests' tools, which .ci/run installs.
    (README.md's quick start: tests/test_readme.py.)"""
    import tomllib

    project = tomllib.loads((PROJECT / "pyproject.toml").read_text())["project"]
    base = {re.split(r"[<>=\s\[]", line, 1)[0].lower() for line in project["dependencies"]}
    cloud = {re.split(r"[<>=\s\[]", line, 1)[0].lower() for line in project["optional-dependencies"]["aws"]}
    assert base == {"paramiko", "sshtunnel", "cryptography", "pyyaml"}
    assert cloud == {"pulumi", "pulumi-aws", "pulumi-tls"}
    assert requirements("requirements.txt") == ["-e"] and "-e .[aws]" in (PROJECT / "requirements.txt").read_text()
    tests = requirements("requirements-test.txt")
    assert "-r" in tests and {"pytest", "hypothesis", "ssh-audit", "setuptools"} <= set(tests)
    assert "-r requirements.txt" in (PROJECT / "requirements-test.txt").read_text().splitlines()
    ci = (PROJECT / ".ci" / "run").read_text()
    assert "pip install -q --disable-pip-version-check -r requirements-test.txt" in ci


def test_the_invite_written_in_a_clone_leaves_git_status_clean(tmp_path, keys):
    if shutil.which("git") is None:
        pytest.fail("git is needed to check what `git status` shows")
    clone = tmp_path / "clone"
    clone.mkdir()
    git = {"GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(tmp_path), "PATH": NO_PULUMI_PATH}
    subprocess.run(["git", "init", "-q"], cwd=clone, env=git, check=True)
    shutil.copy(PROJECT / ".gitignore", clone / ".gitignore")
    launched = dt.datetime.now(dt.timezone.utc)
    path = outputs_file(tmp_path, keys, launched)
    for extra in ([], ["--known-hosts"]):
        result = run("invite", "--outputs", str(path), *extra, home=tmp_path, cwd=clone)
        assert result.returncode == 0, result.stderr
    (clone / "session.cast").write_text("{}\n")  # a recording
    assert sorted(p.name for p in clone.iterdir()) == [".git", ".gitignore", "pairing.conf", "pairing.known_hosts",
                                                       "session.cast"]
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=clone, env=git,
                            capture_output=True, text=True, check=True)
    assert status.stdout == "?? .gitignore\n"
