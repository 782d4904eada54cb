"""AuthorizedKeysFile against the real file system and real other processes: a shell
appending keys the way ssh-copy-id does while the hook puts its block in and takes it
out, a root-owned file edited by an unprivileged user (setpriv), a crash's leftovers."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from pairing.authorized_keys import BEGIN, END, AuthorizedKeysFile, with_block

from .harness import wait_until
from .harness.installed import installed

MINE = b"# mine\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHBhaXJpbmcgZXhhbXBsZSBob3N0OyByZXBsYWNlLS0t me@laptop\n"
LINES = ['restrict,pty,command="tmux attach -t =pair" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGd1ZXN0 guest@test']
NOBODY = 65534


def block_of(text: str) -> list[str]:
    lines = text.split("\n")
    start = next(i for i, line in enumerate(lines) if line.startswith(BEGIN))
    return lines[start + 1 : lines.index(END, start)]


# Like ssh-copy-id: `>>` from another process, one key line per open; paced (a few hundred
# a second) so the file stays small enough to rewrite 200 times.
APPENDER = """
i=0
while [ ! -e "$1.stop" ]; do
    i=$((i+1))
    echo "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGNvcGllZA copied-$i" >> "$1"
    sleep 0.001
done
echo "$i" > "$1.count"
"""


def test_concurrent_appends_survive_install_and_remove(tmp_path):
    path = tmp_path / ".ssh" / "authorized_keys"
    path.parent.mkdir(mode=0o700)
    path.write_bytes(MINE)
    keys = AuthorizedKeysFile(path)
    appender = subprocess.Popen(["sh", "-c", APPENDER, "sh", str(path)])
    try:
        wait_until(lambda: b"copied-20" in path.read_bytes(), 10, "the appender to get going")
        for _ in range(100):
            keys.install(LINES)
            assert block_of(path.read_text()) == LINES  # the block comes out exact, every time
            assert keys.remove()
            assert BEGIN not in path.read_text()
    finally:
        Path(f"{path}.stop").touch()
        appender.wait(10)
    count = int(Path(f"{path}.count").read_text())
    text = path.read_bytes()
    assert text.startswith(MINE)
    copied = text[len(MINE):].decode().splitlines()
    whole = [re.fullmatch(r"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGNvcGllZA copied-(\d+)", line) for line in copied]
    lost = sorted(set(range(1, count + 1)) - {int(m[1]) for m in whole if m})
    print(f"{count} lines appended during 100 install/remove cycles, {len(lost)} lost")
    assert lost == []
    assert all(whole) and len(copied) == count  # each once, whole


def test_append_to_a_file_without_final_newline_does_not_join_lines(tmp_path):
    """A block that had to add a newline, then a line appended after it: taking the block
    out keeps the appended line a line of its own."""
    path = tmp_path / "authorized_keys"
    path.write_bytes(MINE.rstrip(b"\n"))
    keys = AuthorizedKeysFile(path)
    keys.install(LINES)
    with path.open("ab") as out:
        out.write(b"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGNvcGllZA copied-1\n")
    assert keys.remove()
    assert path.read_bytes() == MINE + b"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGNvcGllZA copied-1\n"


# --- owners ------------------------------------------------------------------------------


@pytest.fixture()
def nobodys_home():
    """A home of uid 65534 outside root's 0700 pytest folder, so that user can reach it."""
    top = Path(tempfile.mkdtemp(prefix="pairing-nobody-"))
    home = top / "home"
    (home / ".ssh").mkdir(parents=True)
    for folder in (top, home, home / ".ssh"):
        os.chown(folder, NOBODY, NOBODY)
    (home / ".ssh").chmod(0o700)
    top.chmod(0o755)
    yield home
    shutil.rmtree(top)


