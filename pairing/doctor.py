"""`pairing doctor`: can this machine host a pairing session? One line per check, with the fix.

Nothing here changes anything or calls AWS: credentials are checked for
being resolvable (where the AWS SDKs would find them), not for working.
"""

from __future__ import annotations

import configparser
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

from .check import Check
from .doctor_identity import check_identity
from .settings import LOCAL_SSHD_KEY

MIN_PYTHON = (3, 10)
MIN_OPENSSH = (8, 5)  # KnownHostsCommand, which pins both hops inline
SYSTEM_SSHD = Path("/usr/sbin/sshd")


def _version(argv: list[str]) -> str | None:
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (result.stdout + result.stderr).strip().splitlines()[0] if result.returncode == 0 else None


def check_python() -> Check:
    found = sys.version_info[:2]
    text = ".".join(map(str, sys.version_info[:3]))
    return Check("python", found >= MIN_PYTHON, text, f"use Python {'.'.join(map(str, MIN_PYTHON))} or newer")


def check_pulumi() -> Check:
    if shutil.which("pulumi") is None:
        return Check("pulumi", False, "the Pulumi CLI is not installed",
                     "install it: curl -fsSL https://get.pulumi.com | sh (or brew install pulumi), then open a new shell")
    version = _version(["pulumi", "version"])
    return Check("pulumi", version is not None, version or "`pulumi version` failed", "reinstall the Pulumi CLI")


def check_aws_credentials(env: dict[str, str] | None = None, home: Path | None = None) -> Check:
    env = dict(os.environ if env is None else env)
    home = home or Path.home()
    if env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
        return Check("aws credentials", True, "from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (not verified against AWS)")
    profile, config, settings = aws_profile_config(env, home)
    credentials = Path(env.get("AWS_SHARED_CREDENTIALS_FILE", home / ".aws" / "credentials"))
    found = set(_profile(credentials, profile)) | set(settings)
    usable = found & {"aws_access_key_id", "sso_session", "sso_start_url", "credential_process", "role_arn", "web_identity_token_file"}
    if usable:
        return Check("aws credentials", True,
                     f"profile {profile!r} in {credentials if 'aws_access_key_id' in found else config} "
                     f"({', '.join(sorted(usable))}; not verified against AWS)")
    if env.get("AWS_CONTAINER_CREDENTIALS_FULL_URI") or env.get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"):
        return Check("aws credentials", True, "from the container credentials endpoint (not verified)")
    return Check("aws credentials", False,
                 f"none in the environment or for profile {profile!r} in {credentials} / {config} "
                 "(an EC2 instance role was not checked)",
                 "run `aws configure` (or `aws sso login`), or export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")


def aws_profile_config(env: dict[str, str], home: Path) -> tuple[str, Path, dict[str, str]]:
    """The active profile (AWS_PROFILE, else default), the config file (AWS_CONFIG_FILE, else ~/.aws/config) and
    that profile's settings there ([default] or [profile NAME]): for credentials here, for the region in `up`."""
    profile = env.get("AWS_PROFILE") or "default"
    config = Path(env.get("AWS_CONFIG_FILE") or home / ".aws" / "config")
    return profile, config, _profile(config, "default" if profile == "default" else f"profile {profile}")


def _profile(path: Path, section: str) -> dict[str, str]:
    parser = configparser.RawConfigParser()
    try:
        parser.read(path)
    except (configparser.Error, UnicodeDecodeError):
        return {}
    return {key: value.strip() for key, value in parser[section].items()} if parser.has_section(section) else {}


