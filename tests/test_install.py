"""pairing as `pip install .` (or `pipx install .`) leaves it: the wheel built from this checkout, installed
in a fresh venv outside the repository (tests/harness/installed.py) with the base install's packages only.
It runs, its `pairing direct` lets a guest type into the host's pane, `pairing up` names the missing aws
extra in one line, and it carries the Pulumi program and the relay's files and finds them. A clone in a
mode-700 folder runs its unprivileged join from there: tests/test_private_clone.py."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import zipfile
from pathlib import Path

import yaml

from pairing import project
from pairing.relay_documents import _placeholder_host_key, user_data
from pairing.settings import settings_from

from .harness import PROJECT, Hook, wait_until
from .harness.installed import PIP, installed
from .test_direct import HOST_IP, READY, direct, lan, land  # noqa: F401 (fixtures)

CLEAN_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


def run_installed(*argv: str, cwd: Path, home: Path) -> subprocess.CompletedProcess:
    """The installed console script, from a folder outside the repository, nothing of the tests' in its env."""
    return subprocess.run([str(installed().pairing), *argv], cwd=cwd, capture_output=True, text=True, timeout=60,
                          env={"HOME": str(home), "PATH": CLEAN_PATH, "LANG": "C.UTF-8"}, stdin=subprocess.DEVNULL)


