"""`pairing host`: the post-deploy hook on the host.

Checks everything it can before touching anything, then: the tmux session
exists, the guests' keys are in authorized_keys (forced to `tmux attach`),
the reverse tunnel is held and proven end to end, and a status line shows
the tunnel and who is attached. On exit, authorized_keys gets back exactly
what it had.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import ipaddress
import getpass
import hashlib
import json
import os
import shutil
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import paramiko
from cryptography.exceptions import UnsupportedAlgorithm

from . import guest_documents
from .authorized_keys import AuthorizedKeysError, AuthorizedKeysFile, guest_line, tmux_attach_command
from .outputs import StackOutputs
from .accounts import GUEST_USER, TUNNEL_USER
from .sshkeys import PublicKey, host_key_algorithms, is_fido, is_key, parse_public_key, public_half, public_key_of
from .tmux import Tmux, TmuxError
from .tunnel import CARRIERS, Endpoint, HostKeyMismatch, OpenSSHTunnel, State, TunnelFatal, TunnelSpec, handshake
from .tunnel.spec import reason

TUNNELS = CARRIERS

DEFAULT_IDENTITIES = ("id_ed25519", "id_ecdsa", "id_rsa")
SSHD_PROBE_TIMEOUT = 3.0
RELAY_PROBE_TIMEOUT = 10.0
STATUS_EVERY = 1.0
GIVE_UP_GRACE = 120  # seconds past expiresAt before the relay is surely gone


class PreflightError(RuntimeError):
    """One line: what is wrong and how to fix it. Nothing was changed."""


@dataclass(frozen=True)
class HostOptions:
    outputs: StackOutputs
    identity: Path | None
    target: tuple[str, int]
    authorized_keys: Path
    tmux_socket: str | None = None
    tunnel: str = "paramiko"  # a key of TUNNELS
    invite: Path | None = None  # the guest's ssh config, where `pairing up` wrote it


# --- preflight ------------------------------------------------------------


@dataclass(frozen=True)
class Identity:
    key: paramiko.PKey
    path: Path | None  # None: the ssh agent's
    needs_passphrase: bool = False


def load_identity(path: Path | None, expected: PublicKey, tunnel: str = "paramiko") -> Identity:
    """The private key of hostPublicKey: the given file, else ~/.ssh/id_*, else the agent.

    A file with a passphrase: the agent's copy of its key if the agent holds it, else the
    passphrase asked on the terminal (the paramiko tunnel only: ssh runs without a terminal).
    """
    if is_fido(expected):
        raise PreflightError(fido_refusal("pairing:hostPublicKey", expected))
    candidates = [path] if path else [Path.home() / ".ssh" / name for name in DEFAULT_IDENTITIES]
    tried = []
    for candidate in candidates:
        if not candidate.exists():
            if path:
                raise PreflightError(f"--identity {candidate}: no such file; pass the private key of pairing:hostPublicKey")
            continue
        identity, found = _read_private_key(candidate, expected, tunnel)
        if identity is not None:
            return identity
        tried.append(f"{candidate} ({found.fingerprint})")
        if path:
            raise PreflightError(
                f"--identity {candidate} is {found.fingerprint}, but the relay expects {expected.fingerprint} "
                "(pairing:hostPublicKey); pass the matching private key"
            )
    agent_key = _agent_key(expected)
    if agent_key is not None:
        return Identity(agent_key, None)
    raise PreflightError(
        f"no private key for {expected.fingerprint} (pairing:hostPublicKey) in "
        f"{', '.join(tried) or 'the default ~/.ssh/id_* files'} or the ssh agent; pass --identity PATH"
    )


def fido_refusal(setting: str, key: PublicKey) -> str:
    """Why a FIDO (sk-) key cannot be the host's identity, whichever carries the tunnel.

    Only OpenSSH's ssh can sign with a token. The tunnel's login could go through ssh
    (--tunnel openssh), but the self-test that proves the guests' path after every
    (re)connect logs in with paramiko, as `pair`, with the same key; and a token
    would want a touch at every reconnect of an unattended tunnel.
    """
    return (
        f"{setting} is a FIDO key ({key.kind}), which `pairing host` cannot use with either --tunnel: paramiko "
        "cannot sign with FIDO keys, and the self-test after every (re)connect logs in with paramiko even under "
        "--tunnel openssh; give the host a plain key (ssh-keygen -t ed25519) for hostPublicKey (guests may use FIDO keys)"
    )


def _agent_key(expected: PublicKey) -> paramiko.PKey | None:
    try:
        keys = paramiko.Agent().get_keys()
    except (paramiko.SSHException, OSError):  # SSH_AUTH_SOCK names no agent that answers
        return None
    return next((key for key in keys if _same_key(key, expected)), None)


def _read_private_key(path: Path, expected: PublicKey, tunnel: str) -> tuple[Identity | None, PublicKey]:
    """The identity in this file if it is hostPublicKey's (else None), and the key the file holds."""
    try:
        text = path.read_text()
        key = paramiko.PKey.from_path(path)
    except (TypeError, paramiko.PasswordRequiredException):  # paramiko 5 says "password-protected" with TypeError
        return _locked_key(path, text, expected, tunnel)
    except (UnsupportedAlgorithm, paramiko.UnknownKeyType) as exc:  # e.g. a FIDO key's file: paramiko cannot sign
        found = public_half(text)
        if found is None:
            raise PreflightError(f"cannot read the identity {path}: {exc}; pass --identity with an OpenSSH private key") from None
        return None, found  # not hostPublicKey's, which is never a FIDO key here
    except (OSError, paramiko.SSHException, ValueError, UnicodeDecodeError) as exc:
        raise PreflightError(f"cannot read the identity {path}: {exc}; pass --identity with an OpenSSH private key") from None
    found = public_key_of(key)
    return (Identity(key, path) if _same_key(key, expected) else None), found


