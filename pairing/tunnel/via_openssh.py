"""The tunnel carried by OpenSSH's own `ssh -N -R`, supervised (`--tunnel openssh`).

The same tunnel as the paramiko carrier (via_paramiko.ParamikoTunnel) and the same
loop around it: pinned relay key, the self-test after each (re)connect,
keepalives, reconnects, the wait for a port the relay still holds. Only the
bytes take another road: through one C process instead of paramiko's
threads, which costs a keystroke about 0.4 ms less (bench/README.md).

What ssh does is read from its own log (`-v`, debug level 1: a few lines per
connection, none per packet): "remote forward success" is the listen taken,
"remote forward failure" a port still held.

ssh forwards to a port of the hook's (listener.WaitingListener), not to the
host's sshd: a channel is joined to sshd only once it has spoken (waiting.py),
and that listener says when your sshd does not answer.
"""

from __future__ import annotations

import ctypes
import math
import os
import queue
import signal
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import paramiko

from ..guest_documents import RELAY_ALIAS  # the name the relay's pinned key is filed under, as in the guest's
from ..sshkeys import PublicKey, public_key_of
from .loop import ReverseTunnel
from .pinning import CONNECT_TIMEOUT, HANDSHAKE_TIMEOUT, KEEPALIVE_INTERVAL, KEEPALIVE_TIMEOUT, host_key_mismatch
from .listener import WaitingListener
from .spec import TunnelEvents, TunnelLost, TunnelSpec

STOP_TIMEOUT = 5.0
PR_SET_PDEATHSIG = 1  # linux/prctl.h

# What ssh's log lines mean to the tunnel.
FORWARDED, PORT_HELD, EXITED = "forwarded", "port held", "exited"
_QUIET = ("debug", "OpenSSH_", "Authenticated to ", "Transferred: ", "Bytes per second: ")


