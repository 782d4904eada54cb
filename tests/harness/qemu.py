"""The relay booted for real under QEMU (TCG) from the same root plus a kernel: for what a chroot
cannot show (systemd, timers, power-off)."""

from __future__ import annotations

import inspect
import os
import shutil
import socket
import subprocess
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Self

from .commands import (HarnessError, _default_meta_data, _die_with_parent, _digest, _run, _tail, _tool,
                       _wait_for_banner, _write, cache_dir, require)
from .relay import SSH_PORT
from .rootfs import DEFAULT_SUITE, TOOLS, _apt_sandbox, _check_suite, _locked_build, _untar, build_rootfs, rootfs_path
from .workdirs import _owning

# A full boot additionally needs a kernel and udev to load its modules; systemd-networkd (in
# the systemd package) brings up the NIC, which cloud-init must not configure (see CLOUD_CFG).
QEMU_PACKAGES = ("linux-image-cloud-amd64", "udev")
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
QEMU_PREFIX = "pairing-qemu-"
QEMU_TOOLS = (*TOOLS, "qemu-system-x86_64", "qemu-img", "mkfs.ext4", "genisoimage", "ssh")


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


