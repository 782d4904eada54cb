"""Hostile input, generated: the config validator and the authorized_keys editor.

Hypothesis draws key lines (real keys of every accepted type, random unicode
comments, options, CRLF, damaged base64), whole configs in each form Pulumi or
a person gives them, and authorized_keys files (random lines, CRLF, no final
newline, invalid UTF-8, stale blocks, megabytes). The properties:

- valid config is accepted and every key line comes back byte for byte, in the
  outputs and in the relay's user data;
- invalid config is refused with one short line naming the setting;
- the editor never loses or changes a byte outside its block, in memory and on
  disk (mode, symlinks and all).
"""

from __future__ import annotations

import base64
import dataclasses
import ipaddress
import json
import os
import re
import stat
import struct
import tempfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from hypothesis import HealthCheck, assume, given, settings, strategies as st

from pairing import authorized_keys as ak
from pairing.forced_command import guest_line, tmux_attach_command
from pairing.outputs import StackOutputs, render_outputs
from pairing.names import roster
from pairing.relay_documents import RelayHostKey, guests_script, user_data
from pairing.relay_guests import guest_list
from pairing.instance_types import SIZES_OF_FAMILY
from pairing.names import from_comment
from pairing.settings import SAFE_NAME, POSIX_USER, ConfigError, settings_from
from pairing.sshkeys import ACCEPTED_TYPES, parse_public_key

pytestmark = pytest.mark.pure  # needs neither root nor the relay tools (tests/conftest.py)

