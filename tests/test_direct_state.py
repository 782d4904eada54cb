"""`pairing direct`'s remembered session (pairing/direct_state.py) is input when read back: each field is
checked as its flag would be, and a file that fails any check is no record (a new port, no status)."""

from __future__ import annotations

import json
import os

import pytest

from pairing.direct_state import DirectRecord, record_path, remember, remembered, running
from pairing.sshkeys import parse_public_key

pytestmark = pytest.mark.pure


@pytest.fixture
def state(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    return tmp_path


def record(keys) -> DirectRecord:
    return DirectRecord("pair", "/tmp/pair.sock", "fd7a::1", 2222, (parse_public_key(keys["guest"].public_line),),
                        (parse_public_key(keys["viewer"].public_line),))


def test_remembered_as_written_atomically_mode_600(state, keys):
    written = record(keys)
    remember(written)
    path = record_path("pair", "/tmp/pair.sock")
    assert remembered("pair", "/tmp/pair.sock") == written and written.endpoint == "[fd7a::1]:2222"
    assert oct(path.stat().st_mode & 0o777) == "0o600" and sorted(os.listdir(path.parent)) == ["direct.json"]
    assert remembered("pair", None) is None  # another tmux server's session of that name is another session
    assert running() == []  # no run holds its lock


@pytest.mark.parametrize("field, value", [
    ("session", "pair\nHost evil"), ("session", "a b"), ("tmux_socket", "/tmp/\x1b[2Jx"), ("tmux_socket", ""),
    ("address", "example.com"), ("address", "10.0.0.1\nListenAddress 0.0.0.0"), ("port", 0), ("port", 70000),
    ("port", True), ("port", "2222"), ("guests", ["-----BEGIN OPENSSH PRIVATE KEY-----"]), ("guests", "ssh-ed25519"),
])
def test_a_field_that_fails_its_check_makes_no_record(state, keys, field, value):
    data = json.loads(record(keys).render())
    data[field] = value
    assert DirectRecord.parse(json.dumps(data)) is None
    assert DirectRecord.parse("not json") is None and DirectRecord.parse("[]") is None
