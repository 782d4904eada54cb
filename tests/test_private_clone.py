"""The test command works from wherever the repository is cloned: in a folder only root may enter (as
/root is), the tests that run the host as uid 65534 still pass. That uid runs the wheel built from the
clone, installed where it may read it (tests/harness/installed.py). A module of its own: its nested run
sets up tests/test_direct.py's network, which no fixture of this run may hold meanwhile."""

from __future__ import annotations

import os
import subprocess
import sys

from .harness import PROJECT


def test_a_clone_in_a_private_folder_runs_its_unprivileged_join(tmp_path):
    """A clone holds the last commit: this checkout's uncommitted changes are not in it."""
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    clone = private / "pairing"
    subprocess.run(["git", "clone", "-q", str(PROJECT), str(clone)], check=True, capture_output=True,
                   env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(tmp_path), "GIT_CONFIG_NOSYSTEM": "1",
                        "GIT_CONFIG_GLOBAL": os.devnull})
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_direct.py", "-k",
         "joins_over_the_veth"], cwd=clone, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}, stdin=subprocess.DEVNULL)
    assert result.returncode == 0 and "1 passed" in result.stdout, result.stdout[-3000:] + result.stderr[-2000:]