# PAIRING_EXAMPLES=5000 for a long hunt; the suite's default keeps this file to seconds.
EXAMPLES = settings(max_examples=int(os.environ.get("PAIRING_EXAMPLES", 150)), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
MESSAGE_LIMIT = 400  # a refusal is one line a person reads, not a dump of what they pasted

# --- keys -------------------------------------------------------------------------------

_RSA = [rsa.generate_private_key(65537, bits).public_key() for bits in (2048, 3072)]
_SHORT_RSA = rsa.generate_private_key(65537, 1024).public_key()
_CURVES = {"ecdsa-sha2-nistp256": ec.SECP256R1(), "ecdsa-sha2-nistp384": ec.SECP384R1(), "ecdsa-sha2-nistp521": ec.SECP521R1()}


def _openssh(public) -> str:
    return public.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()


def _ssh_string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


@st.composite
def key_bodies(draw) -> str:
    """'type base64' of a real key of an accepted type."""
    kind = draw(st.sampled_from(["ssh-ed25519", "ecdsa", "ssh-rsa", "sk-ssh-ed25519@openssh.com"]))
    if kind == "ssh-ed25519":
        seed = draw(st.binary(min_size=32, max_size=32))
        return _openssh(ed25519.Ed25519PrivateKey.from_private_bytes(seed).public_key())
    if kind == "ecdsa":
        curve = draw(st.sampled_from(sorted(_CURVES)))
        secret = draw(st.integers(min_value=1, max_value=2**255))
        return _openssh(ec.derive_private_key(secret, _CURVES[curve]).public_key())
    if kind == "ssh-rsa":
        return _openssh(draw(st.sampled_from(_RSA)))
    point = draw(st.binary(min_size=32, max_size=32))
    blob = _ssh_string(kind.encode()) + _ssh_string(point) + _ssh_string(b"ssh:")
    return f"{kind} {base64.b64encode(blob).decode()}"


# Printable comments: any unicode but control and format characters, line and paragraph separators and surrogates.
comments = st.text(st.characters(blacklist_categories=("Cc", "Cf", "Cs", "Zl", "Zp")), max_size=40).map(str.strip)


@st.composite
def key_lines(draw, body=None) -> str:
    """A .pub line as people paste it: optional comment, stray spaces, maybe a CR."""
    body = body or draw(key_bodies())
    comment = draw(comments)
    kind, blob = body.split()
    gap = draw(st.sampled_from([" ", "  "]))
    line = f"{kind}{gap}{blob}" + (f" {comment}" if comment else "")
    return draw(st.sampled_from(["", " "])) + line + draw(st.sampled_from(["", " ", "\r", "\n", "\r\n"]))


def normalized(line: str) -> str:
    """What pairing keeps of a valid line: type, base64, comment; single spaces."""
    kind, blob, *comment = line.strip().split(None, 2)
    return " ".join([kind, blob, *(c.strip() for c in comment if c.strip())])


def distinct(draw, count_min: int, count_max: int) -> list[str]:
    bodies = draw(st.lists(key_bodies(), min_size=count_min, max_size=count_max, unique=True))
    return [draw(key_lines(body)) for body in bodies]


# --- the validator: valid configs round-trip ---------------------------------------------


def as_given(draw, lines: list[str]):
    """A list setting as Pulumi hands it (JSON text or a list) or as a person types it (lines)."""
    form = draw(st.sampled_from(["list", "json", "lines-lf", "lines-crlf"]))
    if form == "list":
        return lines
    if form == "json":
        return json.dumps(lines, ensure_ascii=draw(st.booleans()))
    ending = "\n" if form == "lines-lf" else "\r\n"
    text = ending.join(line.strip() for line in lines) + draw(st.sampled_from(["", ending]))
    return text if lines else ""


networks = st.one_of(
    st.builds(lambda a, p: ipaddress.ip_network(f"{ipaddress.IPv4Address(a)}/{p}", strict=False),
              st.integers(0, 2**32 - 1), st.integers(0, 32)),
    st.builds(lambda a, p: ipaddress.ip_network(f"{ipaddress.IPv6Address(a)}/{p}", strict=False),
              st.integers(0, 2**128 - 1), st.integers(0, 128)),
)
INSTANCE_TYPES = sorted(f"{family}.{size}" for family, sizes in SIZES_OF_FAMILY.items() for size in sizes)


@st.composite
def valid_configs(draw) -> tuple[dict, dict]:
    """(raw config, what the settings must come out as)."""
    keys = distinct(draw, 3, 7)
    host, sshd, guests = keys[0], keys[1], keys[2:]
    cut = draw(st.integers(1, len(guests)))
    guests, viewers = guests[:cut], guests[cut:]
    # Each guest's name is its key's comment: two keys whose comments make one name are no valid outputs (names.roster).
    names = [from_comment(normalized(line).split(" ", 2)[2]) for line in keys[2:] if len(normalized(line).split()) > 2]
    assume(len([n for n in names if n]) == len({n for n in names if n}))
    cidrs = draw(st.lists(networks, max_size=4))
    port, ttl = draw(st.integers(1024, 65535)), draw(st.integers(1, 1440))
    instance_type = draw(st.sampled_from(INSTANCE_TYPES))
    raw = {
        "guestKeys": as_given(draw, guests),
        "hostPublicKey": host,
        "hostSshdKey": sshd,
        "hostUser": draw(st.from_regex(POSIX_USER, fullmatch=True)),
        "tunnelPort": draw(st.sampled_from([port, str(port), f" {port} "])),
        "ttlMinutes": draw(st.sampled_from([ttl, str(ttl)])),
        "instanceType": instance_type,
        "tmuxSession": draw(st.from_regex(SAFE_NAME, fullmatch=True)),
    }
    if viewers or draw(st.booleans()):
        raw["viewerKeys"] = as_given(draw, viewers)
    if cidrs:
        raw["allowedCidrs"] = as_given(draw, [str(n) for n in cidrs])
    image = draw(st.one_of(st.none(), st.from_regex(r"ami-[0-9a-f]{8,17}", fullmatch=True)))
    if image is not None:
        raw["relayImage"] = image
    expected = {
        "guest_keys": [normalized(k) for k in guests],
        "viewer_keys": [normalized(k) for k in viewers],
        "host_public_key": normalized(host),
        "host_sshd_key": normalized(sshd),
        "allowed_cidrs": list(dict.fromkeys(cidrs)) or [ipaddress.ip_network("0.0.0.0/0")],
        "tunnel_port": port,
        "ttl_minutes": ttl,
        "relay_image": image,
    }
    return raw, expected


RELAY_KEY = _openssh(ed25519.Ed25519PrivateKey.from_private_bytes(bytes(32)).public_key())
RELAY_PRIVATE = ed25519.Ed25519PrivateKey.from_private_bytes(bytes(32)).private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()).decode()
# The relay's guest list script as the relay runs it (its functions; `main` is not called).
RELAY_SCRIPT: dict = {"__name__": "pairing_guests"}
exec(compile(guests_script(settings_from({"guestKeys": [RELAY_KEY], "hostPublicKey": _openssh(
    ed25519.Ed25519PrivateKey.from_private_bytes(bytes([1]) * 32).public_key()), "hostSshdKey": RELAY_KEY})),
    "pairing-guests", "exec"), RELAY_SCRIPT)