def ssh_argv(spec: TunnelSpec, identity_file: Path, known_hosts: Path, to: tuple[str, int] | None = None) -> list[str]:
    """The ssh command line that holds the reverse forward (to `to`, else the spec's target): nothing of
    ~/.ssh/config, nothing but the forward.

    ssh takes the first value it is given for an option, so these come before anything else could.
    """
    relay = spec.relay
    host, port = to or spec.target
    target = f"[{host}]" if ":" in host else host
    options = {
        "BatchMode": "yes",  # no prompt: a key that needs a passphrase must be in the agent
        "StrictHostKeyChecking": "yes",
        "UserKnownHostsFile": str(known_hosts),
        "GlobalKnownHostsFile": "/dev/null",
        "HostKeyAlias": RELAY_ALIAS,
        "UpdateHostKeys": "no",
        "IdentitiesOnly": "yes",
        "IdentityFile": str(identity_file),
        "ExitOnForwardFailure": "yes",  # a port still held ends this ssh, and the loop asks again
        "ServerAliveInterval": str(int(KEEPALIVE_INTERVAL)),
        "ServerAliveCountMax": str(int(KEEPALIVE_TIMEOUT // KEEPALIVE_INTERVAL)),
        "ConnectTimeout": str(math.ceil(CONNECT_TIMEOUT)),
        "ConnectionAttempts": "1",
        "ControlMaster": "no",
        "ControlPath": "none",
        "ForwardAgent": "no",
        "ForwardX11": "no",
        "PermitLocalCommand": "no",
        "RequestTTY": "no",
        "IPQoS": "lowdelay",  # keystrokes; a session without a terminal would otherwise be marked bulk
    }
    argv = ["ssh", "-N", "-v", "-F", "/dev/null"]
    for name, value in options.items():
        argv += ["-o", f"{name}={value}"]
    argv += ["-p", str(relay.port), "-l", relay.user,
             "-R", f"localhost:{spec.tunnel_port}:{target}:{port}", "--", relay.address]
    return argv


def _die_with_parent(parent: int):
    """On Linux, ssh ends with the hook even if the hook is killed outright (SIGKILL, OOM).

    Else an orphaned ssh would hold the relay's port for good, and the next
    `pairing host` would find it taken. Elsewhere there is no such call; Ctrl-C,
    SIGTERM and SIGHUP stop ssh as they stop the hook.
    """
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up here: the child only calls it

    def arm() -> None:  # in the child, before exec
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the hook died before the call
            os._exit(1)

    return arm


def known_hosts_text(pinned: tuple[PublicKey, ...]) -> str:
    return "".join(f"{RELAY_ALIAS} {key.kind} {key.blob}\n" for key in pinned)


class OpenSSHTunnel(ReverseTunnel):
    """The reverse forward held by a supervised `ssh -N -R`."""

    name = "openssh"
    port_held_retry = 0.5  # each time a new ssh and a new login on the relay, so not quite as often

    def __init__(self, spec: TunnelSpec, events: TunnelEvents, give_up_at: float | None = None) -> None:
        super().__init__(spec, events, give_up_at)
        self.process: subprocess.Popen | None = None
        self.heard: queue.Queue = queue.Queue()  # what ssh's log says, as (FORWARDED|PORT_HELD|EXITED, payload)
        self.folder: Path | None = None
        self.listener: WaitingListener | None = None  # made by the first _start, kept across reconnects

    def run(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="pairing-ssh-"))  # mode 700
        try:
            (self.folder / "known_hosts").write_text(known_hosts_text(self.spec.relay.pinned))
            super().run()
        finally:
            if self.listener is not None:
                self.listener.close()
            shutil.rmtree(self.folder, ignore_errors=True)

    def _identity_file(self) -> Path:
        if self.spec.identity_file is not None:
            return self.spec.identity_file
        # The key is the agent's: naming its public half makes ssh ask the agent for that key alone.
        public = self.folder / "identity.pub"
        public.write_text(public_key_of(self.spec.identity).bare + "\n")
        return public

    def _open(self) -> None:
        waited_since = None
        while not self.stopping.is_set():
            if self._start():
                return
            self._close()
            waited_since = self._port_held(waited_since)
        raise TunnelLost("stopped")

    def _start(self) -> bool:
        """Start ssh; True once the relay listens for us, False if it said the port is taken."""
        if self.listener is None:
            self.listener = WaitingListener(self.spec.target, self.waiting, self._target_refused, self._target_answered)
        argv = ssh_argv(self.spec, self._identity_file(), self.folder / "known_hosts", ("127.0.0.1", self.listener.port))
        self.heard = queue.Queue()
        self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, text=True, errors="replace",
                                        preexec_fn=_die_with_parent(os.getpid()))
        threading.Thread(target=self._read, args=(self.process, self.heard), name="pairing-ssh-log",
                         daemon=True).start()
        deadline = time.monotonic() + math.ceil(CONNECT_TIMEOUT) + HANDSHAKE_TIMEOUT
        while True:
            try:
                kind, payload = self.heard.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise TunnelLost("the relay did not let us log in in time") from None
            if kind == FORWARDED:
                return True
            if kind == PORT_HELD:
                return False
            if kind == EXITED:
                raise self._failure(payload)

    def _watch(self) -> None:
        while not self.stopping.is_set():
            try:
                kind, payload = self.heard.get(timeout=KEEPALIVE_INTERVAL)
            except queue.Empty:
                self._check_ttl(connected=True)
                continue
            if kind == EXITED and not self.stopping.is_set():
                raise self._failure(payload)

    def _close(self) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def _read(self, process: subprocess.Popen, heard: queue.Queue) -> None:
        """ssh's log, line by line, as events; the last line that says something explains an exit."""
        last, fingerprint = "", ""
        for line in process.stderr:
            line = line.strip()
            if "remote forward success for:" in line:
                heard.put((FORWARDED, line))
            elif "remote forward failure for:" in line:
                heard.put((PORT_HELD, line))
            elif line.startswith("SHA256:"):
                fingerprint = line.rstrip(".")
            elif line and not line.startswith(_QUIET) and not line.startswith("Error: remote port forwarding"):
                last = line
        process.stderr.close()
        code = process.wait()
        heard.put((EXITED, (f"{last or 'ssh ended'} (exit {code})", fingerprint)))

    def _failure(self, ended: tuple[str, str]) -> Exception:
        """ssh's last words -> what the loop makes of them (fatal, or lost and retried)."""
        reason, fingerprint = ended
        if "Host key verification failed" in reason:
            return host_key_mismatch(self.spec.relay, fingerprint or "another key")
        if "Permission denied" in reason:
            return paramiko.AuthenticationException(reason)
        if "not responding" in reason:  # "Timeout, server ... not responding."
            return TunnelLost("the relay stopped answering")
        return TunnelLost(reason)
