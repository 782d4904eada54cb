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

from . import project
from .outputs import OutputsError, StackOutputs
from .sshkeys import shorten


class NoStack(OutputsError):
    """The backend has no such stack: no relay, rather than a failure (pairing status tells them apart)."""


def read_outputs(file: Path | None = None, stack: str | None = None, env: Mapping[str, str] | None = None) -> StackOutputs:
    """The outputs from a JSON file, or from the Pulumi CLI for a stack (default: the selected one)."""
    data = read_outputs_json(file, stack, env)
    return StackOutputs.from_json(data, source=str(file) if file is not None else f"stack {stack or '(selected)'}")


def read_outputs_json(file: Path | None = None, stack: str | None = None, env: Mapping[str, str] | None = None) -> object:
    """The outputs' JSON as read, unchecked ({} for a stack never deployed or destroyed): StackOutputs.from_json checks it."""
    if file is not None:
        try:
            return json.loads(Path(file).read_text())
        except (OSError, ValueError) as exc:
            raise OutputsError(f"--outputs {file}: cannot read it as JSON ({shorten(str(exc), 120)})") from None
    if shutil.which("pulumi") is None:
        raise OutputsError("the Pulumi CLI is not installed; install it, or pass --outputs FILE (JSON from `pulumi stack output --json --show-secrets`)")
    argv = ["pulumi", "stack", "output", "--json", "--show-secrets"] + (["--stack", stack] if stack else [])
    # In the project's folder: Pulumi finds a file backend's stacks under the project's name.
    result = subprocess.run(argv, capture_output=True, text=True, cwd=project.source_dir(),
                            env={**os.environ, **(env or {})})
    if result.returncode != 0:
        detail = (result.stderr.strip().splitlines() or ["no message"])[-1]
        # Pulumi's words for a stack that does not exist: "error: no stack named 'NAME' found".
        kind = NoStack if "no stack named" in detail.lower() else OutputsError
        raise kind(f"`{' '.join(argv)}` failed: {detail}")
    try:
        return json.loads(result.stdout)
    except ValueError:
        raise OutputsError(f"`{' '.join(argv)}` printed no JSON; run it yourself to see why") from None