@EXAMPLES
@given(valid_configs())
def test_valid_config_round_trips(case):
    raw, expected = case
    got = settings_from(raw)
    assert [k.line for k in got.guest_keys] == expected["guest_keys"]
    assert [k.line for k in got.viewer_keys] == expected["viewer_keys"]
    assert got.host_public_key.line == expected["host_public_key"]
    assert got.host_sshd_key.line == expected["host_sshd_key"]
    assert list(got.allowed_cidrs) == expected["allowed_cidrs"]
    assert (got.tunnel_port, got.ttl_minutes) == (expected["tunnel_port"], expected["ttl_minutes"])
    assert got.relay_image == expected["relay_image"]
    # Through the outputs (JSON, as `pairing host` reads them) and back.
    outputs = StackOutputs.from_json(json.loads(json.dumps(render_outputs(
        got, relay_address="203.0.113.10", relay_host_key=parse_public_key(RELAY_KEY), instance_id="i-1",
        launch_time="2026-11-26T15:00:00Z"))))
    assert [k.line for k in outputs.guest_keys] == expected["guest_keys"]
    assert [k.line for k in outputs.viewer_keys] == expected["viewer_keys"]
    # Onto the relay: the live list as the host sends it, one bare key a line, each accepted by the relay's own
    # check (cloud-init/pairing-guests, as the relay runs it); nothing of the guests in the user data.
    sent = guest_list(roster(got.guest_keys, got.viewer_keys), got.host_public_key).splitlines()
    everyone = got.guest_keys + got.viewer_keys + (got.host_public_key,)
    assert [line.decode().split()[:2] for line in sent] == [[k.kind, k.blob] for k in everyone]
    assert [RELAY_SCRIPT["checked_key"](line) for line in sent] == sent
    relay_key = RelayHostKey(RELAY_PRIVATE, RELAY_KEY)
    alone = dataclasses.replace(got, guest_keys=(parse_public_key(RELAY_KEY),), viewer_keys=())
    assert user_data(got, relay_key) == user_data(alone, relay_key)  # within EC2's 16 KiB, whatever the host key


# --- the validator: invalid input is refused in one line naming the setting --------------


def refusal(raw: dict) -> str:
    with pytest.raises(ConfigError) as caught:
        settings_from(raw)
    return str(caught.value)


def assert_names(message: str, setting: str) -> None:
    assert message.startswith(f"pairing:{setting}: "), message
    assert "\n" not in message and "\r" not in message, message
    assert len(message) <= MESSAGE_LIMIT, message
    assert not any(c in message for c in "\x1b\x9b\x07"), message  # nothing a terminal would act on


