"""The reverse tunnel: relay localhost:<port> -> the host's sshd, kept up.

spec: what to hold, its states, its errors and the TunnelEvents it reports to;
pinning: SSH connections that must show a pinned key; loop: the retry loop
and self-test every carrier shares; via_paramiko and via_openssh: the two
carriers, one class each, chosen by `pairing host --tunnel NAME`; waiting: the
forwarded connections that have not spoken yet, which both carriers hold back
from the host's sshd; listener: what the OpenSSH carrier's `ssh -R` forwards to.
"""

import shutil

from .loop import ReverseTunnel, self_test
from .pinning import handshake, host_key_mismatch
from .spec import Endpoint, HostKeyMismatch, PortHeld, State, TunnelEvents, TunnelFatal, TunnelLost, TunnelSpec
from .via_openssh import OpenSSHTunnel, ssh_argv
from .via_paramiko import ParamikoTunnel

# What may carry the tunnel: a supervised OpenSSH `ssh -N -R` (the default where ssh is
# installed: less per keystroke, bench/README.md), or paramiko in this process (needs
# nothing else; it also pins, preflights and self-tests under either carrier).
CARRIERS = {carrier.name: carrier for carrier in (ParamikoTunnel, OpenSSHTunnel)}


def default_carrier() -> str:
    """The carrier when --tunnel is not given: OpenSSH's where its ssh is on PATH, else paramiko."""
    return OpenSSHTunnel.name if shutil.which("ssh") else ParamikoTunnel.name

__all__ = [
    "CARRIERS", "Endpoint", "HostKeyMismatch", "OpenSSHTunnel", "ParamikoTunnel", "PortHeld", "ReverseTunnel",
    "State", "TunnelEvents", "TunnelFatal", "TunnelLost", "TunnelSpec", "handshake", "host_key_mismatch",
    "self_test", "ssh_argv", "default_carrier",
]
