"""Test relays: what EC2 does with our cloud-init user data, reproduced on this machine.

`Relay` unpacks a cached Debian root, runs the four real cloud-init stages on the exact
user-data inside private namespaces (mount, pid, uts, ipc, net) with a chroot, then serves
it with the root's own sshd on a veth address reachable from the caller's network namespace.
`QemuRelay` boots the same root with a real kernel under QEMU (TCG) for what a chroot cannot
show: systemd, timers, power-off.

By hand:
    python -m tests.relay_harness build [--suite bookworm] [--qemu]
    python -m tests.relay_harness run --user-data FILE [--meta-data FILE] [--suite S] [--qemu]
    python -m tests.relay_harness cleanup     # what SIGKILLed runs left, outdated cached images

Everything needs root. Roots are cached as zstd tarballs in $PAIRING_CACHE
(default ~/.cache/pairing), keyed by a hash of what goes into them.
"""

from __future__ import annotations

import argparse
import ctypes
import fcntl
import hashlib
import inspect
import ipaddress
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, Self

SUITES = ("trixie", "bookworm")
# What EC2 boots (Debian 13 from Debian's own AMIs, pairing/relay.py): every end-to-end test
# runs on it. Debian 12 stays for what an older cloud-init and OpenSSH 9.2 prove.
DEFAULT_SUITE = "trixie"
PACKAGES = (
    "cloud-init",
    "openssh-server",
    "systemd-sysv",  # the relay's user-data drives systemctl and systemd timers
    "locales",  # cloud-init's locale module fails without a generated en_US.UTF-8
    "iproute2",
    "procps",
    "sudo",
    "netbase",
)
# A full boot additionally needs a kernel and udev to load its modules; systemd-networkd (in
# the systemd package) brings up the NIC, which cloud-init must not configure (see CLOUD_CFG).
QEMU_PACKAGES = ("linux-image-cloud-amd64", "udev")
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_SECURITY_MIRROR = "http://deb.debian.org/debian-security"
HOST_SOURCES = Path("/etc/apt/sources.list.d/debian.sources")

# Keeps cloud-init away from anything that is not the relay's own: no network configuration
# (it would touch the host's NIC in a chroot), no partition or filesystem growing.
CLOUD_CFG = """\
# Written by tests/relay_harness.py.
datasource_list: [NoCloud, None]
network: {config: disabled}
growpart: {mode: "off"}
resize_rootfs: false
"""
# QEMU user-mode networking always hands the guest the same address. Without IPv6 the link
# counts as configured at once, so network-online.target does not wait ~9 s for nothing.
QEMU_NETWORK = """\
[Match]
Type=ether

[Network]
Address=10.0.2.15/24
Gateway=10.0.2.2
DNS=10.0.2.3
LinkLocalAddressing=no
IPv6AcceptRA=no
"""
HOSTS = "127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n"

CHROOT_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "LANG": "C.UTF-8",
    "DEBIAN_FRONTEND": "noninteractive",
}
CLOUD_INIT_STAGES = {
    "init-local": ["init", "--local"],
    "init": ["init"],
    "modules-config": ["modules", "--mode", "config"],
    "modules-final": ["modules", "--mode", "final"],
}
SSH_PORT = 22
NETNS_PREFIX = "pairing-relay-"
QEMU_PREFIX = "pairing-qemu-"
VETH_SUPERNET = ipaddress.ip_network("10.213.0.0/16")

# Which Debian package ships each host tool, for the "install this" message.
TOOL_PACKAGES = {
    "debootstrap": "debootstrap",
    "zstd": "zstd",
    "tar": "tar",
    "unshare": "util-linux",
    "nsenter": "util-linux",
    "chroot": "coreutils",
    "ip": "iproute2",
    "ssh": "openssh-client",
    "qemu-system-x86_64": "qemu-system-x86",
    "qemu-img": "qemu-utils",
    "mkfs.ext4": "e2fsprogs",
    "genisoimage": "genisoimage",
}
TOOLS = ("debootstrap", "zstd", "tar", "unshare", "nsenter", "chroot", "ip")
QEMU_TOOLS = (*TOOLS, "qemu-system-x86_64", "qemu-img", "mkfs.ext4", "genisoimage", "ssh")