@st.composite
def damaged_keys(draw) -> str:
    body = draw(key_bodies())
    kind, blob = body.split()
    comment = draw(comments)
    how = draw(st.sampled_from(["options", "cert", "dsa", "junk-in-base64", "cut", "padding", "swapped-type",
                                "two-lines", "control", "unknown-type", "private", "empty", "only-type"]))
    if how == "options":
        options = draw(st.sampled_from(['command="ls"', "restrict", 'from="10.0.0.0/8"', "no-pty", 'environment="A=b"']))
        return f"{options} {kind} {blob} {comment}"
    if how == "cert":
        return f"{kind}-cert-v01@openssh.com {blob} {comment}"
    if how == "dsa":
        return f"ssh-dss {blob} {comment}"
    if how == "junk-in-base64":
        at = draw(st.integers(1, len(blob) - 1))
        junk = draw(st.characters(blacklist_categories=("Cs",), blacklist_characters="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/= \t\r\n"))
        return f"{kind} {blob[:at]}{junk}{blob[at:]} {comment}"
    if how == "cut":
        return f"{kind} {blob[:draw(st.integers(4, len(blob) - 4))]} {comment}"
    if how == "padding":
        return f"{kind} {blob.rstrip('=') + draw(st.sampled_from(['===', '====']))} {comment}"
    if how == "swapped-type":
        other = draw(st.sampled_from([k for k in ("ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256") if k != kind]))
        return f"{other} {blob} {comment}"
    if how == "two-lines":
        return f"{kind} {blob} a\n{kind} {blob} b"
    if how == "control":
        bad = draw(st.sampled_from(["\x00", "\x1b[2J", "\t", "\x7f", "\x9b2J", "\u2028", "\u2029", "\x85", "\ud800",
                                     "\u202e", "\u200b", "\ufeff"]))
        return f"{kind} {blob} {comment[:5]}x{bad}y{comment[5:]}"  # inside the comment, not strippable
    if how == "unknown-type":
        other = draw(st.text(min_size=1, max_size=30).filter(lambda s: s.strip() and s.split()[0] not in ACCEPTED_TYPES))
        return f"{other} {blob}"
    if how == "private":
        return "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n"
    if how == "empty":
        return draw(st.sampled_from(["", " ", "\r\n"]))
    return kind


KEY_SETTINGS = ["guestKeys", "viewerKeys", "hostPublicKey", "hostSshdKey"]


@EXAMPLES
@given(valid_configs(), st.sampled_from(KEY_SETTINGS), damaged_keys(), st.data())
def test_a_damaged_key_is_refused_naming_its_setting(case, setting, bad, data):
    raw, _ = case
    if setting in ("guestKeys", "viewerKeys"):
        entries = [k for k in json.loads(json.dumps(_entries(raw.get(setting, []))))]
        entries.insert(data.draw(st.integers(0, len(entries))), bad)
        raw = {**raw, setting: entries}
    else:
        raw = {**raw, setting: bad}
    message = refusal(raw)
    assert_names(message, setting)
    assert "b3BlbnNzaC1rZXktdjEAAAAA" not in message  # a pasted private key is never echoed


def _entries(value) -> list[str]:
    if isinstance(value, list):
        return value
    if value.strip().startswith("["):
        return json.loads(value)
    return [line for line in re.split(r"\r\n|\n", value) if line.strip()]


BAD_VALUES = {
    "tunnelPort": st.one_of(st.integers(max_value=1023), st.integers(min_value=65536, max_value=10**30),
                            st.text(max_size=20).filter(lambda s: not re.fullmatch(r"\s*[0-9]+\s*", s)),
                            st.floats(), st.booleans(), st.lists(st.integers(), max_size=2)),
    "ttlMinutes": st.one_of(st.integers(max_value=0), st.integers(min_value=1441, max_value=10**30),
                            st.sampled_from(["²", "1_0", "0x10", "1e3", "", "  ", "٣"]), st.floats(), st.booleans()),
    "allowedCidrs": st.one_of(
        st.just([]), st.just(""), st.just("[]"), st.just("[1, 2"), st.just("[" * 100_000),
        st.lists(st.sampled_from(["10.0.0.1/24", "10.0.0.0", "10.0.0.0/33", "::/129", "fe80::%eth0/64", "0/0", "x"]), min_size=1),
        st.text(max_size=30).filter(lambda s: "/" not in s and s.strip() and not s.strip().startswith("[")),
        st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    ),
    "instanceType": st.one_of(st.text(max_size=5000).filter(lambda s: not re.fullmatch(r"[a-z0-9]+\.[a-z0-9]+", s.strip())),
                              st.sampled_from(["x9.micro", "t3.", ".micro", "t3.micro.extra", "T3.MICRO", "t3.huge", "m5.nano",
                                               "t3.metal", "c5.8xlarge", "m7i.metal"]),
                              st.integers(), st.none().map(lambda _: ["t3.micro"])),
    "hostUser": st.one_of(st.text(max_size=60).filter(lambda s: not POSIX_USER.fullmatch(s)), st.integers(), st.lists(st.text(), max_size=1)),
    "tmuxSession": st.one_of(st.text(max_size=60).filter(lambda s: not SAFE_NAME.fullmatch(s)), st.integers(), st.booleans()),
    "guestKeys": st.one_of(st.just([]), st.just(""), st.just("[]"), st.integers(), st.dictionaries(st.text(max_size=3), st.text(max_size=3), max_size=2),
                           st.lists(st.one_of(st.integers(), st.none(), st.lists(st.text(max_size=3), max_size=1)), min_size=1, max_size=2)),
    "viewerKeys": st.one_of(st.integers(), st.just("[not json"), st.lists(st.integers(), min_size=1, max_size=2)),
    "relayImage": st.one_of(st.text(max_size=40).filter(lambda s: not re.fullmatch(r"\s*ami-[0-9a-f]{8,17}\s*", s)),
                            st.sampled_from(["ami-0123", "ami-0123456789ABCDEF0", "ami-0123456789abcdef01234", "i-0123456789abcdef0"]),
                            st.integers(), st.lists(st.text(), max_size=1)),
}


