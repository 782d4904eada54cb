"""Where pairing's commands run Pulumi, and what the cloud path needs installed.

The Pulumi program ships inside the package (pulumi_project/: Pulumi.yaml and __main__.py; the
relay's static files in cloud-init/), so an installed copy (`pipx install .`) deploys as a clone
does. A clone keeps its own root, where `pulumi up` runs too: its stacks' config files
(Pulumi.STACK.yaml, which hold the passphrase's salt) stay where they were. An installed copy works
in a copy of the packaged project under the user's data folder: Pulumi writes each stack's config
file beside Pulumi.yaml, and site-packages may be read-only or replaced by an upgrade.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
from pathlib import Path

from .backend import data_dir, private_folder

PACKAGE = Path(__file__).resolve().parent
PACKAGED = PACKAGE / "pulumi_project"
CLONE = PACKAGE.parent
# The aws extra (pyproject.toml): import names, and the distributions that give them.
CLOUD_PACKAGES = {"pulumi": "pulumi", "pulumi_aws": "pulumi-aws", "pulumi_tls": "pulumi-tls"}


def is_clone() -> bool:
    """Running from a checkout (an editable install, or python -m pairing in it), not from site-packages."""
    return (CLONE / "Pulumi.yaml").is_file() and (CLONE / "__main__.py").is_file()


def source_dir() -> Path:
    """A folder with the project's Pulumi.yaml, for the Pulumi CLI's read-only commands (stack output)."""
    return CLONE if is_clone() else PACKAGED


def work_dir(home: Path | None = None) -> Path:
    """The Automation API's folder: the clone's root, or the packaged project copied (again when it
    changed, as after an upgrade) to DATA/pulumi-project, each file replaced whole."""
    if is_clone():
        return CLONE
    target = data_dir(home) / "pulumi-project"
    private_folder(target.parent)
    private_folder(target)
    for source in sorted(PACKAGED.iterdir()):
        if not source.is_file() or source.suffix == ".pyc":
            continue
        content = source.read_bytes()
        path = target / source.name
        if path.is_file() and path.read_bytes() == content:
            continue
        fd, temp = tempfile.mkstemp(prefix=f".{source.name}.", dir=target)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(content)
            os.replace(temp, path)
        finally:
            Path(temp).unlink(missing_ok=True)
    return target


def interpreter_env() -> dict[str, str]:
    """The installed copy's Pulumi.yaml names no virtualenv: the program runs in this interpreter,
    the one that has pairing and the aws extra (a clone's Pulumi.yaml names its venv instead)."""
    return {} if is_clone() else {"PULUMI_PYTHON_CMD": sys.executable}


def missing_cloud_packages() -> list[str]:
    """The aws extra's distributions not installed, by the names pip takes."""
    return [dist for module, dist in CLOUD_PACKAGES.items() if importlib.util.find_spec(module) is None]


def cloud_packages_line(missing: list[str]) -> str:
    """One line: what is missing, and the install that brings it."""
    return (f"the relay needs the aws extra, and {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not "
            "installed; in your clone of pairing run: pip install '.[aws]' (pipx: pipx install --force '.[aws]'), "
            "or use pairing direct, which needs no cloud")
