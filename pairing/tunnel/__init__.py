"""The reverse tunnel: relay localhost:<port> -> the host's sshd, kept up.

spec: what to hold, its states, its errors and the TunnelEvents it reports to;
pinning: SSH connections that must show a pinned key; loop: the retry loop
and self-test every carrier shares; via_paramiko and via_openssh: the two
carriers, one class each, chosen by `pairing host --tunnel NAME`; waiting: the
forwarded connections that have not spoken yet, which both carriers hold back
from the host's sshd; listener: what the OpenSSH carrier's `ssh -R` forwards to.
"""

from .loop import ReverseTunnel, self_test
from .pinning import handshake, host_key_mismatch
from .spec import Endpoint, HostKeyMismatch, PortHeld, State, TunnelEvents, TunnelFatal, TunnelLost, TunnelSpec
from .via_openssh import OpenSSHTunnel, ssh_argv
from .via_paramiko import ParamikoTunnel

# What may carry the tunnel: paramiko in this process (the default, nothing else
# needed), or a supervised OpenSSH `ssh -N -R` (faster per keystroke; bench/README.md).
CARRIERS = {carrier.name: carrier for carrier in (ParamikoTunnel, OpenSSHTunnel)}

__all__ = [
    "CARRIERS", "Endpoint", "HostKeyMismatch", "OpenSSHTunnel", "ParamikoTunnel", "PortHeld", "ReverseTunnel",
    "State", "TunnelEvents", "TunnelFatal", "TunnelLost", "TunnelSpec", "handshake", "host_key_mismatch",
    "self_test", "ssh_argv",
]