def as_nobody(code: str, home: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", str(installed().python), "-c", code],
        cwd=home, env={"HOME": str(home), "PATH": os.environ["PATH"], "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )


INSTALL = f"""
import sys
from pathlib import Path
from pairing.authorized_keys import AuthorizedKeysError, AuthorizedKeysFile
try:
    AuthorizedKeysFile(Path(sys.argv[1] if len(sys.argv) > 1 else "{{path}}")).install({LINES!r})
except AuthorizedKeysError as exc:
    print(exc)
    sys.exit(1)
"""


def test_root_owned_file_is_refused_by_its_user_untouched(nobodys_home):
    """The admin's file in the user's ~/.ssh: replacing it would hand it to the user. Refused, naming owner and fix."""
    path = nobodys_home / ".ssh" / "authorized_keys"
    path.write_bytes(MINE)
    path.chmod(0o644)  # root's
    result = as_nobody(INSTALL.replace("{path}", str(path)), nobodys_home)
    assert result.returncode == 1, result.stderr
    assert result.stdout == (
        f"{path} belongs to root (uid 0), not to you (nobody): editing it would make it yours; "
        f"give it to you (sudo chown nobody {path}) or pass --authorized-keys with a file of yours that sshd reads\n"
    )
    assert path.read_bytes() == MINE and (path.stat().st_uid, path.stat().st_mode & 0o777) == (0, 0o644)
    assert sorted(os.listdir(path.parent)) == ["authorized_keys"]


def test_users_own_file_is_edited_and_stays_theirs(nobodys_home):
    path = nobodys_home / ".ssh" / "authorized_keys"
    path.write_bytes(MINE)
    os.chown(path, NOBODY, NOBODY)
    path.chmod(0o600)
    result = as_nobody(INSTALL.replace("{path}", str(path)), nobodys_home)
    assert result.returncode == 0, result.stdout + result.stderr
    assert path.read_text() == with_block(MINE.decode(), LINES)
    assert (path.stat().st_uid, path.stat().st_mode & 0o777) == (NOBODY, 0o600)


def test_root_keeps_the_owner_of_a_users_file(tmp_path):
    path = tmp_path / "authorized_keys"
    path.write_bytes(MINE)
    os.chown(path, NOBODY, NOBODY)
    keys = AuthorizedKeysFile(path)
    keys.install(LINES)
    assert path.stat().st_uid == NOBODY
    assert keys.remove()
    assert path.read_bytes() == MINE and path.stat().st_uid == NOBODY


# --- a crash's leftovers -------------------------------------------------------------------


def test_stale_temp_files_of_ours_are_cleaned_others_kept(tmp_path):
    """What a SIGKILL in the middle of a write leaves (mkstemp's names), cleaned when the lock is ours."""
    folder = tmp_path / ".ssh"
    folder.mkdir()
    path = folder / "authorized_keys"
    path.write_bytes(MINE)
    ours = [".authorized_keys.k2j_x9aq.pairing", ".authorized_keys.00000000.pairing"]
    others = [".authorized_keys.swp", ".authorized_keys.abc.pairing", "authorized_keys.k2j_x9aq.pairing", "known_hosts"]
    for name in ours + others:
        (folder / name).write_bytes(b"half a file")
    (folder / ".authorized_keys.linkxxxx.pairing").symlink_to(path)  # not a file we made
    removed = AuthorizedKeysFile(path).clean_leftovers()
    assert sorted(removed) == sorted(ours)
    assert sorted(os.listdir(folder)) == sorted(["authorized_keys", ".authorized_keys.linkxxxx.pairing", *others])
    assert path.read_bytes() == MINE


def test_pairing_host_as_the_user_refuses_a_root_owned_file_before_anything(nobodys_home, keys):
    """The whole command, as uid 65534: one line, exit 2, before preflight (no relay needed to get there)."""
    import json

    from pairing.outputs import render_outputs
    from pairing.settings import settings_from
    from pairing.sshkeys import parse_public_key

    settings = settings_from({"guestKeys": [keys["guest"].public_line], "hostPublicKey": keys["host"].public_line,
                              "hostSshdKey": keys["sshd"].public_line})
    outputs = nobodys_home / "outputs.json"
    outputs.write_text(json.dumps(render_outputs(settings, relay_address="203.0.113.10", instance_id="i-0abc",
                                                 relay_host_key=parse_public_key(keys["stranger"].public_line),
                                                 launch_time="2030-01-01T00:00:00Z")))
    path = nobodys_home / ".ssh" / "authorized_keys"
    path.write_bytes(MINE)
    path.chmod(0o644)
    result = subprocess.run(
        ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", str(installed().pairing),
         "host", "--outputs", str(outputs), "--authorized-keys", str(path), "--target", "127.0.0.1:9"],
        cwd=nobodys_home, env={"HOME": str(nobodys_home), "PATH": os.environ["PATH"], "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )
    assert (result.returncode, result.stdout) == (2, ""), result.stdout + result.stderr
    assert result.stderr == (
        f"pairing host: {path} belongs to root (uid 0), not to you (nobody): editing it would make it yours; "
        f"give it to you (sudo chown nobody {path}) or pass --authorized-keys with a file of yours that sshd reads\n"
    )
    assert path.read_bytes() == MINE and path.stat().st_uid == 0
    assert sorted(os.listdir(path.parent)) == ["authorized_keys"]