@EXAMPLES
@given(valid_configs(), st.data())
def test_any_bad_value_is_refused_naming_its_setting(case, data):
    raw, _ = case
    setting = data.draw(st.sampled_from(sorted(BAD_VALUES)))
    bad = data.draw(BAD_VALUES[setting])
    assert_names(refusal({**raw, setting: bad}), setting)


@EXAMPLES
@given(valid_configs(), st.text(min_size=1, max_size=30).filter(lambda s: s not in (
    "guestKeys", "viewerKeys", "hostPublicKey", "allowedCidrs", "tunnelPort", "instanceType", "ttlMinutes",
    "hostUser", "tmuxSession", "hostSshdKey", "relayImage")))
def test_unknown_settings_are_named(case, name):
    raw, _ = case
    message = refusal({**raw, name: "x"})
    assert message.startswith("pairing:") and ": unknown setting; the settings are: " in message
    assert "\n" not in message


@EXAMPLES
@given(valid_configs(), st.sampled_from(["twice", "viewer", "host"]), st.data())
def test_one_key_one_role_whatever_its_spelling(case, how, data):
    """The same key spelt differently (comment, spaces) is still the same key."""
    raw, expected = case
    source = data.draw(st.sampled_from(expected["guest_keys"]))
    respelt = data.draw(key_lines(" ".join(source.split()[:2])))
    guests = _entries(raw["guestKeys"])
    if how == "twice":
        raw = {**raw, "guestKeys": guests + [respelt]}
        setting = "guestKeys"
    elif how == "viewer":
        raw = {**raw, "viewerKeys": _entries(raw.get("viewerKeys", [])) + [respelt]}
        setting = "viewerKeys"
    else:
        raw = {**raw, "hostPublicKey": respelt}
        setting = "hostPublicKey"
    message = refusal(raw)
    assert_names(message, setting)
    assert "give each key one role only" in message


# --- the authorized_keys editor -------------------------------------------------------------

_FRAGMENTS = st.sampled_from([
    "", "# a comment", 'from="10.0.0.0/8" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHBhaXJpbmc s\u00f8ren@work',
    "ssh-rsa AAAAB3NzaC1yc2E alice", 'command="tmux attach -t pair",restrict ssh-ed25519 AAAA x', "   ",
    ak.END, "# <<< pairing is a phrase", "#" + ak.BEGIN, " " + ak.BEGIN, "\u2028", "\x00\x1b[0m", "\ufeff",
])
# No lone surrogates here: no file holds one (invalid bytes come from _BYTES_LINE, as surrogateescape reads them).
_LINE = st.one_of(_FRAGMENTS, st.text(st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)), max_size=60))
# Raw bytes too: files are read with surrogateescape, so invalid UTF-8 must round-trip.
_BYTES_LINE = st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"").decode("utf-8", "surrogateescape"))


@st.composite
def files(draw) -> str:
    """An authorized_keys text without a pairing block: any lines, LF or CRLF, maybe no final newline."""
    lines = draw(st.lists(st.one_of(_LINE, _BYTES_LINE), max_size=12))
    ending = draw(st.sampled_from(["\n", "\r\n", "mixed"]))
    text = ""
    for line in lines:
        text += line + (draw(st.sampled_from(["\n", "\r\n"])) if ending == "mixed" else ending)
    if lines and draw(st.booleans()):
        text = text.rstrip("\r\n")
    assume(ak._find_begin(text) < 0)
    return text


