"""What the bench runs on, all on this machine and all real.

Two relays booted from our user data by the test harness (tests/harness/deployment.py),
identical but for their host keys: `pairing host` holds the tunnel on one,
OpenSSH's `ssh -N -R` on the other, both into the host's one private sshd
(tests/harness/host.py). With both tunnels up at once, the bench can take turns
between them key by key, so that whatever else the machine does weighs on
both alike.

The host's tmux server has the session guests share (`pair`) and one
session per route for the one-guest measurements, so that an echo meant for
one route's guest is not also drawn, and sent, to the others.

Nothing here reads or writes the machine's own ~/.ssh, /etc/ssh or tmux
server: every file lives in the bench's temp folder.
"""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Iterator

from pairing.accounts import TUNNEL_USER
from pairing.forced_command import guest_line, tmux_attach_command
from pairing.hook.guests import LOOPBACK_SOURCES
from pairing.sshkeys import parse_public_key
from tests.harness import (Deployment, Guest, Hook, Tmux, client_env, deploy, hook_argv, hook_env, make_key, stop_process,
                           wait_until)

from .keystrokes import alphabets
from .terminal import GuestTerminal

ECHO_PANE = Path(__file__).resolve().parent / "echo_pane.py"
ROUTES = ("pairing", "openssh", "direct")  # through our tunnel, through OpenSSH's, straight to the host sshd
# With --baseline: also through a second `pairing host`, run from another source tree, on a third
# relay; an A/B of two versions of the hook in one run.
BASELINE = "baseline"
ALL_ROUTES = (*ROUTES, BASELINE)
BARE = "bare"  # the key whose forced command is `cat`: an echo without tmux or a terminal
READY = "ready: guests can join now"
TUNNEL_TIMEOUT = 60.0


# The key of the shared session's guests, by route: pairing's come in through the hook's gate (the
# baseline hook, another tree's, may have none: a bare tmux attach, as OpenSSH's route).
SHARED = {"pairing": "guest", "openssh": "guest2", BASELINE: "guest2"}


def solo(route: str) -> str:
    """The key, and the tmux session it attaches to, of a route's lone guest."""
    return f"solo-{route}"


