"""The hook's preflight: everything it can check before it touches anything.

The host's identity (a key file, the agent's key, a key with a passphrase asked
on the terminal; never a FIDO key), the host's sshd (answers, shows the key
guests pin) and the relay (answers, shows its pinned key). Each failure is a
PreflightError: one line, what is wrong and the fix.
"""

from __future__ import annotations

import getpass
import shutil
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import paramiko
from cryptography.exceptions import UnsupportedAlgorithm

from ..accounts import TUNNEL_USER
from ..outputs import StackOutputs
from ..sshkeys import PublicKey, host_key_algorithms, is_fido, is_key, public_half, public_key_of
from ..tmux import Tmux
from ..tunnel import Endpoint, HostKeyMismatch, OpenSSHTunnel, ParamikoTunnel, default_carrier, handshake
from ..tunnel.spec import reason

if TYPE_CHECKING:
    from . import HostOptions

DEFAULT_IDENTITIES = ("id_ed25519", "id_ecdsa", "id_rsa")
SSHD_PROBE_TIMEOUT = 3.0
RELAY_PROBE_TIMEOUT = 10.0


class PreflightError(RuntimeError):
    """One line: what is wrong and how to fix it. Nothing was changed."""


class PassphraseForSsh(PreflightError):
    """The key needs a passphrase typed on a terminal, which `ssh -N -R` (run without one) cannot ask for."""


@dataclass(frozen=True)
class Identity:
    key: paramiko.PKey
    path: Path | None  # None: the ssh agent's


def load_identity(path: Path | None, expected: PublicKey, carrier: str = "paramiko") -> Identity:
    """The private key of hostPublicKey: the given file, else ~/.ssh/id_*, else the agent.

    A file with a passphrase: the agent's copy of its key if the agent holds it, else the
    passphrase asked on the terminal (the paramiko carrier only: ssh runs without a terminal).
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
        identity, found = _read_private_key(candidate, expected, carrier)
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
    """Why a FIDO (sk-) key cannot be the host's identity, whichever carrier holds the tunnel.

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
    return next((key for key in keys if is_key(key, expected)), None)


def _read_private_key(path: Path, expected: PublicKey, carrier: str) -> tuple[Identity | None, PublicKey]:
    """The identity in this file if it is hostPublicKey's (else None), and the key the file holds."""
    try:
        text = path.read_text()
        key = paramiko.PKey.from_path(path)
    except (TypeError, paramiko.PasswordRequiredException):  # paramiko 5 says "password-protected" with TypeError
        return _locked_key(path, text, expected, carrier)
    except (UnsupportedAlgorithm, paramiko.UnknownKeyType) as exc:  # e.g. a FIDO key's file: paramiko cannot sign
        found = public_half(text)
        if found is None:
            raise PreflightError(f"cannot read the identity {path}: {reason(exc)}; pass --identity with an OpenSSH private key") from None
        return None, found  # not hostPublicKey's, which is never a FIDO key here
    except (OSError, paramiko.SSHException, ValueError, UnicodeDecodeError) as exc:
        raise PreflightError(f"cannot read the identity {path}: {reason(exc)}; pass --identity with an OpenSSH private key") from None
    found = public_key_of(key)
    return (Identity(key, path) if is_key(key, expected) else None), found


def _locked_key(path: Path, text: str, expected: PublicKey, carrier: str) -> tuple[Identity | None, PublicKey]:
    """A key with a passphrase: which key it is needs none (OpenSSH files carry the public half in the clear)."""
    found = public_half(text)
    if found is not None and found.blob != expected.blob:
        return None, found  # not hostPublicKey's: nothing to ask for
    agent_key = _agent_key(expected)
    if agent_key is not None:
        return Identity(agent_key, None), expected
    if carrier == OpenSSHTunnel.name:
        raise PassphraseForSsh(f"--tunnel openssh cannot ask for the passphrase of {path}; add the key to "
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
    return (Identity(key, path) if is_key(key, expected) else None), found


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
        raise PreflightError(f"{host}:{port} does not speak SSH ({reason(exc)}); pass --target with your sshd's address") from None
    finally:
        transport.close()
    if not is_key(presented, pinned):
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


def preflight(options: HostOptions) -> tuple[Identity, str]:
    """Everything checked before anything is touched; the identity the tunnel logs in with, and the carrier
    (--tunnel, else default_carrier(), else paramiko for a passphrase key that only a terminal can unlock)."""
    outputs = options.outputs
    if not Tmux.installed():
        raise PreflightError("tmux is not installed; install it (Debian/Ubuntu: sudo apt install tmux; macOS: brew install tmux)")
    if options.tunnel == OpenSSHTunnel.name and shutil.which("ssh") is None:
        raise PreflightError("--tunnel openssh needs OpenSSH's ssh; install it (Debian/Ubuntu: sudo apt install "
                             "openssh-client) or leave out --tunnel")
    expected = outputs.host_public_key
    carrier = options.tunnel or default_carrier()
    try:
        identity = load_identity(options.identity, expected, carrier)
    except PassphraseForSsh:
        if options.tunnel:  # asked for by name: say so rather than switch
            raise
        carrier = ParamikoTunnel.name  # it can ask for the passphrase; ssh runs without a terminal
        identity = load_identity(options.identity, expected, carrier)
    if options.target is None:  # its own sshd, started once everything here passed
        from .own_sshd import check_own_sshd

        check_own_sshd(outputs.host_user, outputs.host_sshd_key)
    else:
        probe_sshd(options.target, outputs.host_sshd_key)
    probe_relay(relay_endpoint(outputs, TUNNEL_USER))
    return identity, carrier


def relay_endpoint(outputs: StackOutputs, user: str) -> Endpoint:
    return Endpoint(outputs.relay_address, outputs.relay_port, user, outputs.relay_host_keys)