block_lines = st.lists(st.builds(lambda body, c: guest_line(parse_public_key(f"{body} {c}".strip()),
                                                             tmux_attach_command("pair", False)),
                                 key_bodies(), comments), min_size=1, max_size=4)


def expected_with_block(text: str, lines: list[str], *, created: bool = False) -> str:
    joined = bool(text) and not text.endswith("\n")
    flags = (ak.CREATED if created else "") + (ak.JOINED if joined else "")
    return text + ("\n" if joined else "") + "\n".join([ak.BEGIN + flags, *lines, ak.END]) + "\n"


@EXAMPLES
@given(files(), block_lines)
def test_the_block_goes_at_the_end_and_comes_out_exactly(text, lines):
    added = ak.with_block(text, lines)
    assert added == expected_with_block(text, lines)  # every byte before the block as it was
    assert ak.without_block(added) == text
    assert not ak.block_created_file(added)


@EXAMPLES
@given(files(), block_lines, block_lines)
def test_a_stale_block_is_replaced_not_stacked(text, stale, fresh):
    """A crash leaves a block; the next start replaces it, and the stop still restores the original."""
    again = ak.with_block(ak.with_block(text, stale), fresh)
    assert again == expected_with_block(text, fresh)
    assert ak.without_block(again) == text


@EXAMPLES
@given(files(), block_lines, files())
def test_lines_added_while_running_are_kept(text, lines, later):
    """ssh-copy-id or an editor appends while `pairing host` runs: only the block leaves."""
    assume(later)
    running = ak.with_block(text, lines) + later
    kept = ak.without_block(running)
    joined = bool(text) and not text.endswith("\n")
    assert kept == text + ("\n" if joined else "") + later


@EXAMPLES
@given(block_lines)
def test_no_file_means_no_file_again(lines):
    added = ak.with_block(None, lines)
    assert added == expected_with_block("", lines, created=True)
    assert ak.block_created_file(added) and ak.without_block(added) == ""


@settings(max_examples=5, deadline=None)
@given(st.integers(1, 8), block_lines, st.binary(min_size=1, max_size=64))
def test_huge_files(megabytes, lines, chunk):
    text = (chunk * (megabytes * 2**20 // len(chunk) + 1)).decode("utf-8", "surrogateescape")
    assume(ak._find_begin(text) < 0)
    added = ak.with_block(text, lines)
    assert added.startswith(text) and ak.without_block(added) == text


# --- ... and on disk ------------------------------------------------------------------------


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(st.none(), files()), block_lines, st.sampled_from([0o600, 0o640, 0o644, 0o400]),
       st.sampled_from(["file", "symlink"]))
def test_install_then_remove_on_disk_is_byte_identical(text, lines, mode, kind):
    with tempfile.TemporaryDirectory() as folder:
        ssh = Path(folder) / ".ssh"
        ssh.mkdir(mode=0o700)
        path = ssh / "authorized_keys"
        target = Path(folder) / "dotfiles" / "authorized_keys"
        real = target if kind == "symlink" else path
        if kind == "symlink":
            target.parent.mkdir()
            path.symlink_to(target)
        if text is not None:
            real.write_bytes(text.encode("utf-8", "surrogateescape"))
            real.chmod(mode)
        keys = ak.AuthorizedKeysFile(path)
        keys.install(lines)
        on_disk = real.read_bytes().decode("utf-8", "surrogateescape")
        assert on_disk == expected_with_block(text or "", lines, created=text is None)
        if text is not None:
            assert stat.S_IMODE(real.stat().st_mode) == mode
        assert path.is_symlink() == (kind == "symlink")
        assert keys.remove() is True
        assert path.is_symlink() == (kind == "symlink")
        if text is None:
            assert not real.exists()
        else:
            assert real.read_bytes() == text.encode("utf-8", "surrogateescape")
            assert stat.S_IMODE(real.stat().st_mode) == mode
        assert sorted(os.listdir(ssh)) == (["authorized_keys"] if kind == "symlink" or text is not None else [])
        assert keys.remove() is False
