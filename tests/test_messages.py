"""Every message as a user sees it: a mistyped command, flag, choice or region gets the nearest real one;
--invite into a folder that does not exist is one line, before anything; piped, what a command printed
comes before its error; the hook's status line is wiped when it stops, on a real terminal (a pty).
Real `python -m pairing` runs in a temp HOME with no Pulumi CLI on PATH; nothing mocked."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys

import pytest

from pairing.hook.console import Console

from .harness import PROJECT
from .test_help_and_status import NO_PULUMI_PATH, outputs_file, run

pytestmark = pytest.mark.pure


def last_line(result: subprocess.CompletedProcess) -> str:
    return result.stderr.splitlines()[-1]


def test_a_mistyped_command_gets_the_nearest_one(tmp_path):
    result = run("whoo", home=tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    assert last_line(result).startswith("pairing: error: argument COMMAND: invalid choice: 'whoo' (did you mean who?) "
                                        "(choose from 'up', ")


def test_a_mistyped_flag_or_choice_gets_the_nearest_one(tmp_path):
    flag = run("direct", "--gust", "gh:octocat", "--listen", "192.0.2.1", home=tmp_path)
    assert (flag.returncode, last_line(flag)) == (2, "pairing direct: error: unrecognized arguments: --gust gh:octocat "
                                                     "(did you mean --guest?)")
    choice = run("host", "--tunnel", "opnssh", home=tmp_path)
    assert last_line(choice) == ("pairing host: error: argument --tunnel: invalid choice: 'opnssh' (did you mean "
                                 "openssh?) (choose from 'paramiko', 'openssh')")
    far = run("direct", "--zzzzzz", "--listen", "192.0.2.1", home=tmp_path)
    assert last_line(far) == "pairing direct: error: unrecognized arguments: --zzzzzz"


def test_a_mistyped_region_is_an_error_with_the_nearest_one(tmp_path, keys):
    pytest.importorskip("pulumi_aws")
    result = run("up", "--guest", keys["guest"].public_line, "--region", "eu-centrl-1", home=tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    assert ("pairing up: --region eu-centrl-1: 'eu-centrl-1' is not an AWS region (did you mean eu-central-1?); use "
            "e.g. eu-central-1") in result.stderr.splitlines(), result.stderr


def test_invite_into_a_missing_folder_is_one_line_before_anything(tmp_path, keys):
    missing = tmp_path / "nope" / "p.conf"
    direct = run("direct", "--guest", keys["guest"].public_line, "--listen", "192.0.2.1", "--invite", str(missing),
                 home=tmp_path)
    assert (direct.returncode, direct.stdout) == (2, "")
    assert direct.stderr == (f"pairing direct: --invite {missing}: the folder {missing.parent} does not exist; make it "
                             f"(mkdir -p {missing.parent}) or give a file in a folder that exists\n")
    outputs = outputs_file(tmp_path, keys, dt.datetime.now(dt.timezone.utc))
    invite = run("invite", "--outputs", str(outputs), "--invite", str(missing), home=tmp_path)
    assert (invite.returncode, invite.stderr) == (2, direct.stderr.replace("pairing direct:", "pairing invite:"))
    up = run("up", "--guest", keys["guest"].public_line, "--region", "eu-west-1", "--invite", str(missing), home=tmp_path)
    assert (up.returncode, up.stdout, up.stderr) == (2, "", direct.stderr.replace("pairing direct:", "pairing up:"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outputs.json"]  # nothing else made, not even a lock
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outputs.json"]


def test_piped_ups_fail_lines_come_before_its_last_word(tmp_path, keys):
    """stdout and stderr into one pipe, as `pairing up 2>&1 | tee log` does."""
    environ = {"HOME": str(tmp_path), "PATH": NO_PULUMI_PATH, "LANG": "C.UTF-8", "PYTHONPATH": str(PROJECT)}
    result = subprocess.run([sys.executable, "-m", "pairing", "up", "--guest", keys["guest"].public_line, "--region",
                             "eu-west-1", "--host-key", str(keys["host"].path) + ".pub"], env=environ, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60,
                            stdin=subprocess.DEVNULL)
    lines = result.stdout.splitlines()
    assert result.returncode == 2 and any(line.startswith("FAIL pulumi: the Pulumi CLI is not installed") for line in lines)
    assert lines[-1].startswith("pairing up: stopped before creating anything: ") and lines[-1].endswith(
        "fix each FAIL line above"), lines


def test_the_status_line_is_wiped_when_the_hook_stops_on_a_terminal():
    """What a terminal shows (the bytes a pty carries, played back): `stopped`, then the shell's prompt on a line
    of its own, never behind the last status line."""
    master, slave = os.openpty()
    try:
        with open(slave, "w", closefd=False) as terminal:
            console = Console(terminal)
            console.said("ready: guests can join now")
            console.status("listening on 192.0.2.1:2222 since 01:02:03 | no guests attached")
            console.close()  # the hook's finally, on Ctrl-C
            console.said("stopped")
            terminal.write("alice@vm:~$ ")  # the shell's prompt
            terminal.flush()
        shown = os.read(master, 65536).decode()
    finally:
        os.close(master), os.close(slave)
    screen = play(shown)
    assert screen[-2:] == ["stopped", "alice@vm:~$ "], screen
    assert "ready: guests can join now" in screen and not any("no guests attached" in line for line in screen)


def play(output: str) -> list[str]:
    """The lines a terminal shows for what was written: \\r back to the start, ESC[K wipes to the end."""
    lines, column = [""], 0
    output = output.replace("\r\n", "\n")  # the pty's own ONLCR
    i = 0
    while i < len(output):
        if output.startswith("\033[K", i):
            lines[-1] = lines[-1][:column]
            i += 3
            continue
        char = output[i]
        if char == "\r":
            column = 0
        elif char == "\n":
            lines.append("")
            column = 0
        else:
            lines[-1] = lines[-1][:column] + char + lines[-1][column + 1:]
            column += 1
        i += 1
    return lines


def test_invite_with_neither_a_direct_session_nor_pulumi_says_both(tmp_path):
    result = run("invite", home=tmp_path)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == ("pairing invite: the Pulumi CLI is not installed; install it, or pass --outputs FILE (JSON "
                             "from `pulumi stack output --json --show-secrets`); and no `pairing direct` runs as this "
                             "user (its invite needs no Pulumi)\n")
    assert list(tmp_path.iterdir()) == []
