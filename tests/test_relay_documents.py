"""The relay's documents, checked by the real tools that will read them:
cloud-init's own schema validator and OpenSSH's sshd."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from pairing import relay_documents
from pairing.accounts import GUEST_USER, KEYS_USER, TUNNEL_USER
from pairing.relay_documents import RelayHostKey, user_data
from pairing.settings import settings_from

from .harness import make_key

# What the relay document may contain at its top level. cloud-init 22.4's
# schema check does not flag unknown top-level keys, so this test does.
TOP_LEVEL_KEYS = {
    "package_update", "package_upgrade", "package_reboot_if_required", "ssh_deletekeys", "ssh_genkeytypes",
    "allow_public_ssh_keys", "disable_root", "users", "ssh_keys", "write_files", "bootcmd", "runcmd",
}


@pytest.fixture(scope="module")
def host_key(tmp_path_factory) -> RelayHostKey:
    key = make_key(tmp_path_factory.mktemp("relay"), "ssh_host_ed25519_key")
    return RelayHostKey(key.path.read_text(), key.public_line)


def make_settings(keys, **extra):
    raw = {
        "guestKeys": [keys["guest"].public_line, keys["guest2"].public_line],
        "viewerKeys": [keys["viewer"].public_line],
        "hostPublicKey": keys["host"].public_line,
        "hostSshdKey": keys["sshd"].public_line,
        "hostUser": "alice",
    }
    return settings_from({**raw, **extra})


def test_cloud_init_schema_accepts_the_user_data(keys, host_key, tmp_path):
    document = tmp_path / "user-data"
    document.write_text(user_data(make_settings(keys), host_key))
    result = subprocess.run(["cloud-init", "schema", "--config-file", str(document)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Valid cloud-config" in result.stdout


def test_user_data_content(keys, host_key):
    text = user_data(make_settings(keys, tunnelPort=4242, ttlMinutes=90), host_key)
    assert text.startswith("#cloud-config\n")
    doc = yaml.safe_load(text)
    assert set(doc) == TOP_LEVEL_KEYS
    users = {u["name"]: u for u in doc["users"]}
    assert set(users) == {GUEST_USER, TUNNEL_USER, KEYS_USER}
    assert all(user["lock_passwd"] is True for user in users.values())
    # The tunnel account's shell runs its forced command (sshd runs commands through it); the others have none.
    assert [users[name]["shell"] for name in (GUEST_USER, TUNNEL_USER, KEYS_USER)] == [
        "/usr/sbin/nologin", "/bin/sh", "/usr/sbin/nologin"]
    # No guest's key: the host sets the live list at run time (pairing-guests).
    assert "ssh_authorized_keys" not in users[GUEST_USER] and "ssh_authorized_keys" not in users[KEYS_USER]
    assert users[TUNNEL_USER]["ssh_authorized_keys"] == [
        'restrict,port-forwarding,permitlisten="localhost:4242",permitopen="none.invalid:1",'
        'command="/usr/local/sbin/pairing-guests" ' + keys["host"].public_line
    ]
    assert doc["ssh_keys"] == {"ed25519_private": host_key.private_openssh, "ed25519_public": host_key.public_openssh}
    assert doc["ssh_deletekeys"] is True and doc["ssh_genkeytypes"] == ["ed25519"]
    assert doc["package_update"] is False and doc["package_upgrade"] is False
    assert ["/usr/local/sbin/pairing-ttl", "arm", "90", "1440", TUNNEL_USER] in doc["runcmd"]
    files = {f["path"]: f for f in doc["write_files"]}
    assert "PermitListen localhost:4242" in files[relay_documents.SSHD_DROPIN_PATH]["content"]
    assert files[relay_documents.TTL_SCRIPT_PATH]["permissions"] == "0755"
    assert files[relay_documents.GUESTS_SCRIPT_PATH]["permissions"] == "0755"
    assert f"OPTIONS = {relay_documents.guest_options(4242)!r}\n" in files[relay_documents.GUESTS_SCRIPT_PATH]["content"]
    assert 'permitopen="localhost:4242"' in relay_documents.guest_options(4242)


def test_rendering_is_deterministic(keys, host_key):
    assert user_data(make_settings(keys), host_key) == user_data(make_settings(keys), host_key)


def test_the_guests_are_not_in_the_user_data(keys, host_key, tmp_path):
    """Adding, removing or renaming guests leaves the user data byte for byte (so no relay is replaced)."""
    many = [make_key(tmp_path, f"k{i}").public_line + " laptop-of-a-guest" for i in range(40)]
    alone = user_data(make_settings(keys), host_key)
    assert user_data(make_settings(keys, guestKeys=many[:-1], viewerKeys=many[-1:]), host_key) == alone
    assert keys["guest"].public_line.split()[1] not in alone


def sshd_in_private_etc(keys, dropin: str, *sshd_args: str) -> subprocess.CompletedProcess:
    """Run the real sshd against Debian's stock sshd_config plus our drop-in.

    A private mount namespace puts a tmpfs over /etc/ssh, so the drop-in is
    read at the path it will have on the relay, byte for byte, and the
    machine's own /etc/ssh is neither read nor touched.
    """
    script = f"""
