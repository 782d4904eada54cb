"""Test relays: what EC2 does with our cloud-init user data, reproduced on this machine.

`Relay` unpacks a cached Debian root, runs the four real cloud-init stages on the exact
user-data inside private namespaces (mount, pid, uts, ipc, net) with a chroot, then serves
it with the root's own sshd on a veth address reachable from the caller's network namespace.
`QemuRelay` boots the same root with a real kernel under QEMU (TCG) for what a chroot cannot
show: systemd, timers, power-off.

By hand:
    python -m tests.harness build [--suite bookworm] [--qemu]
    python -m tests.harness run --user-data FILE [--meta-data FILE] [--suite S] [--qemu]
    python -m tests.harness cleanup     # what SIGKILLed runs left, outdated cached images

Everything needs root. Roots are cached as zstd tarballs in $PAIRING_CACHE
(default ~/.cache/pairing), keyed by a hash of what goes into them.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from .cleanup import cleanup_stale
from .qemu import QemuRelay, build_disk_image
from .relay import Relay
from .rootfs import DEFAULT_SUITE, SUITES, build_rootfs

def _wait_for_interrupt() -> None:
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.harness", description=__doc__,
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
