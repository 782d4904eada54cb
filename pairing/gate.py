"""A guest's forced command: ask the running hook whether this guest may in, then become `tmux attach`.

sshd runs it (`exec python -I -S gate.py --control SOCKET --name NAME --session SESSION`, from the
guest's authorized_keys line) as the host user. It connects to the hook's control socket, says its
name (its PID the hook reads from the socket itself), and is answered:
  in    exec `tmux -S SOCKET attach [-r] -t =SESSION`, the same PID, which the hook maps to the name;
  wait  (the host asks per join) one line to the guest, then the same answers again;
  out   one line with the reason (kicked, denied, unanswered), exit 1: the connection ends.
No hook listening, or anything else unexpected: the guest is refused (fails closed).

Run as a script with -I -S: the standard library only, nothing of pairing's imported.
"""

import argparse
import json
import os
import socket
import stat
import sys

WAIT_AT_MOST = 75  # s: the hook answers within 60 s; past this it is surely gone


def refuse(reason: str) -> "None":
    sys.stdout.write(f"pairing: {reason}\n")
    sys.stdout.flush()
    sys.exit(1)


def mine(socket_path: str) -> bool:
    """Whether the tmux socket is (still) a socket of this user's, not a link: the hook checked its server
    before starting; if that server ended, whoever could then make one at the path must not get this guest."""
    try:
        found = os.lstat(socket_path)
    except OSError:
        return False
    return stat.S_ISSOCK(found.st_mode) and found.st_uid == os.geteuid()


def answers(control: str, name: str):
    """The hook's answers to our join, one dict a line."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(5)
    try:
        sock.connect(control)
    except OSError:
        refuse("the host's pairing is not running, so nobody is let in; ask them to start it")
    sock.sendall(json.dumps({"op": "join", "name": name}).encode() + b"\n")
    sock.settimeout(WAIT_AT_MOST)
    reader = sock.makefile("rb")
    while True:
        try:
            line = reader.readline(4096)
        except OSError:
            line = b""
        if not line:
            refuse("the host's pairing stopped before letting you in")
        try:
            answer = json.loads(line)
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            refuse("the host's pairing answered something this gate does not understand")
        yield answer


def main() -> None:
    parser = argparse.ArgumentParser(prog="pairing-gate")
    parser.add_argument("--control", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--session", required=True)
    parser.add_argument("--tmux-socket", required=True)
    parser.add_argument("--tmux", default="tmux")  # the hook's, by its path: sshd's PATH may not have it
    args = parser.parse_args()
    for answer in answers(args.control, args.name):
        verdict = answer.get("answer")
        if verdict == "wait":
            sys.stdout.write(f"waiting for {answer.get('host', 'the host')} to let you in\n")
            sys.stdout.flush()
        elif verdict == "in":
            if not mine(args.tmux_socket):
                refuse("the host's tmux server is gone; ask them to start pairing again")
            argv = ["tmux", "-S", args.tmux_socket, "attach"]
            argv += (["-r"] if answer.get("read_only") is not False else []) + ["-t", "=" + args.session]
            try:
                os.execvp(args.tmux, argv)  # our connection to the hook closes here (close-on-exec)
            except OSError as exc:
                refuse(f"tmux did not start on the host ({exc.strerror}); ask them to run pairing doctor")
        else:
            refuse(str(answer.get("reason") or "the host's pairing refused you"))


if __name__ == "__main__":
    main()