# Runs in the holder's mount and PID namespaces, outside the chroot: the pseudo filesystems a
# booted system has, private to this root. No /dev/console on purpose: cloud-init then writes
# its console messages to its stdout instead of the host's console.
MOUNT_SCRIPT = r"""
set -eu
root=$1
mount -t proc -o nosuid,nodev,noexec proc "$root/proc"
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$root/sys"
mount -t tmpfs -o nosuid,noexec,mode=0755 dev "$root/dev"
node() { mknod -m 0666 "$root/dev/$1" c "$2" "$3"; }
node null 1 3; node zero 1 5; node full 1 7; node random 1 8; node urandom 1 9; node tty 5 0
mkdir -m 0755 "$root/dev/pts"; mkdir -m 1777 "$root/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620,gid=5 devpts "$root/dev/pts"
ln -s pts/ptmx "$root/dev/ptmx"
ln -s /proc/self/fd "$root/dev/fd"
ln -s /proc/self/fd/0 "$root/dev/stdin"
ln -s /proc/self/fd/1 "$root/dev/stdout"
ln -s /proc/self/fd/2 "$root/dev/stderr"
mount -t tmpfs -o nosuid,nodev,mode=0755 run "$root/run"
mkdir -m 1777 "$root/run/lock"
# systemd's RuntimeDirectory= creates sshd's privilege separation directory on a real boot.
mkdir -m 0755 "$root/run/sshd"
"""

# PID 1 of a sandbox: reaps whatever gets orphaned inside (cloud-init forks helpers, sshd
# sessions outlive a restarted listener) and holds the namespaces open until killed.
HOLDER = """
import os, signal
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
# /proc is still the host's here, so this is our PID as the world outside the namespace sees it.
print(os.readlink("/proc/self"), flush=True)
while True:
    signal.sigwait({signal.SIGCHLD})
    try:
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass
    except ChildProcessError:
        pass
"""


class HarnessError(RuntimeError):
    """The harness could not bring a relay up or build its image."""


class MissingPrerequisite(HarnessError):
    """The host lacks a tool or privilege; the message says what to install."""


class CommandError(subprocess.CalledProcessError):
    def __str__(self) -> str:
        output = f"{self.stdout or ''}{self.stderr or ''}".strip()
        return f"{super().__str__()}\n{_tail(output, 60)}"


class CloudInitError(HarnessError):
    """A cloud-init stage failed on the user data; the message carries its output and log."""


def _tail(text: str, lines: int) -> str:
    return "\n".join(text.splitlines()[-lines:])


def cache_dir() -> Path:
    return Path(os.environ.get("PAIRING_CACHE") or Path.home() / ".cache" / "pairing")


def require(tools: Sequence[str]) -> None:
    """Fail with what to install when the host cannot run the harness."""
    if os.geteuid() != 0:
        raise MissingPrerequisite("the relay harness must run as root (namespaces, mounts, chroot)")
    missing = [tool for tool in tools if _which(tool) is None]
    if missing:
        packages = " ".join(sorted({TOOL_PACKAGES[tool] for tool in missing}))
        raise MissingPrerequisite(
            f"missing {', '.join(missing)}: apt-get -o DPkg::Lock::Timeout=600 install -y {packages}"
        )


def _which(tool: str) -> str | None:
    # Root's tools live in sbin, which a venv's or sudo's PATH may lack.
    dirs = [*filter(None, os.environ.get("PATH", "").split(os.pathsep)), "/usr/local/sbin", "/usr/sbin", "/sbin"]
    return shutil.which(tool, path=os.pathsep.join(dirs))


def _tool(name: str) -> str:
    path = _which(name)
    if path is None:
        require([name])
    return str(path)


def _run(
    argv: Sequence[str],
    *,
    check: bool = True,
    input: str | None = None,
    timeout: float = 120,
    **popen: Any,
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        list(argv), check=False, input=input, capture_output=True, text=True, errors="replace", timeout=timeout,
        **popen,
    )
    if check and proc.returncode:
        raise CommandError(proc.returncode, proc.args, proc.stdout, proc.stderr)
    return proc


