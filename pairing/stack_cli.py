"""Reading the stack outputs through the Pulumi CLI (`pulumi stack output`), or from a file of its JSON.

Whatever comes back is input: StackOutputs.from_json checks every field.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Mapping

from .outputs import OutputsError, StackOutputs
from .sshkeys import shorten

PROJECT_DIR = Path(__file__).resolve().parent.parent


def read_outputs(file: Path | None = None, stack: str | None = None, env: Mapping[str, str] | None = None) -> StackOutputs:
    """The outputs from a JSON file, or from the Pulumi CLI for a stack (default: the selected one)."""
    if file is not None:
        try:
            data = json.loads(Path(file).read_text())
        except (OSError, ValueError) as exc:
            raise OutputsError(f"--outputs {file}: cannot read it as JSON ({shorten(str(exc), 120)})") from None
        return StackOutputs.from_json(data, source=str(file))
    if shutil.which("pulumi") is None:
        raise OutputsError("the Pulumi CLI is not installed; install it, or pass --outputs FILE (JSON from `pulumi stack output --json --show-secrets`)")
    argv = ["pulumi", "stack", "output", "--json", "--show-secrets"] + (["--stack", stack] if stack else [])
    cwd = PROJECT_DIR if (PROJECT_DIR / "Pulumi.yaml").exists() else None
    result = subprocess.run(argv, capture_output=True, text=True, cwd=cwd, env={**os.environ, **(env or {})})
    if result.returncode != 0:
        detail = (result.stderr.strip().splitlines() or ["no message"])[-1]
        raise OutputsError(f"`{' '.join(argv)}` failed: {detail}")
    try:
        data = json.loads(result.stdout)
    except ValueError:
        raise OutputsError(f"`{' '.join(argv)}` printed no JSON; run it yourself to see why") from None
    return StackOutputs.from_json(data, source=f"stack {stack or '(selected)'}")
