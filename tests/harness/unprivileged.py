"""A host user with nothing: uid 65534 with a temp home (no ~/.ssh), an account in a private passwd
bind-mounted in a mount namespace, a /dev/pts that gives terminals the tty group (as systemd mounts it;
this machine's has no gid=5) and an empty /etc/ssh there, so nothing of the system sshd's is read.
For `pairing host`'s own sshd; the machine's own ~/.ssh, /etc/ssh and /etc/passwd are never touched.

uid 65534 may not reach this checkout, nor the tests' venv (a clone in /root, mode 700): it runs pairing
as a user installs it, the wheel of this checkout in a venv of the system's python that every uid may
read (installed.py), from its own home, so nothing of the checkout is on its path.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from .host import wait_until
from .installed import installed

NOBODY = 65534
USER = "pairtest"  # uid 65534's name in the private passwd (nss-systemd calls "nobody" locked)


class UnprivilegedHost:
    def __init__(self) -> None:
        self.top = Path(tempfile.mkdtemp(prefix="pairing-own-"))  # outside root's 0700 pytest folder
        self.top.chmod(0o755)
        self.home = self.top / "home"
        self.home.mkdir(mode=0o700)
        os.chown(self.home, NOBODY, NOBODY)
        self.passwd = self.top / "passwd"
        entries = [line for line in Path("/etc/passwd").read_text().splitlines() if line.split(":")[2] != str(NOBODY)]
        self.passwd.write_text("\n".join(entries + [f"{USER}:x:{NOBODY}:{NOBODY}::{self.home}:/bin/sh"]) + "\n")
        self.passwd.chmod(0o644)
        self.empty = self.top / "empty"
        self.empty.mkdir()

    def give(self, source: Path, name: str) -> Path:
        """A copy of a file of ours (e.g. the host's private key) in the home, uid 65534's, mode 600."""
        path = self.home / name
        shutil.copyfile(source, path)
        os.chown(path, NOBODY, NOBODY)
        path.chmod(0o600)
        return path

    def prefix(self, *, python: bool = True, binds: tuple[tuple[Path, str], ...] = ()) -> tuple[str, ...]:
        """What runs a command as uid 65534 in its namespace, in its home. python: the command's first
        word (the tests' interpreter, as Hook gives it) is replaced by the installed copy's. binds: (our
        file, the path it is seen at there), e.g. a system startup file."""
        mounts = ['mount --bind "$0" /etc/passwd', 'mount --bind "$1" /etc/ssh',
                  "mount -t devpts -o newinstance,gid=5,mode=620,ptmxmode=666 devpts /dev/pts",
                  "mount --bind /dev/pts/ptmx /dev/ptmx",
                  *(f"mount --bind {shlex.quote(str(ours))} {shlex.quote(seen)}" for ours, seen in binds), 'cd "$2"']
        run = (f'shift {3 if python else 2} && exec setpriv --reuid={NOBODY} --regid={NOBODY} --clear-groups '
               f'{installed().python if python else ""} "$@"')
        return ("unshare", "--mount", "--propagation", "private", "sh", "-c", " && ".join([*mounts, run]),
                str(self.passwd), str(self.empty), str(self.home))

    @property
    def env(self) -> dict[str, str]:
        """No agent, no XDG folders, no tmux of this machine's user."""
        return {"HOME": str(self.home), "PATH": os.environ["PATH"], "PYTHONDONTWRITEBYTECODE": "1",
                "PYTHONUNBUFFERED": "1", "SHELL": "/bin/sh", "LANG": "C.UTF-8"}

    def pairing(self, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess:
        """`python -m pairing ARGV` as uid 65534."""
        return subprocess.run([*self.prefix(), "python", "-m", "pairing", *argv], env=self.env, cwd=self.top,
                              capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)

    def remove(self) -> None:
        shutil.rmtree(self.top, ignore_errors=True)


def descendants(pid: int) -> dict[int, str]:
    """Every process below `pid`, by PID, with its start time (so a reused PID is not mistaken for it)."""
    parents = {}
    for name in os.listdir("/proc"):
        try:
            fields = Path(f"/proc/{name}/stat").read_text().rpartition(")")[2].split()
            parents[int(name)] = (int(fields[1]), fields[19])
        except (OSError, ValueError):
            pass
    found, frontier = {}, [pid]
    while frontier:
        at = frontier.pop()
        for child, (ppid, started) in parents.items():
            if ppid == at and child not in found:
                found[child] = started
                frontier.append(child)
    return found


def alive(processes: dict[int, str]) -> list[str]:
    """The command lines of those still running (not zombies)."""
    left = []
    for pid, started in processes.items():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            if fields[19] == started and fields[0] != "Z":
                left.append(Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " "))
        except OSError:
            pass
    return left


def listeners(port: int) -> list[str]:
    """`ss -Hltnp`'s lines for whatever listens on TCP `port`, on any address."""
    out = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if line.split()[3].rpartition(":")[2] == str(port)]


def ends_with_the_hook(hook, how: str, guest, port: int) -> None:
    """Signal a hook that runs its own sshd (`how`: SIGINT, SIGTERM, SIGKILL) with `guest` in: then
    every process of that sshd, its port and the guest's session are gone, and a hook that could
    say so stopped cleanly."""
    processes = descendants(hook.process.pid)
    assert [c for c in alive(processes) if f"{USER}@pts/" in c], alive(processes)  # the guest's session sshd
    hook.process.send_signal(getattr(signal, how))
    hook.process.wait(15)
    wait_until(lambda: not alive(processes), 10, "every process of the sshd to end", show=lambda: str(alive(processes)))
    assert listeners(port) == []
    wait_until(lambda: "GUEST-SSH-EXITED" in guest.screen, 15, "the guest to be let go", show=lambda: guest.screen)
    if how != "SIGKILL":
        assert hook.process.returncode == 0, hook.text
        assert hook.text.rstrip().endswith("stopped") and "Traceback" not in hook.text, hook.text
        assert f"pairing: {USER} ended the session" in guest.screen, guest.screen  # told, last thing they see