def _locked_key(path: Path, text: str, expected: PublicKey, tunnel: str) -> tuple[Identity | None, PublicKey]:
    """A key with a passphrase: which key it is needs none (OpenSSH files carry the public half in the clear)."""
    found = public_half(text)
    if found is not None and found.blob != expected.blob:
        return None, found  # not hostPublicKey's: nothing to ask for
    agent_key = _agent_key(expected)
    if agent_key is not None:
        return Identity(agent_key, None), expected
    if tunnel == OpenSSHTunnel.name:
        raise PreflightError(f"--tunnel openssh cannot ask for the passphrase of {path}; add the key to "
                             f"ssh-agent first (ssh-add {path}) or leave out --tunnel")
    if not sys.stdin.isatty():
        raise PreflightError(f"{path} needs a passphrase and there is no terminal to ask it on; add the key to "
                             f"ssh-agent first (ssh-add {path}) or run pairing in a terminal")
    try:
        passphrase = getpass.getpass(f"passphrase for {path}: ")
    except EOFError:  # Ctrl-D
        raise PreflightError(f"no passphrase given for {path}; run again and type it, or add the key to ssh-agent "
                             f"(ssh-add {path})") from None
    try:
        key = paramiko.PKey.from_path(path, passphrase.encode())
    except (TypeError, ValueError, paramiko.SSHException):
        raise PreflightError(f"wrong passphrase for {path}; run again and type it, or add the key to ssh-agent "
                             f"(ssh-add {path})") from None
    found = public_key_of(key)
    return (Identity(key, path, needs_passphrase=True) if _same_key(key, expected) else None), found


def _same_key(key: paramiko.PKey, expected: PublicKey) -> bool:
    return is_key(key, expected)


