"""RSA keys wherever an ED25519 key works: the host's identity (hostPublicKey),
its sshd's host key (hostSshdKey) and the relay's host key all RSA, end to end
through the real relay, for both carriers of the tunnel.

paramiko 5 has no SHA-1 `ssh-rsa` signatures (nor has OpenSSH since 8.8): an
RSA key is an `ssh-rsa` key that signs as rsa-sha2-512/256, and the pins must
match the key, not the name of the algorithm. Pulumi gives the relay an
ED25519 key, but an --outputs file may describe a relay it did not make.
"""

from __future__ import annotations

import dataclasses

import pytest

from pairing.accounts import TUNNEL_USER
from pairing.hook import PreflightError, probe_relay, probe_sshd, relay_endpoint
from pairing.sshkeys import parse_public_key

from . import harness
from .harness import make_key
from .test_carriers import test_guest_types_and_sees_the_host  # noqa: F401


@pytest.fixture(scope="module")
def rsa_pairing(keys, tmp_path_factory):
    host = make_key(tmp_path_factory.mktemp("rsa-host"), "id_rsa", "rsa", 3072)
    yield from harness.pairing_session({**keys, "host": host}, tmp_path_factory,
                                           sshd_key_kind="rsa", relay_key_kind="rsa")


@pytest.fixture(params=["paramiko", "openssh"])
def pairing(rsa_pairing, request):
    """The same RSA deployment, its hook's tunnel carried by each backend in turn."""
    return dataclasses.replace(rsa_pairing, tunnel=request.param)


def test_every_key_is_rsa(rsa_pairing):
    outputs = rsa_pairing.deployment.stack_outputs
    assert outputs.host_public_key.kind == "ssh-rsa"
    assert outputs.host_sshd_key.kind == "ssh-rsa"
    assert [key.kind for key in outputs.relay_host_keys] == ["ssh-rsa"]


def test_another_rsa_relay_key_is_refused_naming_the_key_shown(rsa_pairing, tmp_path):
    """The pin compares keys: an RSA relay showing another RSA key than pinned is a mismatch, said in one line."""
    stranger = parse_public_key(make_key(tmp_path, "other_rsa", "rsa", 2048).public_line)
    relay = dataclasses.replace(relay_endpoint(rsa_pairing.deployment.stack_outputs, TUNNEL_USER), pinned=(stranger,))
    with pytest.raises(PreflightError) as refused:
        probe_relay(relay)
    said = str(refused.value)
    assert f"presented host key {rsa_pairing.deployment.relay_public_key.fingerprint}, but the stack pinned " \
           f"{stranger.fingerprint}" in said and "This may be an attack" in said


def test_another_rsa_sshd_key_is_refused_naming_the_key_shown(rsa_pairing, tmp_path):
    stranger = parse_public_key(make_key(tmp_path, "other_rsa", "rsa", 2048).public_line)
    sshd = rsa_pairing.deployment.host_sshd
    with pytest.raises(PreflightError) as refused:
        probe_sshd(("127.0.0.1", sshd.port), stranger)
    shown = parse_public_key(sshd.host_key.public_line).fingerprint
    assert f"presents {shown}, but guests will pin {stranger.fingerprint} (pairing:hostSshdKey)" in str(refused.value)