class World:
    """The relays, the host's sshd and tmux; guests and tunnels are made on demand."""

    def __init__(self, folder: Path, stack: ExitStack, guests: int, payload_bytes: int, suite: str,
                 baseline: Path | None = None) -> None:
        self.folder = folder
        # deploy() reads guest2 and viewer too, for its default guest and viewer keys.
        names = ("guest", "guest2", "viewer", "host", BARE, *map(solo, ALL_ROUTES))
        self.keys = {name: make_key(folder / "keys", name) for name in names}
        self.alphabets = alphabets(guests)
        guest_keys = [self.keys[name].public_line for name in ("guest", "guest2", *map(solo, ALL_ROUTES))]
        self.pairing = deploy(folder / "relay-pairing", self.keys, suite=suite, guestKeys=guest_keys)
        self.sshd = self.pairing.host_sshd
        # The second relay's guests pin the one sshd that is started, the first deployment's.
        self.openssh = deploy(folder / "relay-openssh", self.keys, suite=suite, guestKeys=guest_keys,
                              hostSshdKey=self.sshd.host_key.public_line)
        self.relays = {"pairing": self.pairing, "openssh": self.openssh}
        self.baseline = baseline
        if baseline:
            self.relays[BASELINE] = deploy(folder / "relay-baseline", self.keys, suite=suite, guestKeys=guest_keys,
                                           hostSshdKey=self.sshd.host_key.public_line)
        for deployment in self.relays.values():
            stack.enter_context(deployment.relay)
        stack.callback(self.sshd.stop)
        self.sshd.start()
        self.tmux = self._start_tmux(stack)
        self.payload = folder / "payload"
        self.payload.write_bytes(os.urandom(payload_bytes))
        self._write_authorized_keys()
        self.invites = {name: self._invite(name) for name in self.relays}
        self._guests = 0

    @property
    def tunnel_port(self) -> int:
        return self.pairing.settings.tunnel_port

    @property
    def session(self) -> str:
        return self.pairing.settings.tmux_session

    def _start_tmux(self, stack: ExitStack) -> Tmux:
        """The host's sessions, each running the echo program; no config file of this machine is read."""
        tmux = Tmux(self.folder / "host.tmux")
        stack.callback(tmux.kill_server)
        sessions = {self.session: self.alphabets, **{solo(route): self.alphabets[:1] for route in ALL_ROUTES}}
        for name, keys in sessions.items():
            subprocess.run(["tmux", "-S", str(tmux.socket), "-f", "/dev/null", "new-session", "-d", "-s", name,
                            "-x", "80", "-y", "24", sys.executable, str(ECHO_PANE), *keys],
                           check=True, env={**os.environ, "HOME": str(self.folder / "home")})
        # The status line's clock redraws every 15 s, text that has nothing to do with the keys.
        tmux.run("set-option", "-g", "status", "off")
        return tmux

    def _write_authorized_keys(self) -> None:
        """The host's authorized_keys, standing, so that every route finds it.

        First the line of the shared session's guest on OpenSSH's route (guest2):
        the hook's options, with a bare `tmux attach` in place of the hook's gate,
        since that route has no hook to ask (the gate costs once a join, not a
        keystroke). The shared guest on pairing's route (guest) has no line here:
        the hook's own block, written while it runs, lets them in through its gate,
        as a real guest is. Then each route's lone guest, sent to a session of its
        own (bare `tmux attach`, as above); then the host's key, which the relay
        admits as a guest for the hook's self-test, with a forced command that
        sends the bulk payload; then the bare echo's key, whose command is `cat`.
        """
        shared = guest_line(parse_public_key(self.keys[SHARED["openssh"]].public_line),
                            tmux_attach_command(self.session, False, str(self.tmux.socket)), LOOPBACK_SOURCES)
        lines = [shared, *(self._line(solo(route), tmux_attach_command(solo(route), False, str(self.tmux.socket)))
                         for route in ALL_ROUTES), self._line("host", f"cat {self.payload}"), self._line(BARE, "cat")]
        path = self.pairing.authorized_keys
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n")

    def _line(self, key: str, command: str) -> str:
        return guest_line(parse_public_key(self.keys[key].public_line), command)

    def _invite(self, route: str) -> Path:
        path = self.folder / f"{route}.pairing.conf"
        path.write_text(self.deployment(route).outputs()["guestSshConfig"])
        return path

    def deployment(self, route: str) -> Deployment:
        return self.relays.get(route, self.pairing)

    # --- guests ----------------------------------------------------------------

    def guest_argv(self, route: str, key: str, *extra: str, wrap: tuple[str, ...] = ()) -> tuple[list[str], Path]:
        """An OpenSSH command line with only the route's invite and one key; and its log file."""
        self._guests += 1
        invite = self.invites.get(route, self.invites["pairing"])
        if route == "direct":  # the invite's host hop as it is, only without the jump through the relay
            extra = ("-o", "ProxyJump=none", "-o", "HostName=127.0.0.1", "-o", f"Port={self.sshd.port}", *extra)
        guest = Guest(self.folder / "guests", f"g{self._guests}", self.keys[key], invite, wrap)
        return guest.command(*extra), guest.log

    def terminal(self, route: str, shared: bool) -> GuestTerminal:
        """A guest at a terminal: in the shared session, or alone in the route's own."""
        argv, log = self.guest_argv(route, SHARED[route] if shared else solo(route))
        return GuestTerminal(argv, {**client_env(), "TERM": "xterm"}, log)

    def bare_terminal(self, route: str) -> GuestTerminal:
        """An echo without tmux: `ssh -T` to the host's sshd, whose forced command is `cat`.

        Through a tunnel it starts inside the relay and connects to the tunnel
        port there, as the relay's sshd does for a guest's jump: what a key pays
        beyond the direct route is then the tunnel's own cost (the relay's sshd,
        the carrier, the host's end), with no jump and no tmux to hide it.
        """
        if route == "direct":
            argv, log = self.guest_argv(route, BARE, "-T")
        else:
            relay = self.deployment(route).relay
            argv, log = self.guest_argv(route, BARE, "-T", "-o", "ProxyJump=none", "-o", "HostName=localhost",
                                        wrap=("ip", "netns", "exec", relay.netns))
        return GuestTerminal(argv, client_env(), log)

    def bulk_argv(self, route: str) -> tuple[list[str], Path]:
        """A guest command whose output is the payload (no pty: the bytes as they are)."""
        return self.guest_argv(route, "host", "-T")

    # --- the tunnels under test ------------------------------------------------

    def listening(self, route: str) -> bool:
        return f":{self.tunnel_port} " in self.deployment(route).relay.run(["ss", "-Hltn"]).stdout

    @contextmanager
    def openssh_tunnel(self) -> Iterator[subprocess.Popen]:
        """OpenSSH's own `ssh -N -R` holding the tunnel, logged in as the hook does."""
        argv = self.openssh.ssh_argv(TUNNEL_USER, "host", "-N", "-o", "ExitOnForwardFailure=yes",
                                     "-R", f"localhost:{self.tunnel_port}:127.0.0.1:{self.sshd.port}")
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, env=client_env())
        try:
            wait_until(lambda: self.listening("openssh") or process.poll() is not None, TUNNEL_TIMEOUT,
                       "ssh -R to listen")
            if process.poll() is not None:
                raise RuntimeError(f"ssh -R exited: {process.stderr.read().decode(errors='replace')}")
            yield process
        finally:
            stop_process(process)
            process.stderr.close()

    @contextmanager
    def hook(self, tunnel: str, route: str = "pairing") -> Iterator[Hook]:
        """`pairing host` as its own process, the way a person starts it; for BASELINE, from that source tree.

        The baseline hook writes its guests' block to its own deployment's authorized_keys, which
        nothing reads (the bench's standing lines let its guests in), so that the two hooks do not
        take each other for a second hook of the same host.
        """
        deployment = self.deployment(route)
        argv = hook_argv(deployment, deployment.outputs_file(), self.tmux, tunnel)
        argv[argv.index("--target") + 1] = f"127.0.0.1:{self.sshd.port}"
        prefix = ()
        if route == BASELINE:
            deployment.authorized_keys.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            deployment.authorized_keys.touch()
            prefix = ("env", f"--chdir={self.baseline}")  # so that `python -m pairing` is the baseline's
        hook = Hook(self.folder / "hooks", argv, hook_env(self.folder / ("home" if route == "pairing" else f"home-{route}")),
                    prefix)
        try:
            hook.wait_for(READY, timeout=TUNNEL_TIMEOUT)
            yield hook
        finally:
            hook.stop()