def probe_sshd(target: tuple[str, int], pinned: PublicKey) -> None:
    """The host's sshd answers on the target and presents the key guests will pin."""
    host, port = target
    try:
        sock = socket.create_connection(target, timeout=SSHD_PROBE_TIMEOUT)
    except OSError as exc:
        raise PreflightError(
            f"no sshd answers on {host}:{port} ({reason(exc)}); start it (Debian/Ubuntu: sudo systemctl start ssh; "
            "macOS: enable Remote Login) or pass --target HOST:PORT"
        ) from None
    transport = paramiko.Transport(sock)
    try:
        transport.get_security_options().key_types = host_key_algorithms([pinned])
        transport.start_client(timeout=SSHD_PROBE_TIMEOUT * 3)
        presented = transport.get_remote_server_key()
    except (paramiko.SSHException, EOFError, OSError) as exc:
        raise PreflightError(f"{host}:{port} does not speak SSH ({exc}); pass --target with your sshd's address") from None
    finally:
        transport.close()
    if not _same_key(presented, pinned):
        raise PreflightError(
            f"your sshd on {host}:{port} presents {public_key_of(presented).fingerprint}, "
            f"but guests will pin {pinned.fingerprint} (pairing:hostSshdKey); set that to your sshd's key and run pulumi up"
        )


def probe_relay(relay: Endpoint) -> None:
    """The relay answers and shows its pinned key; a mismatch stops everything here."""
    try:
        handshake(relay, connect_timeout=RELAY_PROBE_TIMEOUT).close()
    except HostKeyMismatch as exc:
        raise PreflightError(str(exc)) from None
    except (OSError, EOFError, paramiko.SSHException) as exc:
        raise PreflightError(
            f"cannot reach the relay at {relay.address}:{relay.port} ({reason(exc)}); check that "
            "pairing:allowedCidrs includes your address and that the relay is running (see expiresAt)"
        ) from None


def preflight(options: HostOptions) -> Identity:
    outputs = options.outputs
    if not Tmux.installed():
        raise PreflightError("tmux is not installed; install it (Debian/Ubuntu: sudo apt install tmux; macOS: brew install tmux)")
    if options.tunnel == OpenSSHTunnel.name and shutil.which("ssh") is None:
        raise PreflightError("--tunnel openssh needs OpenSSH's ssh; install it (Debian/Ubuntu: sudo apt install "
                             "openssh-client) or leave out --tunnel")
    expected = outputs.host_public_key
    identity = load_identity(options.identity, expected, options.tunnel)
    probe_sshd(options.target, outputs.host_sshd_key)
    probe_relay(relay_endpoint(outputs, TUNNEL_USER))
    return identity


def relay_endpoint(outputs: StackOutputs, user: str) -> Endpoint:
    return Endpoint(outputs.relay_address, outputs.relay_port, user, outputs.relay_host_keys)


# --- the run --------------------------------------------------------------


def hook_running(authorized_keys: Path) -> bool:
    """Whether a `pairing host` (or `up`) holds the lock for this authorized_keys file."""
    return read_state(authorized_keys).running


def state_file(authorized_keys: Path) -> Path:
    """Where a running hook says how it is, for `pairing status` and a second run: one per real
    authorized_keys file (a symlink and its target are one file)."""
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    digest = hashlib.sha256(os.path.realpath(authorized_keys).encode("utf-8", "surrogateescape")).hexdigest()[:12]
    return base / "pairing" / f"host-{digest}.json"


@dataclass(frozen=True)
class HookRecord:
    """What a running hook wrote about itself, parsed; believed only while its pid holds the lock."""

    pid: int
    started: float
    command: str  # "host", "up" or "down": what the user ran
    tunnel: str | None = None
    state: State | None = None  # None: no tunnel state yet
    since: float | None = None

    @classmethod
    def parse(cls, text: str) -> "HookRecord | None":
        try:
            data = json.loads(text)
            record = cls(int(data["pid"]), float(data["started"]), str(data["command"]),
                         data.get("tunnel"), State(data["state"]) if data.get("state") else None,
                         float(data["since"]) if data.get("since") is not None else None)
        except (ValueError, TypeError, KeyError, AttributeError):
            return None
        ok = (record.pid > 0 and record.command in ("host", "up", "down") and record.tunnel in (None, *TUNNELS)
              and (record.state is None) == (record.since is None))
        return record if ok else None

    def render(self) -> str:
        return json.dumps({"pid": self.pid, "started": self.started, "command": self.command, "tunnel": self.tunnel,
                           "state": self.state.value if self.state else None, "since": self.since})


