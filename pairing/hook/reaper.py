"""The watcher between the hook and its sshd: `python -I -S reaper.py PARENT SSHD ARGS...`.

Each connection's sshd calls setsid(): neither the listener's death nor a signal to its group
reaches them. So this watcher (a subreaper, dying with the hook by PR_SET_PDEATHSIG) owns the
listener, inherits every orphan and ends them all. Run as a script, isolated and without site
(the standard library only), so it starts in milliseconds; Linux only (prctl, /proc).
"""

import ctypes
import os
import signal
import sys
import time

PR_SET_PDEATHSIG, PR_SET_CHILD_SUBREAPER = 1, 36
GRACE = 3.0  # seconds of SIGTERM before SIGKILL
prctl = ctypes.CDLL(None).prctl


def die_with(parent: int) -> None:
    """SIGTERM when `parent` dies; and it may have died before the call."""
    prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:
        os._exit(1)


def stop(*_) -> None:
    raise KeyboardInterrupt


def children(me: int) -> list[int]:
    """By each /proc/N/stat's parent: /proc/N/task/N/children is not in every kernel."""
    found = []
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{name}/stat") as stat:
                if int(stat.read().rpartition(")")[2].split()[1]) == me:
                    found.append(int(name))
        except (OSError, ValueError, IndexError):
            pass
    return found


def end_all(me: int) -> None:
    """TERM first (the listener removes its PID file), KILL past GRACE."""
    deadline = time.monotonic() + GRACE
    while left := children(me):
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL if time.monotonic() > deadline else signal.SIGTERM)
            except ProcessLookupError:
                pass
        time.sleep(0.02)
        try:
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        except ChildProcessError:
            pass


def main() -> int:
    die_with(int(sys.argv[1]))
    prctl(PR_SET_CHILD_SUBREAPER, 1)  # every orphaned descendant becomes ours
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C is the hook's, which stops us in order
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, stop)
    me, status = os.getpid(), 1
    listener = os.fork()
    if listener == 0:
        die_with(me)
        os.execv(sys.argv[2], sys.argv[2:])
    try:
        status = os.waitstatus_to_exitcode(os.waitpid(listener, 0)[1])
    except KeyboardInterrupt:
        pass
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    end_all(me)
    return status if status >= 0 else 1


if __name__ == "__main__":
    sys.exit(main())