_libc = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    # A SIGKILLed test run must not leave namespaces full of sshd and cloud-init behind.
    # The signal follows the thread that started the child, so enter relays from one that
    # outlives them.
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def children(pid: int) -> list[int]:
    """The process's children, forked by any of its threads; none once it is gone."""
    found = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            found += [int(child) for child in (task / "children").read_text().split()]
    except FileNotFoundError:
        return []
    return found


def _signal_nsenter(nsenter: subprocess.Popen[bytes], sig: int) -> None:
    """Signal the command nsenter runs: nsenter forwards no signals, its only child is it."""
    if nsenter.poll() is None:
        for pid in children(nsenter.pid) or [nsenter.pid]:
            os.kill(pid, sig)


def _scratch_parent() -> str:
    """Where relays unpack their root: tmpfs when roomy, since unpacking its 14k files onto
    this VM's ext4 costs ~4 s of kernel time against ~0.3 s on tmpfs."""
    shm = os.statvfs("/dev/shm") if os.path.isdir("/dev/shm") else None
    if shm and shm.f_bavail * shm.f_frsize > 2 * 2**30:
        return "/dev/shm"
    return tempfile.gettempdir()


def _default_meta_data() -> str:
    return f"instance-id: relay-{uuid.uuid4().hex[:12]}\nlocal-hostname: relay\n"


def _digest(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:16]


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


# --- sandbox: namespaces + chroot ------------------------------------------------------------