@dataclass(frozen=True)
class HookStatus:
    """Whether a hook runs for an authorized_keys file, and what it says (when it is surely its word)."""

    running: bool
    pid: int | None = None  # the lock holder's, when the system tells (Linux) or its record is believed
    record: HookRecord | None = None

    def describe(self, real: Path) -> str:
        """The one line a second run refuses with."""
        what = f"`pairing {self.record.command}`" if self.record else "`pairing host`"
        since = f", since {dt.datetime.fromtimestamp(self.record.started):%Y-%m-%d %H:%M:%S}" if self.record else ""
        pid = f" (pid {self.pid}{since})" if self.pid else ""
        stop = f"Ctrl-C in its terminal, or kill {self.pid}" if self.pid else "Ctrl-C in its terminal"
        return f"another {what} is already running for {real}{pid}; stop it first: {stop}"


def publish_state(path: Path, record: HookRecord) -> None:
    """Atomically, so `pairing status` never reads half a file; best effort: only status would miss it."""
    temp = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        temp.write_text(record.render())
        os.replace(temp, path)
    except OSError:
        with contextlib.suppress(OSError):
            temp.unlink()


def read_state(authorized_keys: Path) -> HookStatus:
    """Is a hook running for this file, and what does it say? A record left by a killed hook
    (or not yet rewritten by a new one) is not believed: its pid must be the lock's holder."""
    folder = Path(os.path.realpath(authorized_keys)).parent
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return HookStatus(False)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pass
        else:
            return HookStatus(False)  # (closing fd releases it)
        holder = _lock_holder(os.fstat(fd))
    finally:
        os.close(fd)
    try:
        record = HookRecord.parse(state_file(authorized_keys).read_text())
    except OSError:
        record = None
    if record and not (record.pid == holder if holder else _alive(record.pid)):
        record = None
    return HookStatus(True, holder or (record.pid if record else None), record)


def _lock_holder(folder: os.stat_result) -> int | None:
    """The pid holding a flock on this folder, from Linux's /proc/locks; None where it cannot tell."""
    inode = f"{os.major(folder.st_dev):02x}:{os.minor(folder.st_dev):02x}:{folder.st_ino}"
    try:
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return None
    for line in lines:  # "1: FLOCK  ADVISORY  WRITE 1234 fe:00:260072 0 EOF"
        fields = line.split()
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == inode and fields[4].isdigit():
            return int(fields[4])
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class SingleHook:
    """One hook per authorized_keys file (the real one: through a symlink or not), else they
    would fight over the block. The lock is a flock on the real file's folder, whose inode
    stays while the file is replaced; the kernel drops it when the holder dies, however."""

    def __init__(self, authorized_keys: Path, command: str = "host") -> None:
        real = Path(os.path.realpath(authorized_keys))
        real.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.fd: int | None = os.open(real.parent, os.O_RDONLY)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.release()
            raise PreflightError(read_state(real).describe(real)) from None
        self.state = state_file(real)
        self.started = time.time()
        self.command = command
        # A SIGKILLed holder left these; with the lock ours, none is being written.
        AuthorizedKeysFile(real).clean_leftovers()
        for leftover in self.state.parent.glob(f".{self.state.name}.*"):
            with contextlib.suppress(OSError):
                leftover.unlink()
        self.publish(None, None)

    def publish(self, state: "TunnelStatus | None", tunnel: str | None) -> None:
        publish_state(self.state, HookRecord(os.getpid(), self.started, self.command, tunnel,
                                             state.state if state else None, state.since if state else None))

    def release(self) -> None:
        if self.fd is None:
            return
        if hasattr(self, "state"):
            with contextlib.suppress(OSError):
                self.state.unlink()
        os.close(self.fd)
        self.fd = None


