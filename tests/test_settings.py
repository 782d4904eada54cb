"""Bad config is refused in one line that names the setting, the value and the fix."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa

from pairing.settings import SETTINGS, ConfigError, settings_from

from .harness import make_key

pytestmark = pytest.mark.pure  # needs neither root nor the relay tools (tests/conftest.py)


@pytest.fixture()
def valid(keys) -> dict:
    return {
        "guestKeys": [keys["guest"].public_line],
        "hostPublicKey": keys["host"].public_line,
        "hostSshdKey": keys["sshd"].public_line,
        "hostUser": "alice",
    }


def refusal(raw: dict) -> str:
    with pytest.raises(ConfigError) as caught:
        settings_from(raw)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_defaults(valid, keys):
    settings = settings_from(valid)
    assert settings.tunnel_port == 1337
    assert settings.ttl_minutes == 240
    assert settings.instance_type == "t3.micro" and settings.architecture == "x86_64"
    assert [str(n) for n in settings.allowed_cidrs] == ["0.0.0.0/0"]
    assert settings.viewer_keys == ()
    assert settings.tmux_session == "pair"
    assert settings.guest_keys[0].line == keys["guest"].public_line


def test_values_as_pulumi_gives_them(valid, keys):
    """Pulumi hands lists over as JSON text and numbers as strings."""
    raw = {**valid, "guestKeys": f'["{keys["guest"].public_line}"]', "allowedCidrs": '["2001:db8::/48", "198.51.100.0/24"]',
           "tunnelPort": "2222", "ttlMinutes": "30", "instanceType": "t4g.small"}
    settings = settings_from(raw)
    assert settings.tunnel_port == 2222 and settings.ttl_minutes == 30
    assert settings.architecture == "arm64"
    assert [n.version for n in settings.allowed_cidrs] == [6, 4]


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"guestKeys": []}, "pairing:guestKeys: is empty; add at least one guest"),
        ({"tunnelPort": 70000}, "pairing:tunnelPort: 70000 is out of range; use an unprivileged port from 1024 to 65535"),
        ({"tunnelPort": 22}, "pairing:tunnelPort: 22 is out of range"),
        ({"tunnelPort": "http"}, "pairing:tunnelPort: 'http' is not a whole number"),
        ({"ttlMinutes": 0}, "pairing:ttlMinutes: 0 is out of range; use 1 to 1440 minutes"),
        ({"ttlMinutes": 1441}, "pairing:ttlMinutes: 1441 is out of range"),
        ({"allowedCidrs": ["10.0.0.0/33"]}, "pairing:allowedCidrs: '10.0.0.0/33' is not an IPv4 or IPv6 CIDR; write e.g."),
        ({"allowedCidrs": ["10.0.0.1/24"]}, "pairing:allowedCidrs: '10.0.0.1/24' has host bits set; did you mean 10.0.0.0/24?"),
        ({"allowedCidrs": ["203.0.113.9"]}, "pairing:allowedCidrs: '203.0.113.9' has no prefix length"),
        ({"allowedCidrs": []}, "pairing:allowedCidrs: is empty, so nobody could reach the relay"),
        ({"instanceType": "x9.micro"}, "pairing:instanceType: 'x9.micro' has an unknown instance family 'x9'; use one of"),
        ({"instanceType": "micro"}, "pairing:instanceType: 'micro' is not an EC2 instance type; use e.g. t3.micro"),
        ({"hostUser": "Robert'); DROP"}, "pairing:hostUser: \"Robert'); DROP\" is not a login name"),
        ({"tmuxSession": "pair; rm -rf ~"}, "pairing:tmuxSession: 'pair; rm -rf ~' is not usable as a session name"),
        ({"guestKey": ["x"]}, "pairing:guestKey: unknown setting; the settings are: guestKeys, viewerKeys"),
        ({"hostPublicKey": None}, "pairing:hostPublicKey: missing; set it: pulumi config set pairing:hostPublicKey"),
    ],
)
def test_bad_values(valid, change, expected):
    assert refusal({**valid, **change}).startswith(expected)


def test_private_key_pasted_as_public(valid, keys):
    private = keys["guest"].path.read_text()
    message = refusal({**valid, "guestKeys": [private]})
    assert message.startswith("pairing:guestKeys: that is a PRIVATE key; paste the one line of the .pub file")
    assert private.splitlines()[1][:20] not in message  # never echoes the secret back


def test_malformed_key(valid, keys):
    line = keys["guest"].public_line
    broken = line.split()[0] + " " + line.split()[1][:-10] + " x"
    assert refusal({**valid, "guestKeys": [broken]}).startswith("pairing:guestKeys: 'ssh-ed25519 AAAA")
    assert "is not a valid ssh-ed25519 key" in refusal({**valid, "guestKeys": [broken]})


def test_options_in_front_of_a_key(valid, keys):
    message = refusal({**valid, "viewerKeys": ['command="ls" ' + keys["viewer"].public_line]})
    assert message.startswith("pairing:viewerKeys: 'command=\"ls\" ssh-ed25519")
    assert "is not an OpenSSH public key line" in message


@pytest.mark.filterwarnings("ignore:SSH DSA key support is deprecated")
def test_dsa_and_short_rsa(valid, tmp_path):
    # Made with cryptography: OpenSSH 9.8 and newer's ssh-keygen makes no DSA keys any more.
    dsa_key = dsa.generate_private_key(key_size=1024).public_key()
    dsa_line = dsa_key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    dsa_line += " old@laptop"
    assert refusal({**valid, "guestKeys": [dsa_line]}) == (
        "pairing:guestKeys: DSA keys are refused (OpenSSH removed them); make one with: ssh-keygen -t ed25519"
    )
    rsa = make_key(tmp_path, "rsa", "rsa", 1024).public_line
    assert refusal({**valid, "hostPublicKey": rsa}).startswith(
        "pairing:hostPublicKey: RSA key of 1024 bits is too short (minimum 2048)"
    )


def test_second_entry_is_named(valid, keys):
    message = refusal({**valid, "guestKeys": [keys["guest"].public_line, "ssh-ed25519 nonsense"]})
    assert message.startswith("pairing:guestKeys: entry 2: ")


def test_duplicate_keys(valid, keys):
    twice = refusal({**valid, "guestKeys": [keys["guest"].public_line, keys["guest"].public_line]})
    assert twice.startswith("pairing:guestKeys: ssh-ed25519 ") and "is listed twice; give each key one role only" in twice
    both = refusal({**valid, "viewerKeys": [keys["guest"].public_line]})
    assert both.startswith("pairing:viewerKeys: ") and "also in pairing:guestKeys" in both
    host = refusal({**valid, "guestKeys": [keys["host"].public_line]})
    assert host.startswith("pairing:hostPublicKey: ") and "also in pairing:guestKeys" in host


def test_every_setting_has_help_and_a_default_or_is_required():
    required = [s.key for s in SETTINGS if s.default is None]
    assert required == ["guestKeys", "hostPublicKey"]
    assert all(s.help for s in SETTINGS)


@pytest.mark.parametrize("instance_type, expected", [
    ("m5.nano", "pairing:instanceType: m5.nano does not exist; m5 comes in large, xlarge, 2xlarge, 4xlarge, 8xlarge, "
                "12xlarge, 16xlarge, 24xlarge, metal (e.g. m5.large)"),
    ("t3.metal", "pairing:instanceType: t3.metal does not exist; t3 comes in nano, micro"),
    ("c5.8xlarge", "pairing:instanceType: c5.8xlarge does not exist; c5 comes in large, xlarge, 2xlarge, 4xlarge, 9xlarge"),
])
def test_sizes_a_family_does_not_have(valid, instance_type, expected):
    assert refusal({**valid, "instanceType": instance_type}).startswith(expected)


def test_the_size_table_is_ec2s():
    """Every type pairing accepts is in the EC2 API's list (pulumi_aws's InstanceType enum), and every
    size that list has for a known family is accepted."""
    import pulumi_aws

    from pairing.instance_types import SIZES_OF_FAMILY

    ec2 = {t.value for t in pulumi_aws.ec2.InstanceType}
    ours = {f"{family}.{size}" for family, sizes in SIZES_OF_FAMILY.items() for size in sizes}
    assert ours <= ec2, sorted(ours - ec2)
    assert {t for t in ec2 if t.split(".")[0] in SIZES_OF_FAMILY} == ours
    for instance_type in ("m7i.metal-24xl", "c8g.metal-48xl", "a1.metal", "t4g.nano"):
        settings_from({"guestKeys": ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHBhaXJpbmcgZXhhbXBsZSBndWVzdDsgcmVwbGFjZS0t g"],
                       "hostPublicKey": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHBhaXJpbmcgZXhhbXBsZSBob3N0OyByZXBsYWNlLS0t h",
                       "hostSshdKey": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHBhaXJpbmcgZXhhbXBsZSBzc2hkOyByZXBsYWNlLS0t s",
                       "hostUser": "alice", "instanceType": instance_type})


def test_relay_image(valid):
    assert settings_from(valid).relay_image is None
    assert settings_from({**valid, "relayImage": "ami-0123456789abcdef0"}).relay_image == "ami-0123456789abcdef0"
    assert settings_from({**valid, "relayImage": "ami-12345678"}).relay_image == "ami-12345678"
    for bad in ("ami-1234567", "ami-0123456789ABCDEF0", "i-0123456789abcdef0", "ami-0123456789abcdef0 --x", "debian-13"):
        assert refusal({**valid, "relayImage": bad}).startswith(
            f"pairing:relayImage: {bad!r} is not an AMI id such as ami-0123456789abcdef0")


@pytest.mark.parametrize("version, cidr", [(4, "10.{}.0.0/16"), (6, "2001:db8:{}::/48")])
def test_rules_per_address_family(valid, version, cidr):
    sixty = [cidr.format(i) for i in range(60)]
    assert len(settings_from({**valid, "allowedCidrs": sixty + ["0.0.0.0/0" if version == 6 else "::/0"]}).allowed_cidrs) == 61
    assert refusal({**valid, "allowedCidrs": sixty + [cidr.format(60)]}) == (
        f"pairing:allowedCidrs: 61 IPv{version} CIDRs, over the 60 inbound rules per address family a security group "
        "takes (EC2's default quota); merge them into fewer, wider CIDRs")