class Sandbox:
    """A chroot inside its own mount, PID, UTS and IPC namespaces (and a netns, if given).

    One long-lived holder process owns the namespaces; every command enters them with nsenter
    and chroots. Killing the holder kills everything inside and drops every mount with the
    namespace, so nothing can leak into the host's mount table.
    """

    def __init__(self, root: Path, netns: str | None = None) -> None:
        self.root = root
        self._netns = netns
        self._holder: subprocess.Popen[str] | None = None
        self.pid = 0

    def start(self) -> None:
        enter_net = [_tool("nsenter"), f"--net=/run/netns/{self._netns}"] if self._netns else []
        unshare = [_tool("unshare"), "--mount", "--pid", "--uts", "--ipc", "--fork", "--kill-child"]
        self._holder = subprocess.Popen(
            [*enter_net, *unshare, sys.executable, "-c", HOLDER],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=_die_with_parent,
        )
        assert self._holder.stdout is not None and self._holder.stderr is not None
        line = self._holder.stdout.readline()
        if not line.strip().isdigit():
            self._holder.wait()
            raise HarnessError(f"namespace holder failed to start: {self._holder.stderr.read()}")
        self.pid = int(line)
        _run([*self._enter(), "sh", "-c", MOUNT_SCRIPT, "mount-root", str(self.root)])

    def stop(self) -> None:
        if self._holder is None:
            return
        holder, self._holder = self._holder, None
        if holder.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
        holder.wait()
        for stream in (holder.stdout, holder.stderr):
            if stream:
                stream.close()

    def _enter(self) -> list[str]:
        namespaces = ["--mount", "--pid", "--uts", "--ipc", "--net"]
        return [_tool("nsenter"), f"--target={self.pid}", *namespaces, "--"]

    def argv(self, argv: Sequence[str]) -> list[str]:
        return [*self._enter(), _tool("chroot"), str(self.root), *argv]

    def run(
        self,
        argv: Sequence[str],
        *,
        check: bool = True,
        input: str | None = None,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        """Run argv in the root. On timeout only our nsenter dies; the command lives on until stop()."""
        return _run(self.argv(argv), check=check, input=input, timeout=timeout, env=CHROOT_ENV)

    def popen(self, argv: Sequence[str], log: Path) -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            return subprocess.Popen(
                self.argv(argv), stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=CHROOT_ENV
            )


# --- cached images ---------------------------------------------------------------------------


def _mirrors() -> tuple[str, str]:
    """The host's Debian and security mirrors: the ones this machine is known to reach."""
    text = HOST_SOURCES.read_text() if HOST_SOURCES.exists() else ""
    uris = re.findall(r"^URIs:\s*(\S+)", text, re.MULTILINE)
    main = next((uri for uri in uris if "security" not in uri), DEFAULT_MIRROR)
    security = next((uri for uri in uris if "security" in uri), DEFAULT_SECURITY_MIRROR)
    return main, security


def _check_suite(suite: str) -> None:
    if suite not in SUITES:
        raise ValueError(f"suite must be one of {SUITES}, not {suite!r}")


@contextmanager
def _locked_build(target: Path) -> Iterator[Path | None]:
    """Yield a scratch dir to build `target` in, or None when it is cached already.

    A lock serialises concurrent builders; the scratch dir has a fixed name so a build that
    was SIGKILLed is swept by the next one, and the result only appears by an atomic rename.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.exists():
            yield None
            return
        scratch = target.parent / f".{target.name}.build"
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir()
        try:
            yield scratch
        finally:
            shutil.rmtree(scratch, ignore_errors=True)


@contextmanager
def _apt_sandbox(root: Path, suite: str) -> Iterator[Sandbox]:
    """A sandbox on the host's network in which apt can install into `root`."""
    mirror, security = _mirrors()
    _write(
        root / "etc/apt/sources.list.d/debian.sources",
        f"Types: deb\nURIs: {mirror}\nSuites: {suite} {suite}-updates\nComponents: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n"
        f"Types: deb\nURIs: {security}\nSuites: {suite}-security\nComponents: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n",
    )
    (root / "etc/apt/sources.list").unlink(missing_ok=True)
    (root / "etc/resolv.conf").unlink(missing_ok=True)
    _write(root / "etc/resolv.conf", Path("/etc/resolv.conf").read_text())
    # Exit 101 = "not allowed": packages must not start their services on the build host.
    _write(root / "usr/sbin/policy-rc.d", "#!/bin/sh\nexit 101\n", 0o755)
    sandbox = Sandbox(root)
    try:
        sandbox.start()
        sandbox.run(["apt-get", "update"], timeout=600)
        yield sandbox
        sandbox.run(["apt-get", "clean"])
    finally:
        sandbox.stop()
    # Like a cloud image: no package lists, no build host resolver, no start blocker.
    shutil.rmtree(root / "var/lib/apt/lists")
    (root / "var/lib/apt/lists/partial").mkdir(parents=True)
    (root / "etc/resolv.conf").unlink()
    (root / "usr/sbin/policy-rc.d").unlink()


def _debootstrap(root: Path, suite: str) -> None:
    # In its own mount namespace, the /proc and /sys debootstrap mounts cannot outlive it.
    _run(
        [_tool("unshare"), "--mount", "--pid", "--fork", "--kill-child", _tool("debootstrap"),
         "--variant=minbase", "--components=main", suite, str(root), _mirrors()[0]],
        timeout=1800,
        preexec_fn=_die_with_parent,
    )


def _prepare_rootfs(root: Path, suite: str) -> None:
    with _apt_sandbox(root, suite) as sandbox:
        sandbox.run(["apt-get", "-y", "upgrade"], timeout=900)
        sandbox.run(["apt-get", "-y", "--no-install-recommends", "install", *PACKAGES], timeout=900)
        _write(root / "etc/locale.gen", "en_US.UTF-8 UTF-8\n")
        sandbox.run(["locale-gen"], timeout=300)
    # debootstrap writes none, and sshd's permitopen="localhost:..." must resolve.
    _write(root / "etc/hosts", HOSTS)
    _write(root / "etc/cloud/cloud.cfg.d/99-relay-harness.cfg", CLOUD_CFG)
    # Like a cloud image: every instance gets its own host keys, machine id and hostname,
    # none of them the build host's.
    _write(root / "etc/hostname", "localhost\n")
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    _write(root / "etc/machine-id", "", 0o444)
    (root / "var/lib/dbus/machine-id").unlink(missing_ok=True)


def _tar(root: Path, tarball: Path) -> None:
    _run(
        [_tool("tar"), "--numeric-owner", "--xattrs", "--xattrs-include=*", "-I", "zstd -T0",
         "-C", str(root), "-cf", str(tarball), "."],
        timeout=900,
    )


def _untar(tarball: Path, root: Path) -> None:
    root.mkdir(parents=True)
    _run(
        [_tool("tar"), "--numeric-owner", "--xattrs", "--xattrs-include=*", "-I", "zstd",
         "-C", str(root), "-xpf", str(tarball)],
        timeout=900,
    )


# Read at import: later, the file on disk may be a newer version than the code running.
_ROOTFS_RECIPE = [inspect.getsource(fn) for fn in (_debootstrap, _prepare_rootfs, _apt_sandbox)]


def rootfs_path(suite: str = DEFAULT_SUITE) -> Path:
    """Where build_rootfs caches `suite`'s tarball; the name changes with what goes into it."""
    _check_suite(suite)
    key = _digest(suite, PACKAGES, CLOUD_CFG, HOSTS, _ROOTFS_RECIPE)
    return cache_dir() / f"rootfs-{suite}-{key}.tar.zst"


def build_rootfs(suite: str = DEFAULT_SUITE) -> Path:
    """The cached zstd tarball of a minbase `suite` root with cloud-init and sshd, built once."""
    require(TOOLS)
    tarball = rootfs_path(suite)
    with _locked_build(tarball) as scratch:
        if scratch is None:
            return tarball
        root = scratch / "root"
        _debootstrap(root, suite)
        _prepare_rootfs(root, suite)
        _tar(root, scratch / "rootfs.tar.zst")
        os.rename(scratch / "rootfs.tar.zst", tarball)
    return tarball


# --- relay in namespaces ---------------------------------------------------------------------


class Netns:
    """A network namespace joined to ours by a veth pair on a /30 of VETH_SUPERNET."""

    SLOTS = VETH_SUPERNET.num_addresses // 4

    def __init__(self, slot: int) -> None:
        self.name = f"{NETNS_PREFIX}{slot}"
        self.host_if, self.relay_if = f"prh{slot}", f"prr{slot}"
        subnet = ipaddress.ip_network(f"{VETH_SUPERNET[slot * 4]}/30")
        self.subnet = subnet
        self.host_ip, self.relay_ip = subnet[1], subnet[2]

    @classmethod
    def create(cls) -> Netns:
        ip = _tool("ip")
        start = random.randrange(cls.SLOTS)
        for offset in range(cls.SLOTS):
            net = cls((start + offset) % cls.SLOTS)
            # `ip netns add` fails when the name exists: that is the lock between concurrent relays.
            if _run([ip, "netns", "add", net.name], check=False).returncode:
                continue
            if _run([ip, "-4", "-o", "addr", "show", "to", str(net.subnet)]).stdout.strip():
                _run([ip, "netns", "del", net.name])  # someone else's veth uses this subnet
                continue
            try:
                net._wire()
            except BaseException:
                net.delete()
                raise
            return net
        raise HarnessError(f"no free /30 left in {VETH_SUPERNET}")

    def _wire(self) -> None:
        ip, inside = _tool("ip"), [_tool("ip"), "-n", self.name]
        _run([ip, "link", "add", self.host_if, "type", "veth", "peer", "name", self.relay_if,
              "netns", self.name])
        _run([ip, "addr", "add", f"{self.host_ip}/30", "dev", self.host_if])
        _run([*inside, "addr", "add", f"{self.relay_ip}/30", "dev", self.relay_if])
        _run([ip, "link", "set", "dev", self.host_if, "up"])
        _run([*inside, "link", "set", "dev", self.relay_if, "up"])
        _run([*inside, "link", "set", "dev", "lo", "up"])
        # Static neighbours: while the network is cut, a failed ARP would otherwise turn into
        # "host unreachable" errors, which a dead network never gives.
        _run([ip, "neigh", "replace", str(self.relay_ip), "lladdr", self._mac(inside, self.relay_if),
              "dev", self.host_if, "nud", "permanent"])
        _run([*inside, "neigh", "replace", str(self.host_ip), "lladdr", self._mac([ip], self.host_if),
              "dev", self.relay_if, "nud", "permanent"])

    @staticmethod
    def _mac(ip: list[str], dev: str) -> str:
        return str(json.loads(_run([*ip, "-j", "link", "show", "dev", dev]).stdout)[0]["address"])

    def set_relay_link(self, up: bool) -> None:
        _run([_tool("ip"), "-n", self.name, "link", "set", "dev", self.relay_if, "up" if up else "down"])

    def delete(self) -> None:
        ip = _tool("ip")
        # Deleting the netns alone removes the veth later, asynchronously.
        _run([ip, "link", "del", self.host_if], check=False)
        _run([ip, "netns", "del", self.name], check=False)


def _wait_for_banner(
    address: str, port: int, timeout: float, alive: Callable[[], bool], why_dead: Callable[[], str]
) -> None:
    """Wait until an SSH server answers on address:port, failing early if it died."""
    deadline = time.monotonic() + timeout
    pause = 0.01
    while True:
        try:
            with socket.create_connection((address, port), timeout=5) as conn:
                conn.settimeout(10)
                if conn.makefile("rb").readline(256).startswith(b"SSH-"):
                    return
        except OSError:
            pass
        if not alive():
            raise HarnessError(f"SSH server on {address}:{port} died:\n{why_dead()}")
        if time.monotonic() > deadline:
            raise HarnessError(f"SSH server on {address}:{port} not up after {timeout}s:\n{why_dead()}")
        time.sleep(pause)  # poll interval of this wait-for-condition
        pause = min(pause * 2, 0.5)


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


# --- relay under QEMU -------------------------------------------------------------------------


def _prepare_qemu_root(root: Path, suite: str) -> None:
    with _apt_sandbox(root, suite) as sandbox:
        sandbox.run(["apt-get", "-y", "--no-install-recommends", "install", *QEMU_PACKAGES], timeout=1200)
        sandbox.run(["systemctl", "enable", "systemd-networkd"])
    _write(root / "etc/systemd/network/10-qemu-user.network", QEMU_NETWORK)
    _write(root / "etc/fstab", "/dev/vda / ext4 rw,errors=remount-ro 0 1\n")


def _make_disk(root: Path, raw: Path, qcow2: Path) -> None:
    _run([_tool("mkfs.ext4"), "-q", "-d", str(root), str(raw), "3G"], timeout=900)
    _run([_tool("qemu-img"), "convert", "-O", "qcow2", str(raw), str(qcow2)], timeout=900)


_QEMU_RECIPE = [inspect.getsource(fn) for fn in (_prepare_qemu_root, _make_disk)]


def disk_image_path(suite: str = DEFAULT_SUITE) -> Path:
    """Where build_disk_image caches `suite`'s bootable image (a directory)."""
    key = _digest(rootfs_path(suite).name, QEMU_PACKAGES, QEMU_NETWORK, _QEMU_RECIPE)
    return cache_dir() / f"qemu-{suite}-{key}"


def build_disk_image(suite: str = DEFAULT_SUITE) -> Path:
    """The cached directory with disk.qcow2 (the root plus a kernel), vmlinuz and initrd.img."""
    require(QEMU_TOOLS)
    tarball = build_rootfs(suite)
    image = disk_image_path(suite)
    with _locked_build(image) as scratch:
        if scratch is None:
            return image
        root, out = scratch / "root", scratch / "image"
        _untar(tarball, root)
        _prepare_qemu_root(root, suite)
        out.mkdir()
        # Booting the kernel directly spares the image a bootloader and a partition table.
        for pattern, name in (("vmlinuz-*", "vmlinuz"), ("initrd.img-*", "initrd.img")):
            (found,) = (root / "boot").glob(pattern)
            shutil.copyfile(found, out / name)
        _make_disk(root, scratch / "disk.raw", out / "disk.qcow2")
        os.rename(out, image)
    return image


def _free_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class QemuRelay:
    """The relay booted for real: kernel, systemd, cloud-init from a `cidata` seed, under QEMU.

    TCG, not KVM: the guest hangs under KVM on this host. sshd is forwarded from a free port
    on 127.0.0.1 only. `host_key` (a public key line) pins what sshd must present.
    """

    address = "127.0.0.1"
    port: int  # the forwarded one
    workdir: Path

    def __init__(
        self,
        user_data: str,
        *,
        meta_data: str | None = None,
        suite: str = DEFAULT_SUITE,
        host_key: str | None = None,
        memory_mib: int = 1024,
        boot_timeout: float = 600,
    ) -> None:
        _check_suite(suite)
        self.user_data = user_data
        self.meta_data = meta_data or _default_meta_data()
        self.suite = suite
        self.host_key = host_key
        self.memory_mib = memory_mib
        self.boot_timeout = boot_timeout
        self.up_seconds = 0.0  # from starting QEMU to sshd answering
        self._teardown = ExitStack()

    def __enter__(self) -> Self:
        image = build_disk_image(self.suite)
        with ExitStack() as stack:
            self.workdir = Path(tempfile.mkdtemp(prefix=QEMU_PREFIX))
            stack.callback(shutil.rmtree, self.workdir)
            stack.enter_context(_owning(self.workdir))
            seed = self._seed_iso()
            self.port = _free_loopback_port()
            started = time.monotonic()
            with (self.workdir / "qemu.log").open("wb") as log:
                self._qemu = subprocess.Popen(
                    self._argv(image, seed),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    preexec_fn=_die_with_parent,
                )
            stack.callback(self._stop)
            _wait_for_banner(self.address, self.port, self.boot_timeout,
                             lambda: self._qemu.poll() is None, self._diagnostics)
            self._check_host_key()
            self.up_seconds = time.monotonic() - started
            self._teardown = stack.pop_all()
        return self

    def __exit__(self, *exc: object) -> None:
        self._teardown.close()

    def _seed_iso(self) -> Path:
        seed = self.workdir / "seed"
        _write(seed / "user-data", self.user_data, 0o600)
        _write(seed / "meta-data", self.meta_data, 0o600)
        iso = self.workdir / "seed.iso"
        _run([_tool("genisoimage"), "-quiet", "-output", str(iso), "-volid", "cidata", "-joliet",
              "-rock", str(seed / "user-data"), str(seed / "meta-data")])
        return iso

    def _argv(self, image: Path, seed: Path) -> list[str]:
        return [
            _tool("qemu-system-x86_64"), "-accel", "tcg", "-m", str(self.memory_mib), "-smp", "2",
            "-nographic", "-nodefaults", "-no-user-config",
            "-serial", f"file:{self.workdir / 'console.log'}",
            "-kernel", str(image / "vmlinuz"), "-initrd", str(image / "initrd.img"),
            "-append", "root=/dev/vda rw console=ttyS0",
            # snapshot=on: the guest's writes go to a throwaway overlay, the cached image stays pristine.
            "-drive", f"file={image / 'disk.qcow2'},if=virtio,format=qcow2,snapshot=on",
            "-drive", f"file={seed},if=virtio,format=raw,readonly=on",
            "-netdev", f"user,id=net0,hostfwd=tcp:{self.address}:{self.port}-:{SSH_PORT}",
            "-device", "virtio-net-pci,netdev=net0",
            "-device", "virtio-rng-pci",
        ]

    def _check_host_key(self) -> None:
        """Let a real ssh client verify the pin (ssh-keyscan from bookworm stalls against the
        trixie guest's ed25519 kex); without credentials it stops at "Permission denied"."""
        if self.host_key is None:
            return
        known_hosts = self.workdir / "known_hosts"
        known_hosts.write_text(f"[{self.address}]:{self.port} {self.host_key.strip()}\n")
        options = {
            "BatchMode": "yes", "StrictHostKeyChecking": "yes", "UserKnownHostsFile": str(known_hosts),
            "GlobalKnownHostsFile": "/dev/null", "PubkeyAuthentication": "no", "ConnectTimeout": "60",
        }
        probe = _run(
            [_tool("ssh"), "-F", "/dev/null", *(f"-o{key}={value}" for key, value in options.items()),
             "-p", str(self.port), f"host-key-probe@{self.address}", "true"],
            check=False,
            stdin=subprocess.DEVNULL,
        )
        if "Permission denied" not in probe.stderr:
            raise HarnessError(f"sshd does not present the pinned host key:\n{probe.stderr}{self._diagnostics()}")

    def console_log(self) -> str:
        log = self.workdir / "console.log"
        return log.read_text(errors="replace") if log.exists() else ""

    def _diagnostics(self) -> str:
        qemu = (self.workdir / "qemu.log").read_text(errors="replace")
        return f"--- qemu\n{qemu}--- serial console\n{_tail(self.console_log(), 60)}"

    def wait_for_poweroff(self, timeout: float) -> int:
        """Wait until the guest powers itself off (QEMU exits); return QEMU's exit code."""
        return self._qemu.wait(timeout=timeout)

    def _stop(self) -> None:
        if self._qemu.poll() is None:
            self._qemu.terminate()
            try:
                self._qemu.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._qemu.kill()
                self._qemu.wait()


# --- maintenance and CLI ---------------------------------------------------------------------


def cleanup_stale() -> list[str]:
    """Remove what relays killed without teardown (SIGKILL) left, and cached images this
    version of the harness would not use. Run it while no relay is starting."""
    ip = _tool("ip")
    removed, live_netns = [], set()
    for workdir in (*_workdirs(tempfile.gettempdir()), *_workdirs("/dev/shm")):
        if _owned(workdir):
            marker = workdir / "netns"
            live_netns.add(marker.read_text() if marker.exists() else "")
        else:
            shutil.rmtree(workdir)
            removed.append(str(workdir))
    for line in _run([ip, "netns", "list"]).stdout.splitlines():
        name = line.split()[0]
        stale = name.startswith(NETNS_PREFIX) and name not in live_netns
        if stale and not _run([ip, "netns", "pids", name]).stdout.strip():
            Netns(int(name.removeprefix(NETNS_PREFIX))).delete()
            removed.append(name)
    current = {path.name for suite in SUITES for path in (rootfs_path(suite), disk_image_path(suite))}
    for entry in cache_dir().glob("*"):
        if entry.name.startswith(("rootfs-", "qemu-")) and entry.name not in current:
            with _locked_build(entry) as scratch:
                if scratch is None:  # built, so nobody is building it
                    shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
                    removed.append(str(entry))
            (entry.parent / f".{entry.name}.lock").unlink()
    return removed


def _workdirs(parent: str) -> list[Path]:
    return [*Path(parent).glob(f"{NETNS_PREFIX}*"), *Path(parent).glob(f"{QEMU_PREFIX}*")]


@contextmanager
def _owning(workdir: Path) -> Iterator[None]:
    """Hold a lock on `workdir` while it is in use: how cleanup_stale tells live relays."""
    with open(workdir / ".owner", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _owned(workdir: Path) -> bool:
    try:
        with open(workdir / ".owner") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return False
    except BlockingIOError:
        return True
    except FileNotFoundError:
        return False


def _wait_for_interrupt() -> None:
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.relay_harness", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="build (or find) the cached root image")
    run = commands.add_parser("run", help="bring a relay up and keep it until Ctrl-C")
    commands.add_parser("cleanup", help="remove what a killed run left behind")
    for command in (build, run):
        command.add_argument("--suite", choices=SUITES, default=DEFAULT_SUITE)
        command.add_argument("--qemu", action="store_true", help="a full boot under QEMU")
    run.add_argument("--user-data", type=Path, required=True)
    run.add_argument("--meta-data", type=Path)
    run.add_argument("--host-key", type=Path, help="public key sshd must present (--qemu)")
    args = parser.parse_args(argv)

    if args.command == "build":
        began = time.monotonic()
        path = build_disk_image(args.suite) if args.qemu else build_rootfs(args.suite)
        print(f"{path} (in {time.monotonic() - began:.1f}s)")
    elif args.command == "run":
        meta = args.meta_data.read_text() if args.meta_data else None
        user_data = args.user_data.read_text()
        if args.qemu:
            host_key = args.host_key.read_text() if args.host_key else None
            relay: Relay | QemuRelay = QemuRelay(user_data, meta_data=meta, suite=args.suite, host_key=host_key)
        else:
            relay = Relay(user_data, meta_data=meta, suite=args.suite)
        with relay:
            print(f"relay up at {relay.address} port {relay.port} in {relay.up_seconds:.1f}s")
            if isinstance(relay, Relay):
                print(f"cloud-init stages: {relay.stage_seconds}\nroot: {relay.root}")
            print("Ctrl-C to tear down", flush=True)
            _wait_for_interrupt()
    else:
        for removed in cleanup_stale():
            print(f"removed {removed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