class StatusLine:
    """One line redrawn in place on a terminal; plain log lines otherwise."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.last = ""

    def say(self, text: str) -> None:
        if self.tty:
            self.stream.write("\r\033[K" + text + "\n" + self.last)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def show(self, text: str) -> None:
        if text == self.last:
            return
        self.last = text
        if self.tty:
            self.stream.write("\r\033[K" + text)
        else:
            self.stream.write(f"[{_clock()}] {text}\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty and self.last:
            self.stream.write("\n")
            self.stream.flush()


def _clock() -> str:
    return dt.datetime.now().strftime("%H:%M:%S")


@dataclass
class TunnelStatus:
    """What the status line shows, updated from the tunnel's thread."""

    state: State = State.CONNECTING
    since: float = field(default_factory=time.time)
    ready_once: bool = False


def guest_lines(options: HostOptions) -> list[str]:
    session, socket_path = options.outputs.tmux_session, options.tmux_socket
    typing = tmux_attach_command(session, read_only=False, socket=socket_path)
    watching = tmux_attach_command(session, read_only=True, socket=socket_path)
    outputs = options.outputs
    # Guests reach a loopback sshd only through the tunnel, whose connections
    # the hook opens from this machine: their keys then work from nowhere else
    # (not from the LAN your sshd may also listen on).
    sources = LOOPBACK_SOURCES if _is_loopback(options.target[0]) else ()
    return [guest_line(k, typing, sources) for k in outputs.guest_keys] + [
        guest_line(k, watching, sources) for k in outputs.viewer_keys
    ]


LOOPBACK_SOURCES = ("127.0.0.1", "::1")


def _is_loopback(host: str) -> bool:
    """Whether every address the hook may connect to for `host` is this machine's loopback
    (localhost, LOCALHOST, 127.1, ::1, ::ffff:127.0.0.1 ...): then so is every guest's source."""
    try:
        found = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return False  # preflight's probe of the target says why
    addresses = [ipaddress.ip_address(info[4][0].partition("%")[0]) for info in found]
    return bool(addresses) and all(_loopback_address(a) for a in addresses)


def _loopback_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    mapped = getattr(address, "ipv4_mapped", None)  # sshd sees ::ffff:127.0.0.1 as 127.0.0.1
    return (mapped or address).is_loopback


def instructions(outputs: StackOutputs, invite: Path | None = None) -> str:
    sent = f"Send them {invite}" if invite else "Send them the file from `pairing invite`"
    return (
        f"ready: guests can join now. {sent} and have them run\n"
        f"    ssh -F {invite.name if invite else 'pairing.conf'} pairing\n"
        "or this one command (needs OpenSSH 8.5+):\n"
        f"    {guest_documents.command(outputs.guest_route)}\n"
        f"relay {outputs.relay_address} ({outputs.relay_fingerprint}), ends {outputs.expires_at:%Y-%m-%dT%H:%M:%SZ}. "
        "Ctrl-C to stop."
    )


