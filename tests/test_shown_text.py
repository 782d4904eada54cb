"""Text from outside is shown escaped, in one place (pairing/text.py shown()): the console, the CLI's error
lines, the tunnel's reasons, doctor's lines. The end-to-end case (a relay's banner through `pairing host`)
is test_host_preflight's test_a_relays_banner_reaches_no_terminal_raw."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest

from pairing.doctor import Check
from pairing.hook.console import Console
from pairing.text import shown, shown_lines
from pairing.tunnel import State
from pairing.tunnel.spec import reason

from .harness import PROJECT

pytestmark = pytest.mark.pure

OSC52 = "\x1b]52;c;cm0gLXJmIH4K\x07"


@pytest.mark.parametrize("raw, escaped", [
    (f"x{OSC52}y", "x\\x1b]52;c;cm0gLXJmIH4K\\x07y"),
    ("right\u202eto left\u200b", "right\\u202eto left\\u200b"),
    ("\x9b31m\x00\x7f", "\\x9b31m\\x00\\x7f"),
    (b"\xff\x1b[2J", "\\xff\\x1b[2J"),
    ("a\nb\r", "a\\x0ab\\x0d"),
    ("plain: 'ok' (é, €, 中)", "plain: 'ok' (é, €, 中)"),
])
def test_shown_escapes_what_a_terminal_acts_on(raw, escaped):
    assert shown(raw) == escaped
    assert shown(escaped) == escaped  # idempotent: shown twice is shown once


def test_a_text_of_several_lines_keeps_its_line_breaks_only():
    assert shown_lines(f"one\ntwo{OSC52}\r") == "one\ntwo\\x1b]52;c;cm0gLXJmIH4K\\x07\\x0d"


def test_the_console_and_the_tunnels_reasons_show_no_escape():
    out = io.StringIO()
    console = Console(out)
    console.tunnel_state(State.RECONNECTING, reason(EOFError(f"Incompatible version ({OSC52} instead of 2.0)\nmore")))
    console.error(f"tmux said {OSC52}")
    console.status(f"status {OSC52}")
    assert "\x1b" not in out.getvalue() and "\x07" not in out.getvalue()
    assert "reconnecting: Incompatible version (\\x1b]52;c;cm0gLXJmIH4K\\x07 instead of 2.0)\n" in out.getvalue()


def test_doctors_lines_quote_a_banner_escaped():
    line = Check("sshd", True, f"SSH-2.0-{OSC52} on localhost:22").line()
    assert line == "ok   sshd: SSH-2.0-\\x1b]52;c;cm0gLXJmIH4K\\x07 on localhost:22"


def test_no_library_logs_to_stderr():
    """paramiko's logger, as a failed handshake uses it, prints nothing once pairing's CLI set logging up."""
    code = ("import logging, pairing.text as t; t.quiet_library_logs(); "
            "logging.getLogger('paramiko.transport').error('Exception (client): \\x1b]0;t\\x07'); "
            "logging.getLogger('sshtunnel.SSHTunnelForwarder').error('x'); logging.getLogger('pairing.selftest').error('y')")
    result = subprocess.run([sys.executable, "-c", code], cwd=PROJECT, capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
