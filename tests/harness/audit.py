"""ssh-audit, the standard external audit of an SSH server, as the tests run it.

0 failures. The one warning left, and why it stays (docs/SECURITY.md): the classic
curve25519 kex is the only one paramiko (the host hook) shares with an sshd before
OpenSSH 10.0, and the only one OpenSSH 8.2-8.4 guests (`pairing invite --known-hosts`)
have. A new warning fails the tests that compare with JUSTIFIED.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

PQ_WARNING = "does not provide protection against post-quantum attacks"
JUSTIFIED = {("kex", "curve25519-sha256@libssh.org", "warn", PQ_WARNING)}
DHEAT = "Potentially insufficient connection throttling detected"


def ssh_audit(address: str, port: int = 22) -> dict:
    """ssh-audit's JSON report on the server at address:port (the venv's own ssh-audit)."""
    result = subprocess.run([str(Path(sys.executable).with_name("ssh-audit")), "-j", "-p", str(port), address],
                            capture_output=True, text=True, timeout=120)
    assert result.stdout.startswith("{"), result.stdout + result.stderr
    return json.loads(result.stdout)


def findings(report: dict) -> set[tuple[str, str, str, str]]:
    """(kind, algorithm, level, note) for each failure and warning."""
    return {(kind, entry["algorithm"], level, note)
            for kind in ("kex", "key", "enc", "mac") for entry in report.get(kind, [])
            for level in ("fail", "warn") for note in entry.get("notes", {}).get(level, [])}