def test_the_installed_command_runs_from_any_folder_with_the_base_install_only(tmp_path, keys):
    copy = installed()
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    version = run_installed("--version", cwd=tmp_path, home=home)
    assert (version.returncode, version.stdout, version.stderr) == (0, "pairing 0.1.0\n", "")
    for command in ("direct", "up"):  # up's help too: the aws extra is needed to deploy, not to read about it
        shown = run_installed(command, "--help", cwd=tmp_path, home=home)
        assert shown.returncode == 0 and shown.stdout.startswith(f"usage: pairing {command} "), shown
    # pip agrees the base install is whole, and it holds no cloud package.
    check = subprocess.run([*PIP, "--python", str(copy.python), "check"], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    names = {p.name.split("-")[0].lower() for p in copy.site.glob("*.dist-info")}
    assert "pairing" in names and not names & {"pulumi", "pulumi_aws", "pulumi_tls", "pytest"}, names
    # Every base command's module imports without pulumi; the code is the installed copy's.
    probe = ("import sys, pairing, pairing.cli, pairing.direct, pairing.doctor, pairing.status, pairing.invite; "
             "print(pairing.__file__); print(sorted(m for m in sys.modules if m.startswith('pulumi')))")
    seen = subprocess.run([str(copy.python), "-c", probe], cwd=tmp_path, capture_output=True, text=True, check=True,
                          env={"PATH": CLEAN_PATH})
    assert seen.stdout == f"{copy.site}/pairing/__init__.py\n[]\n", seen.stdout + seen.stderr


def test_up_without_the_aws_extra_says_so_in_one_line(tmp_path, keys):
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_ed25519").write_bytes(keys["host"].path.read_bytes())
    (home / ".ssh" / "id_ed25519").chmod(0o600)
    (home / ".ssh" / "id_ed25519.pub").write_text(keys["host"].public_line + "\n")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    result = run_installed("up", "--guest", keys["guest"].public_line, "--region", "eu-west-1", "--sshd-key",
                           keys["sshd"].public_line, cwd=cwd, home=home)
    assert (result.returncode, result.stdout) == (2, ""), result
    assert result.stderr == (
        "pairing up: the relay needs the aws extra, and pulumi, pulumi-aws, pulumi-tls are not installed; in your "
        "clone of pairing run: pip install '.[aws]' (pipx: pipx install --force '.[aws]'), or use pairing direct, "
        "which needs no cloud\n")
    assert list(cwd.iterdir()) == [] and not [p for p in home.rglob("*") if p.is_file() and ".ssh" not in p.parts]
    for command in ("down", "ls"):
        other = run_installed(command, cwd=cwd, home=home)
        assert other.returncode == 2 and other.stderr.startswith(f"pairing {command}: the relay needs the aws extra"), other


def test_the_wheel_carries_the_pulumi_program_and_the_installed_copy_finds_it(tmp_path, keys):
    copy = installed()
    names = set(zipfile.ZipFile(copy.wheel).namelist())
    shipped = {"pairing/pulumi_project/Pulumi.yaml", "pairing/pulumi_project/__main__.py", "pairing/gate.py",
               "pairing/hook/__init__.py", "pairing/hook/reaper.py", "pairing/tunnel/__init__.py"}
    shipped |= {str(p.relative_to(PROJECT)) for p in (PROJECT / "pairing" / "cloud-init").rglob("*") if p.is_file()}
    assert shipped <= names, sorted(shipped - names)
    # The packaged project is the clone's, under the same name (so both see the same stacks).
    packaged = yaml.safe_load((PROJECT / "pairing/pulumi_project/Pulumi.yaml").read_text())
    assert packaged["name"] == yaml.safe_load((PROJECT / "Pulumi.yaml").read_text())["name"] == "pairing"
    assert "virtualenv" not in packaged["runtime"]["options"]
    # ...and the same program: both __main__.py files are pairing.program's declare(), past their docstrings.
    bodies = [[ast.dump(node) for node in ast.parse(path.read_text()).body[1:]] for path in
              (PROJECT / "__main__.py", PROJECT / "pairing/pulumi_project/__main__.py")]
    assert bodies[0] == bodies[1] and "declare" in bodies[0][-1]
    # The installed copy renders the relay's user data from its own cloud-init files, byte for byte as here,
    # and works in a copy of its own project under the user's data folder (no Pulumi run).
    raw = {"guestKeys": [keys["guest"].public_line], "hostPublicKey": keys["host"].public_line,
           "hostSshdKey": keys["sshd"].public_line}
    script = (
        "import json, sys; from pathlib import Path; from pairing import project, relay_documents as d; "
        "from pairing.settings import settings_from; "
        "s = settings_from(json.loads(sys.argv[1])); w = project.work_dir(Path(sys.argv[2])); "
        "print(json.dumps({'templates': str(d.TEMPLATES), 'clone': project.is_clone(), 'work': str(w), "
        "'source': str(project.source_dir()), 'env': project.interpreter_env(), "
        "'user_data': d.user_data(s, d._placeholder_host_key())}))")
    home = tmp_path / "home"
    result = subprocess.run([str(copy.python), "-c", script, json.dumps(raw), str(home)], cwd=tmp_path,
                            capture_output=True, text=True, env={"PATH": CLEAN_PATH})
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen["templates"] == f"{copy.site}/pairing/cloud-init" and seen["clone"] is False
    assert seen["source"] == f"{copy.site}/pairing/pulumi_project"
    assert seen["env"] == {"PULUMI_PYTHON_CMD": str(copy.python)}
    assert seen["user_data"] == user_data(settings_from(raw), _placeholder_host_key())
    work = home / ".local/share/pairing/pulumi-project"
    assert seen["work"] == str(work) and oct(work.stat().st_mode & 0o777) == "0o700"
    assert sorted(p.name for p in work.iterdir()) == ["Pulumi.yaml", "__main__.py"]
    for path in work.iterdir():
        assert path.read_bytes() == (PROJECT / "pairing/pulumi_project" / path.name).read_bytes()
    # Again, after an upgrade changed one file: that one is replaced, the rest and a stack's config left be.
    (work / "Pulumi.yaml").write_text("name: older\n")
    (work / "Pulumi.pair-alice-laptop.yaml").write_text("encryptionsalt: v1:kept\n")
    untouched = (work / "__main__.py").stat().st_mtime_ns
    again = subprocess.run([str(copy.python), "-c", "import sys; from pathlib import Path; from pairing import project; "
                            "project.work_dir(Path(sys.argv[1]))", str(home)], cwd=tmp_path, capture_output=True,
                           text=True, env={"PATH": CLEAN_PATH})
    assert again.returncode == 0, again.stderr
    assert (work / "Pulumi.yaml").read_bytes() == (PROJECT / "pairing/pulumi_project/Pulumi.yaml").read_bytes()
    assert (work / "Pulumi.pair-alice-laptop.yaml").read_text() == "encryptionsalt: v1:kept\n"
    assert (work / "__main__.py").stat().st_mtime_ns == untouched
    # Here, in the checkout, pairing keeps the clone's own root, as `pulumi up` does.
    assert project.is_clone() and project.work_dir() == project.source_dir() == PROJECT


def test_a_guest_joins_a_direct_session_run_by_the_installed_command(direct):  # noqa: F811 (fixture)
    """The console script pip wrote, as uid 65534 (tests/test_direct.py's host): the guest types, the host sees it."""
    copy = installed()
    hook = Hook(direct.host.top / "hooks", direct.argv("--listen", HOST_IP), direct.host.env,
                prefix=direct.host.prefix(python=False), command="direct", program=(str(copy.pairing),))
    guest = None
    try:
        hook.wait_for(READY)
        guest = land(direct)
        guest.type("echo installed-$((6*7))")
        wait_until(lambda: "installed-42" in direct.tmux.screen("pair"), 10, "the guest's line in the host's pane",
                   show=lambda: direct.tmux.screen("pair"))
        # What the guest's key is forced to is the installed copy's gate.
        config = next((direct.host.home / ".local/state/pairing/sshd").glob("pair-*/authorized_keys"))
        assert f"{copy.site}/pairing/gate.py" in config.read_text()
    finally:
        if guest:
            guest.disconnect()
        assert hook.stop() == 0, hook.text
    assert "Traceback" not in hook.text, hook.text


def test_the_quick_starts_install_leaves_the_clones_git_status_clean(tmp_path):
    """`pip install .` builds in the folder it is given: setuptools' build/ and *.egg-info stay out of git's way."""
    clone = tmp_path / "clone"
    git = {"PATH": CLEAN_PATH, "HOME": str(tmp_path), "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull}
    subprocess.run(["git", "clone", "-q", str(PROJECT), str(clone)], check=True, capture_output=True, env=git)
    subprocess.run([*PIP, "install", "--no-deps", "--no-build-isolation", "--no-index", "--target",
                    str(tmp_path / "target"), "."], cwd=clone, check=True, capture_output=True, text=True)
    assert (clone / "build").is_dir()  # what is ignored is there
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=clone, env=git,
                            capture_output=True, text=True, check=True)
    assert status.stdout == ""
