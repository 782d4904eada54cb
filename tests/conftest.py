from __future__ import annotations

import os
import shutil

import pytest

from . import harness
from .harness import KeyFile, make_key

REQUIRED_TOOLS = {
    "ssh-keygen": "openssh-client",
    "ssh": "openssh-client",
    "sshd": "openssh-server",
    "cloud-init": "cloud-init",
    "sftp": "openssh-client",
    "unshare": "util-linux",
    "nsenter": "util-linux",
    "setpriv": "util-linux",
    "tmux": "tmux",
    "debootstrap": "debootstrap",
    "zstd": "zstd",
    "ip": "iproute2",
    "ss": "iproute2",
    "qemu-system-x86_64": "qemu-system-x86",
    "qemu-img": "qemu-utils",
    "genisoimage": "genisoimage",
    "bash": "bash",  # the host account's login shells the forced command must run under
    "dash": "dash",
    "zsh": "zsh",
    "fish": "fish",
    "plink": "putty-tools",  # a PuTTY guest (tests/test_guest_clients.py)
    "puttygen": "putty-tools",
}


def pytest_collection_finish(session: pytest.Session) -> None:
    """Fail at once, naming the package, rather than skip what cannot run. Only once a collected test
    needs the tools: modules marked `pure` need neither them nor root (venv/bin/python -m pytest
    tests/test_settings.py runs anywhere)."""
    if all(item.get_closest_marker("pure") for item in session.items):
        return
    path = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
    missing = sorted({pkg for tool, pkg in REQUIRED_TOOLS.items() if shutil.which(tool, path=path) is None})
    if missing:
        raise pytest.UsageError(f"missing tools; install: apt-get install {' '.join(missing)} (or run bash .ci/run)")


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, KeyFile]:
    """A set of real keys shared by the session: guests, a viewer, the host, the host's sshd."""
    folder = tmp_path_factory.mktemp("keys")
    return {name: make_key(folder, name) for name in ("guest", "guest2", "viewer", "host", "sshd", "stranger")}


# The pairing session shared by the end-to-end modules (one per module).
pairing = pytest.fixture(scope="module")(harness.pairing_session)
hook = pytest.fixture()(harness.running_hook)
guests = pytest.fixture()(harness.guest_list)