def run(options: HostOptions, stream: TextIO = sys.stdout, lock: SingleHook | None = None) -> int:
    """Preflight, then hold everything up until Ctrl-C/SIGTERM or a fatal error. Returns the exit code."""
    outputs = options.outputs
    lock = lock or SingleHook(options.authorized_keys)  # a second run stops here, having touched nothing
    keys_file = AuthorizedKeysFile(options.authorized_keys)
    try:
        keys_file.check_owner()
        identity = preflight(options)
    except BaseException:
        lock.release()
        raise
    status = StatusLine(stream)
    tmux = Tmux(options.tmux_socket)
    state = TunnelStatus()
    spec = TunnelSpec(
        relay=relay_endpoint(outputs, TUNNEL_USER),
        probe=relay_endpoint(outputs, GUEST_USER),
        tunnel_port=outputs.tunnel_port,
        target=options.target,
        identity=identity.key,
        identity_file=identity.path,
    )

    class Events:
        def tunnel_state(self, new: State, detail: str) -> None:
            if new is not state.state:
                state.state, state.since = new, time.time()
                lock.publish(state, options.tunnel)
            if new is State.UP:
                status.say(f"tunnel back up ({detail})" if state.ready_once else instructions(outputs, options.invite))
                state.ready_once = True
            elif new is State.WAITING_FOR_PORT or (new is State.RECONNECTING and detail):
                status.say(f"{new.value}: {detail}")

        def warning(self, text: str) -> None:
            status.say(f"warning: {text}")

    tunnel = TUNNELS[options.tunnel](spec, Events(), give_up_at=outputs.expires_at.timestamp() + GIVE_UP_GRACE)
    failure: list[BaseException] = []

    def hold() -> None:
        try:
            tunnel.run()
        except BaseException as exc:  # reported by the main thread
            failure.append(exc)

    stop_signals = (signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.signal(sig, lambda *_: tunnel.stop()) for sig in stop_signals}
    try:
        if tmux.ensure_session(outputs.tmux_session):
            status.say(f"created tmux session {outputs.tmux_session!r} (attach yourself: tmux attach -t {outputs.tmux_session})")
        else:
            tmux.keep_clients_in(outputs.tmux_session)
        keys_file.install(guest_lines(options))
        warned: set[str] = set()
        attached: tuple = ()
        worker = threading.Thread(target=hold, name="pairing-tunnel", daemon=True)
        worker.start()
        while worker.is_alive():
            try:
                worker.join(STATUS_EVERY)
                now = tmux.snapshot(outputs.tmux_session)
                if not now.exists and tmux.ensure_session(outputs.tmux_session):
                    status.say(f"tmux session {outputs.tmux_session!r} was gone; created a new one for guests to attach to")
                if outputs.viewer_keys:
                    warned = _warn_about_other_sessions(now.others, warned, status)
                _say_comings_and_goings(attached, now.clients, status)
                attached = now.clients
                status.show(_status_text(state, now.clients))
            except KeyboardInterrupt:
                tunnel.stop()
    except (AuthorizedKeysError, TmuxError) as exc:
        tunnel.stop()
        status.say(f"error: {exc}")
        return 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        removed = _remove_block(keys_file, status)
        status.close()
        lock.release()
    if failure:
        exc = failure[0]
        status.say(f"error: {exc}" if isinstance(exc, TunnelFatal) else f"error: the tunnel failed: {exc!r}")
        return 1
    if removed is None:  # said why; the guests' keys are still in the file
        return 1
    status.say("stopped; guest keys removed from " + str(options.authorized_keys) if removed else "stopped")
    return 0


def _warn_about_other_sessions(sessions: list[str], warned: set[str], status: StatusLine) -> set[str]:
    """tmux lets read-only clients switch sessions (C-b ( and C-b )): say so when viewers could."""
    others = set(sessions)
    if others - warned:
        status.say(
            f"warning: viewers can switch to your other tmux sessions on this server ({', '.join(sorted(others))}) "
            "with C-b ( and C-b ): tmux lets read-only clients switch sessions. Close them, or give the pair "
            "session a tmux server of its own with --tmux-socket PATH"
        )
    return others


def _say_comings_and_goings(before: tuple, now: tuple, status: StatusLine) -> None:
    """A line when someone attaches or leaves, so the host notices a guest arrive."""
    for client, verb in [(c, "joined") for c in now if c not in before] + [(c, "left") for c in before if c not in now]:
        who = "a viewer (read-only)" if client.read_only else "someone who can type"
        status.say(f"{who} {verb} the session ({client.tty})")


def _remove_block(keys_file: AuthorizedKeysFile, status: StatusLine) -> bool | None:
    """True if the block was removed, False if there was none, None if it could not be."""
    try:
        return keys_file.remove()
    except AuthorizedKeysError as exc:
        status.say(f"error: could not remove the guest keys: {exc}; run `pairing host` again to clean up")
        return None


def _status_text(state: TunnelStatus, clients: list) -> str:
    since = dt.datetime.fromtimestamp(state.since).strftime("%H:%M:%S")
    typing = sum(1 for c in clients if not c.read_only)
    watching = len(clients) - typing
    guests = f"{typing} typing, {watching} watching" if clients else "no guests attached"
    word = "reconnecting" if state.state in (State.RECONNECTING, State.WAITING_FOR_PORT) else state.state.value
    return f"tunnel {word} since {since} | {guests}"

