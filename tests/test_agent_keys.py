"""A guest whose ssh-agent holds other keys still lands: OpenSSH offers every agent key
before an IdentityFile that is not in the agent, and the invite sets no IdentitiesOnly
(it cannot know where a guest keeps their key). The relay's `MaxAuthTries 3` cut off a
guest with three other keys; it is 10 now."""

from __future__ import annotations

import os
import subprocess

import pytest

from pairing.accounts import GUEST_USER

from .harness import Deployment, deploy, make_key, stop_process, wait_until

PORT = 1337


@pytest.fixture(scope="module")
def deployment(keys, tmp_path_factory) -> Deployment:
    deployment = deploy(tmp_path_factory.mktemp("relay"), keys, tunnelPort=str(PORT))
    with deployment.relay:
        yield deployment


def test_a_guest_with_six_other_agent_keys_still_lands(deployment, tmp_path):
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(tmp_path / "agent.sock")], stdout=subprocess.DEVNULL)
    try:
        env = {**os.environ, "SSH_AUTH_SOCK": str(tmp_path / "agent.sock")}
        wait_until((tmp_path / "agent.sock").exists, 10, "ssh-agent's socket")
        for i in range(6):
            subprocess.run(["ssh-add", "-q", str(make_key(tmp_path, f"other{i}").path)], env=env, check=True, timeout=10)
        argv = deployment.ssh_argv(GUEST_USER, "guest", "-W", f"localhost:{PORT}")
        argv[argv.index("IdentitiesOnly=yes")] = "IdentitiesOnly=no"  # as the invite has it: agent keys offered
        result = subprocess.run(argv, capture_output=True, text=True, timeout=30, env=env, stdin=subprocess.DEVNULL)
        assert "Too many authentication failures" not in result.stderr, result.stderr
        assert "connect failed: Connection refused" in result.stderr, result.stderr  # logged in; nothing listens
    finally:
        stop_process(agent)
