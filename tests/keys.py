"""Real keys for tests, made by the real ssh-keygen in temp folders (never committed)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class KeyFile:
    path: Path  # the private key

    @property
    def public_line(self) -> str:
        return Path(f"{self.path}.pub").read_text().strip()


def make_key(folder: Path, name: str, kind: str = "ed25519", bits: int | None = None) -> KeyFile:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    argv = ["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", f"{name}@test", "-f", str(path)]
    if bits:
        argv[4:4] = ["-b", str(bits)]
    subprocess.run(argv, check=True)
    return KeyFile(path)