def check_sshd(target: tuple[str, int] = ("localhost", 22), host_key: Path | None = LOCAL_SSHD_KEY,
               sshd_binary: Path = SYSTEM_SSHD) -> Check:
    """host_key None: its key line was given (--sshd-key), so the file need not be readable."""
    host, port = target
    try:
        with socket.create_connection(target, timeout=3) as sock:
            sock.settimeout(3)
            banner = sock.makefile("rb").readline(256).decode("ascii", "replace").strip()
    except OSError as exc:
        return Check("sshd", False, f"nothing answers on {host}:{port} ({exc.strerror or exc})",
                     _start_sshd(sshd_binary))
    if not banner.startswith("SSH-"):
        return Check("sshd", False, f"{host}:{port} answers {banner[:40]!r}, not SSH", "pass --target with your sshd")
    if host_key is None:
        return Check("sshd", True, f"{banner} on {host}:{port}; host key given with --sshd-key")
    if not os.access(host_key, os.R_OK):
        return Check("sshd", False, f"{banner} on {host}:{port}, but {host_key} is not readable",
                     "pass its key line to pairing up with --sshd-key (ssh-keyscan -t ed25519 localhost), "
                     "or make the file readable")
    return Check("sshd", True, f"{banner} on {host}:{port}; host key {host_key}")


def _start_sshd(sshd_binary: Path) -> str:
    """Installed but not answering: start it (installing it again would change nothing)."""
    if sshd_binary.exists():
        return (f"start it: sudo systemctl start ssh ({sshd_binary} is installed; macOS: System Settings > "
                "General > Sharing > Remote Login), or pass --target HOST:PORT")
    return ("install and start it (Debian/Ubuntu: sudo apt install openssh-server; macOS: System Settings > "
            "General > Sharing > Remote Login), or pass --target HOST:PORT")


def check_sshd_binary(direct: bool = False) -> Check:
    """What `pairing host` runs without --target: the system's sshd binary, as this user. `sshd -t` on the
    config it would write, with a throwaway host key (nothing of the user's is made or read)."""
    import tempfile

    from .hook.sshd import SshdError, find_sshd, render_config

    try:
        sshd = find_sshd()
    except SshdError as exc:
        return Check("sshd", False, str(exc).partition(";")[0], "install it: sudo apt-get install openssh-server "
                     "(it need not run: pairing starts its own, as you)")
    version = subprocess.run([str(sshd), "-V"], capture_output=True, text=True).stderr.split(",")[0].strip() or "?"
    if os.geteuid() == 0:
        return Check("sshd", False, f"{sshd} ({version}), but you are root, whom pairing's own sshd never lets in",
                     "run pairing as your own user" + ("" if direct else ", or pass --target to use your running sshd"))
    user = __import__("pwd").getpwuid(os.geteuid()).pw_name
    with tempfile.TemporaryDirectory(prefix="pairing-doctor-") as folder:
        key = Path(folder) / "host_key"
        made = subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], capture_output=True,
                              text=True, stdin=subprocess.DEVNULL)
        if made.returncode:
            return Check("sshd", False, f"{sshd} ({version}): ssh-keygen could not make a test key: "
                         f"{made.stderr.strip()}", "install openssh-client")
        try:
            config = render_config(user, 2222, Path(folder), key)
        except SshdError as exc:
            return Check("sshd", False, f"{sshd} ({version}): {exc}", "run pairing as another user")
        (Path(folder) / "sshd_config").write_text(config)
        tested = subprocess.run([str(sshd), "-t", "-f", str(Path(folder) / "sshd_config")], capture_output=True,
                                text=True, stdin=subprocess.DEVNULL)
    said = (tested.stderr.strip().splitlines() or [""])[-1]
    if tested.returncode:
        return Check("sshd", False, f"{sshd} ({version}) refuses pairing's config as {user}: {said}",
                     "install OpenSSH 9.2 or newer (openssh-server)" + ("" if direct else ", or pass --target to use your running sshd"))
    where = "the address of --listen" if direct else "127.0.0.1"
    return Check("sshd", True, f"{sshd} ({version}) accepts pairing's config as {user}; pairing runs it on {where} "
                 "(no sshd need be running)")


def check_terminals() -> Check:
    """What the own sshd (pairing host's, pairing direct's) refuses to start without: guests' ptys it may hand over."""
    from .hook.sshd import pty_problem

    problem = pty_problem()
    if problem:
        detail, _, fix = problem.rpartition("; ")
        return Check("terminals", False, detail, fix)
    return Check("terminals", True, "new terminals under /dev/pts get the tty group (or you may give it): "
                 "guests get a terminal")