set -e
mount -t tmpfs tmpfs /etc/ssh
mount -t tmpfs tmpfs /run
mkdir /etc/ssh/sshd_config.d /run/sshd
cp /usr/share/openssh/sshd_config /etc/ssh/sshd_config
cat > {relay_documents.SSHD_DROPIN_PATH} <<'PAIRING_EOF'
{dropin}PAIRING_EOF
ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key
exec /usr/sbin/sshd "$@"
"""
    return subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sshd", *sshd_args],
        capture_output=True, text=True,
    )


@pytest.fixture(scope="module")
def dropin(keys) -> str:
    return relay_documents.sshd_dropin(make_settings(keys))


def test_sshd_accepts_the_dropin(keys, dropin):
    result = sshd_in_private_etc(keys, dropin, "-t")
    assert result.returncode == 0, result.stderr


def effective(keys, dropin, user: str) -> dict[str, str]:
    result = sshd_in_private_etc(keys, dropin, "-T", "-C", f"user={user},host=guest.example,addr=198.51.100.7")
    assert result.returncode == 0, result.stderr
    config: dict[str, str] = {}
    for line in result.stdout.splitlines():
        key, _, value = line.partition(" ")
        config[key] = f"{config[key]} {value}" if key in config else value  # repeated keys: allowusers, ...
    return config


def test_sshd_restrictions_for_guests(keys, dropin):
    config = effective(keys, dropin, GUEST_USER)
    assert config["allowtcpforwarding"] == "local"
    assert config["permitopen"] == "localhost:1337"
    assert config["permitlisten"] == "none"
    assert config["permittty"] == "no"
    assert config["maxsessions"] == "0"  # no session channel at all: forwarding only
    assert config["forcecommand"] == "/usr/sbin/nologin"
    # The live list, read by pairing-guests as an unprivileged user; no key file.
    assert config["authorizedkeysfile"] == "none"
    assert config["authorizedkeyscommand"] == "/usr/local/sbin/pairing-guests keys"
    assert config["authorizedkeyscommanduser"] == KEYS_USER
    assert config["x11forwarding"] == "no"  # ours, not Debian's "yes" that follows the Include
    assert config["allowagentforwarding"] == "no"
    assert config["allowstreamlocalforwarding"] == "no"
    assert config["permittunnel"] == "no"


def test_sshd_restrictions_for_the_tunnel(keys, dropin):
    config = effective(keys, dropin, TUNNEL_USER)
    assert config["allowtcpforwarding"] == "remote"
    assert config["permitopen"] == "none"
    assert config["permitlisten"] == "localhost:1337"
    assert config["permittty"] == "no"
    assert config["maxsessions"] == "1"  # one session, and whatever it asks runs pairing-guests
    assert config["forcecommand"] == "/usr/local/sbin/pairing-guests"
    assert config["permituserrc"] == "no"


def test_sshd_global_policy(keys, dropin):
    config = effective(keys, dropin, "root")
    assert config["permitrootlogin"] == "no"
    assert config["passwordauthentication"] == "no"
    assert config["kbdinteractiveauthentication"] == "no"
    assert config["authenticationmethods"] == "publickey"
    assert config["allowusers"].split() == [GUEST_USER, TUNNEL_USER]
    assert config["hostkey"] == "/etc/ssh/ssh_host_ed25519_key"
    # A dead tunnel's port is freed within 14 s: sshd gives up after interval x (count + 1),
    # twice that on OpenSSH 9.2 (tests/test_faults.py measures it on the relay).
    assert 2 * int(config["clientaliveinterval"]) * (int(config["clientalivecountmax"]) + 1) <= 14
    # The stock config's lines after the Include still apply to everyone.
    assert config["subsystem"].startswith("sftp")
    assert config["forcecommand"] == "none"  # the Match blocks ended with our file


def test_the_placeholder_host_key_measures_like_a_real_one(keys, host_key):
    """The size check runs before Pulumi makes the key: the placeholder must weigh exactly what the
    real key will, as pulumi_tls writes it (no comment, 64 columns) and as OpenSSH does (70)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from pairing.relay_documents import PLACEHOLDER_HOST_KEY

    settings = make_settings(keys)
    expected = len(user_data(settings, PLACEHOLDER_HOST_KEY).encode())
    for _ in range(20):
        key = ed25519.Ed25519PrivateKey.generate()
        private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                    serialization.NoEncryption()).decode()
        public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
        body = "".join(private.splitlines()[1:-1])
        at_70 = "\n".join([private.splitlines()[0], *(body[i:i + 70] for i in range(0, len(body), 70)), private.splitlines()[-1]])
        for text in (private, at_70 + "\n"):
            assert len(user_data(settings, RelayHostKey(text, public + "\n")).encode()) == expected
    assert "PRIVATE KEY" in PLACEHOLDER_HOST_KEY.private_openssh and set("".join(
        PLACEHOLDER_HOST_KEY.private_openssh.splitlines()[1:-1])) == {"A"}  # zeros: no key at all


