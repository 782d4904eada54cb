"""The relay in namespaces: cloud-init's four stages on the exact user data in a fresh root,
then the root's own sshd serving it on a veth address (netns.py) reachable from the tests."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Self

from .commands import (CloudInitError, HarnessError, _default_meta_data, _signal_nsenter, _tail, _wait_for_banner,
                       _write)
from .netns import NETNS_PREFIX, Netns
from .rootfs import DEFAULT_SUITE, _check_suite, _untar, build_rootfs
from .sandbox import Sandbox
from .workdirs import _owning, _scratch_parent

CLOUD_INIT_STAGES = {
    "init-local": ["init", "--local"],
    "init": ["init"],
    "modules-config": ["modules", "--mode", "config"],
    "modules-final": ["modules", "--mode", "final"],
}
SSH_PORT = 22


class Relay:
    """One relay: cloud-init applied to `user_data` in a fresh root, then its sshd serving it.

    sshd listens on `address`:`port`, reachable from the namespace the tests run in. Stopping
    sshd spares established sessions, like Debian's ssh.service (KillMode=process). In the chroot
    `systemctl start` is a no-op and timers never fire: use QemuRelay for those.
    """

    port = SSH_PORT
    address: str  # the relay's veth address
    root: Path  # its root filesystem, as seen from the host (its /run is private: use read())
    workdir: Path

    def __init__(self, user_data: str, *, meta_data: str | None = None, suite: str = DEFAULT_SUITE) -> None:
        _check_suite(suite)
        self.user_data = user_data
        self.meta_data = meta_data or _default_meta_data()
        self.suite = suite
        self.stage_seconds: dict[str, float] = {}
        self.up_seconds = 0.0  # from unpacking the root to sshd answering
        self._sshd: subprocess.Popen[bytes] | None = None
        self._teardown = ExitStack()
        self.on_boot: Callable[[], None] | None = None  # run once sshd first answers (the deployment's guest list)

    def __enter__(self) -> Self:
        tarball = build_rootfs(self.suite)
        started = time.monotonic()
        with ExitStack() as stack:
            self.workdir = Path(tempfile.mkdtemp(prefix=NETNS_PREFIX, dir=_scratch_parent()))
            stack.callback(shutil.rmtree, self.workdir)
            stack.enter_context(_owning(self.workdir))
            self.root = self.workdir / "root"
            _untar(tarball, self.root)
            self._net = Netns.create()
            stack.callback(self._net.delete)
            (self.workdir / "netns").write_text(self._net.name)
            self.address = str(self._net.relay_ip)
            self._sandbox = Sandbox(self.root, self._net.name)
            stack.callback(self._sandbox.stop)
            self._sandbox.start()
            self._seed()
            self._boot()
            stack.callback(self.stop_sshd)
            self.start_sshd()
            if self.on_boot:
                self.on_boot()
            self._teardown = stack.pop_all()
        self.up_seconds = time.monotonic() - started
        return self

    def __exit__(self, *exc: object) -> None:
        self._teardown.close()

    def run(
        self, argv: Sequence[str], *, check: bool = True, input: str | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside the relay, as root, in its namespaces and chroot."""
        return self._sandbox.run(argv, check=check, input=input, timeout=timeout)

    @property
    def netns(self) -> str:
        """The relay's network namespace: `ip netns exec NAME ...` reaches its localhost (the bench's bare echo)."""
        return self._net.name

    def read(self, path: str) -> str:
        """A file as the relay sees it; unlike `root / path` this reaches its private /run."""
        return self.run(["cat", "--", path]).stdout

    def _seed(self) -> None:
        seed = self.root / "var/lib/cloud/seed/nocloud"
        _write(seed / "user-data", self.user_data, 0o600)
        _write(seed / "meta-data", self.meta_data, 0o600)

    def _boot(self) -> None:
        for stage, args in CLOUD_INIT_STAGES.items():
            began = time.monotonic()
            proc = self.run(["cloud-init", *args], check=False, timeout=600)
            self.stage_seconds[stage] = round(time.monotonic() - began, 2)
            if proc.returncode:
                self._fail(f"stage {stage} exited {proc.returncode}", proc.stdout + proc.stderr)
        problems = self._boot_problems()
        if problems:
            self._fail("; ".join(problems), "")

    def _boot_problems(self) -> list[str]:
        result = json.loads(self.read("/run/cloud-init/result.json"))["v1"]
        status = json.loads(self.read("/run/cloud-init/status.json"))["v1"]
        problems = [f"result.json: {error}" for error in result["errors"]]
        for stage in CLOUD_INIT_STAGES:
            problems += [f"{stage}: {error}" for error in (status.get(stage) or {}).get("errors", [])]
        if "Traceback" in self.cloud_init_log():
            problems.append("Traceback in /var/log/cloud-init.log")
        return problems

    def _fail(self, what: str, output: str) -> None:
        status = self.run(["cloud-init", "status", "--long"], check=False)
        raise CloudInitError(
            f"cloud-init failed on the user data: {what}\n--- output\n{_tail(output, 40)}\n"
            f"--- cloud-init status --long\n{status.stdout}{status.stderr}\n"
            f"--- /var/log/cloud-init.log\n{_tail(self.cloud_init_log(), 80)}"
        )

    def cloud_init_log(self) -> str:
        log = self.root / "var/log/cloud-init.log"
        return log.read_text(errors="replace") if log.exists() else ""

    def cloud_init_warnings(self) -> list[str]:
        """WARNING lines of this boot, e.g. schema complaints EC2 would only log (status "degraded")."""
        return [line for line in self.cloud_init_log().splitlines() if "[WARNING]" in line]

    def sshd_log(self) -> str:
        log = self.workdir / "sshd.log"
        return log.read_text(errors="replace") if log.exists() else ""

    def start_sshd(self, timeout: float = 30) -> None:
        """Start the root's sshd with its config as cloud-init left it; return once it answers."""
        if self._sshd is not None:
            raise HarnessError("sshd is already running")
        self._sshd = self._sandbox.popen(["/usr/sbin/sshd", "-D", "-e"], self.workdir / "sshd.log")
        sshd = self._sshd
        _wait_for_banner(self.address, self.port, timeout, lambda: sshd.poll() is None, self.sshd_log)

    def stop_sshd(self, sig: int = signal.SIGTERM) -> None:
        """Stop the listening sshd (SIGKILL: as if it crashed); established sessions live on, as under systemd."""
        if self._sshd is None:
            return
        nsenter, self._sshd = self._sshd, None
        _signal_nsenter(nsenter, sig)
        try:
            nsenter.wait(timeout=10)
        except subprocess.TimeoutExpired:
            _signal_nsenter(nsenter, signal.SIGKILL)
            nsenter.wait()

    def restart_sshd(self, sig: int = signal.SIGTERM) -> None:
        self.stop_sshd(sig)
        self.start_sshd()

    def cut_network(self) -> None:
        """Make the relay unreachable the way a dead network is: packets vanish, nothing resets."""
        self._net.set_relay_link(False)

    def restore_network(self) -> None:
        self._net.set_relay_link(True)

    def kill_connections_of(self, user: str) -> None:
        """Kill `user`'s session processes, which makes sshd drop their connections."""
        pids = self.run(["pgrep", "-u", user], check=False).stdout.split()
        if pids:
            self.run(["kill", "-KILL", *pids], check=False)