def check_sshd_host_key() -> Check:
    """The own sshd's host key, which guests pin: usable if there, else made on the first run (nothing made here)."""
    from .backend import data_dir
    from .hook.sshd import SshdError, host_key, key_path

    path = key_path(data_dir())
    if not path.exists():
        return Check("sshd host key", True, f"none yet: the first run makes {path}")
    try:
        key = host_key(data_dir())
    except (SshdError, OSError) as exc:
        detail, _, fix = str(exc).partition("; ")
        return Check("sshd host key", False, detail, fix or f"move {path} away")
    return Check("sshd host key", True, f"{path} ({key.fingerprint}, what guests pin)")


def check_tmux() -> Check:
    version = _version(["tmux", "-V"]) if shutil.which("tmux") else None
    return Check("tmux", version is not None, version or "not installed",
                 "install it (Debian/Ubuntu: sudo apt install tmux; macOS: brew install tmux)")


def check_openssh() -> Check:
    return openssh_verdict(_version(["ssh", "-V"]) if shutil.which("ssh") else None)


def openssh_verdict(text: str | None) -> Check:
    """What `ssh -V` printed (None: no ssh) -> the check."""
    match = re.search(r"OpenSSH_(\d+)\.(\d+)", text or "")
    if not match:
        return Check("openssh client", False, text or "not installed", "install OpenSSH 8.5 or newer")
    found = (int(match[1]), int(match[2]))
    need = ".".join(map(str, MIN_OPENSSH))
    return Check("openssh client", found >= MIN_OPENSSH, f"{text.split(',')[0]} (guests need {need}+ too)",
                 f"upgrade OpenSSH to {need} or newer")


def check_shell_startup(own_sshd: bool) -> Check:
    """What the login shell runs before each guest's gate (hook/startup.py), tried here as sshd would run it."""
    from .hook.startup import login_shell, shell_warning

    problem = shell_warning(own_sshd)
    return Check("shell startup", problem is None,
                 problem or f"{login_shell()[0]} runs nothing before a guest's gate (a test run printed only the marker)")


def run_checks(target: tuple[str, int] | None = None, identity: Path | None = None,
               sshd_key_given: bool = False, host_public_key: Path | None = None) -> list[Check]:
    """target None: pairing's own sshd (the binary is checked); else the system sshd listening there.
    host_public_key: pairing up's --host-key (default: the first ~/.ssh/id_*.pub), which identity must match."""
    own = [check_sshd_binary(), check_terminals()] if target is None else \
        [check_sshd(target, None if sshd_key_given else LOCAL_SSHD_KEY)]
    return [check_python(), check_pulumi(), check_aws_credentials(), *own, check_tmux(),
            check_openssh(), check_identity(given=identity, host_public_key=host_public_key),
            check_shell_startup(own_sshd=target is None)]


def direct_checks() -> list[Check]:
    """`pairing direct`'s needs only: no relay, so no Pulumi, AWS or key of the host's own."""
    return [check_python(), check_sshd_binary(direct=True), check_terminals(), check_sshd_host_key(), check_tmux()]


def report(checks: list[Check]) -> str:
    failed = [c for c in checks if not c.ok]
    summary = "all checks passed" if not failed else f"{len(failed)} of {len(checks)} checks failed"
    return "\n".join([c.line() for c in checks] + [summary])


def cmd_doctor(args) -> int:
    if args.direct and (args.target or args.identity):
        flag = "--target" if args.target else "--identity"
        print(f"pairing doctor: {flag} is for `pairing host`/`up`; `pairing direct` runs its own sshd and needs no "
              f"key of yours: leave out {flag} or --direct", file=sys.stderr)
        return 2
    checks = direct_checks() if args.direct else run_checks(args.target, args.identity)
    print(report(checks))
    return 0 if all(c.ok for c in checks) else 1
