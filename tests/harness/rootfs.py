"""The relays' root filesystem: a minbase Debian with cloud-init and sshd, built once by
debootstrap and apt in a sandbox and cached as a zstd tarball in $PAIRING_CACHE."""

from __future__ import annotations

import fcntl
import inspect
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .commands import _die_with_parent, _digest, _run, _tool, _write, cache_dir, require
from .sandbox import Sandbox

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
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_SECURITY_MIRROR = "http://deb.debian.org/debian-security"
HOST_SOURCES = Path("/etc/apt/sources.list.d/debian.sources")

# Keeps cloud-init away from anything that is not the relay's own: no network configuration
# (it would touch the host's NIC in a chroot), no partition or filesystem growing. Its text is part
# of the images' cache key (rootfs_path), so it still names the module's old place.
CLOUD_CFG = """\
# Written by tests/relay_harness.py.
datasource_list: [NoCloud, None]
network: {config: disabled}
growpart: {mode: "off"}
resize_rootfs: false
"""
HOSTS = "127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n"
TOOLS = ("debootstrap", "zstd", "tar", "unshare", "nsenter", "chroot", "ip")


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


