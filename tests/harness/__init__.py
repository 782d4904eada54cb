"""The test harness: everything real the tests and the bench run on, on this machine.

- a relay: our user data through cloud-init in namespaces (relay.py, on rootfs.py's cached root,
  in sandbox.py's namespaces, reachable through netns.py's veth), or booted under QEMU (qemu.py);
  `python -m tests.harness build|run|cleanup` by hand (__main__.py, cleanup.py);
- the host's side: a private sshd, tmux servers, guests' OpenSSH clients, the hook (host.py);
- a guest with Debian 11's OpenSSH 8.4, chrooted (old_guest.py);
- a whole deployment (deployment.py) and the pairing session the end-to-end tests share (session.py);
- real keys made by ssh-keygen (keys.py), raw SSH requests and the server's answers (ssh_probe.py),
  ssh-audit's verdict on a server (audit.py).

Tests and the bench import from here; the modules' other names are the harness's own.
"""

from .audit import DHEAT, JUSTIFIED, findings, ssh_audit
from .commands import CloudInitError, HarnessError, MissingPrerequisite, children
from .deployment import Deployment, client_env, deploy, first_line
from .host import PROJECT, Guest, Hook, HostSshd, Tmux, free_port, stop_process, wait_until
from .keys import KeyFile, fido_private_file, fido_public_line, locked_copy, make_key
from .old_guest import OldGuest
from .qemu import QemuRelay
from .relay import Relay
from .rootfs import DEFAULT_SUITE, SUITES
from .session import (ORIGINAL_KEYS, ORIGINAL_MODE, Pairing, guest_list, hook_argv, hook_env, join,
                      pairing_session, running_hook)
from .ssh_probe import ADMINISTRATIVELY_PROHIBITED, SESSION_REQUESTS, OpenRefused, Probe

__all__ = [
    "ADMINISTRATIVELY_PROHIBITED", "DEFAULT_SUITE", "DHEAT", "JUSTIFIED", "findings", "ssh_audit", "ORIGINAL_KEYS", "ORIGINAL_MODE", "PROJECT", "SESSION_REQUESTS",
    "SUITES", "CloudInitError", "Deployment", "Guest", "HarnessError", "Hook", "HostSshd", "KeyFile",
    "MissingPrerequisite", "OldGuest", "OpenRefused", "Pairing", "Probe", "QemuRelay", "Relay", "Tmux", "children", "client_env",
    "deploy", "fido_private_file", "fido_public_line", "first_line", "free_port", "guest_list", "hook_argv",
    "hook_env", "join", "locked_copy", "make_key", "pairing_session", "running_hook", "stop_process", "wait_until",
]
