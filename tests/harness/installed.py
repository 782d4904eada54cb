"""pairing as a user installs it: the wheel built from this checkout, `pip install`ed into a fresh venv
outside the repository, in a folder every uid may enter (mode 755 under the temp folder).

The unprivileged host's runs (unprivileged.py) use it: a checkout cloned into a mode-700 folder such as
/root is out of uid 65534's reach, and so is the tests' venv there. Made once a test session, offline:
the wheel with `pip wheel --no-build-isolation --no-index`, installed with `pip install --no-index
--no-deps`, and then its base dependencies (Requires-Dist without extras, followed through) copied in
whole from the tests' venv, dist-info and all, as pip had installed them there. So the venv holds the
base install exactly: no pulumi, no test tools, and no path back into the checkout.
"""

from __future__ import annotations

import atexit
import functools
import importlib.metadata
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from .host import PROJECT

# The system's interpreter of the tests' version: a venv's symlink to an interpreter under root's home
# (pyenv's, say) would be out of uid 65534's reach. The copied dependencies' binaries fit it.
SYSTEM_PYTHON = Path(f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}")
PIP = (sys.executable, "-m", "pip", "-q", "--disable-pip-version-check")
# What the wheel is built from: what pyproject.toml packages, and the README it names.
SOURCES = ("pyproject.toml", "README.md", "pairing")


@dataclass(frozen=True)
class Installed:
    wheel: Path
    venv: Path

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def pairing(self) -> Path:
        """The console script pip wrote."""
        return self.venv / "bin" / "pairing"

    @property
    def site(self) -> Path:
        return self.venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"


def build_wheel(source: Path, into: Path) -> Path:
    """The wheel of the checkout at `source`, built from a copy (setuptools writes build/ and *.egg-info
    beside what it builds, and a checkout is no place for them)."""
    copy = into / "source"
    copy.mkdir(parents=True)
    for name in SOURCES:
        if (source / name).is_dir():
            shutil.copytree(source / name, copy / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(source / name, copy / name)
    wheels = into / "wheels"
    subprocess.run([*PIP, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(wheels), str(copy)],
                   check=True, capture_output=True, text=True)
    shutil.rmtree(copy)
    return next(wheels.glob("pairing-*.whl"))


def base_dependencies(requires: list[str]) -> list[importlib.metadata.Distribution]:
    """The distributions `requires` needs without extras, followed through, as installed in the tests' venv."""
    found: dict[str, importlib.metadata.Distribution] = {}
    todo = list(requires)
    while todo:
        requirement = Requirement(todo.pop())
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        name = canonicalize_name(requirement.name)
        if name in found:
            continue
        found[name] = importlib.metadata.distribution(requirement.name)
        todo.extend(found[name].requires or [])
    return list(found.values())


def copy_distribution(distribution: importlib.metadata.Distribution, site: Path) -> None:
    """Every top-level file and folder the distribution's RECORD names (modules, dist-info, .so)."""
    tops = {Path(str(file)).parts[0] for file in distribution.files or [] if not str(file).startswith("..")}
    origin = Path(distribution.locate_file(""))
    for top in sorted(tops - {"__pycache__"}):
        if (site / top).exists():
            continue
        if (origin / top).is_dir():
            shutil.copytree(origin / top, site / top, ignore=shutil.ignore_patterns("__pycache__"))
        elif (origin / top).exists():
            shutil.copy2(origin / top, site / top)


def install(wheel: Path, venv: Path) -> Installed:
    """A fresh venv of the system's interpreter with the wheel and its base dependencies."""
    if not SYSTEM_PYTHON.exists():
        raise RuntimeError(f"{SYSTEM_PYTHON} is missing: the installed copy runs on the system's python of the "
                           "tests' version; make the tests' venv with it (python3 -m venv venv, as .ci/run does)")
    subprocess.run([str(SYSTEM_PYTHON), "-m", "venv", "--without-pip", str(venv)], check=True, capture_output=True)
    installed = Installed(wheel, venv)
    subprocess.run([*PIP, "--python", str(installed.python), "install", "--no-index", "--no-deps", str(wheel)],
                   check=True, capture_output=True, text=True)
    metadata = importlib.metadata.Distribution.at(next(installed.site.glob("pairing-*.dist-info")))
    for distribution in base_dependencies(metadata.requires or []):
        copy_distribution(distribution, installed.site)
    return installed


@functools.cache
def installed() -> Installed:
    """This checkout's wheel, installed once a test session; removed when the tests end."""
    top = Path(tempfile.mkdtemp(prefix="pairing-installed-"))
    atexit.register(shutil.rmtree, top, True)
    top.chmod(0o755)
    return install(build_wheel(PROJECT, top), top / "venv")
