"""pairing/hook/pane_filter.py: what of a pane's bytes the recording keeps, whole sequences judged whole
however the pipe's reads cut them. End to end (a guest's printf through tmux into a .cast):
test_recording's test_the_recording_drops_what_tmux_does_not_pass_on."""

from __future__ import annotations

import pytest

from pairing.hook.pane_filter import LONGEST, PaneFilter, filtered

pytestmark = pytest.mark.pure

OSC52 = b"\x1b]52;c;cm0gLXJmIH4K\x07"
CASES = [
    # (what the pane wrote, what the recording keeps)
    (b"a" + OSC52 + b"b", b"ab"),
    (b"a\x1b]52;c;cm0g\x1b\\b", b"ab"),  # OSC ended by ST
    (b"a\x1bPtmux;\x1b\x1b]52;c;cm0g\x07hidden\x1b\\b", b"ab"),  # tmux's DCS passthrough: only ESC \ ends it
    (b"\x1bPq#0;2;0;0;0#0~~@@\x1b\\six", b"six"),  # sixel (DCS)
    (b"\x1b]0;title\x07\x1b]2;t\x1b\\\x1bkwindow\x1b\\t", b"t"),  # titles: OSC 0/2, tmux's ESC k
    (b"\x1b_apc\x1b\\\x1b^pm\x1b\\\x1bXsos\x1b\\.", b"."),
    (b"\x1b[31mred\x1b[0m \x1b[1;38;5;196mb\x1b[38:2::1:2:3mc", b"\x1b[31mred\x1b[0m \x1b[1;38;5;196mb\x1b[38:2::1:2:3mc"),
    (b"\x1b[H\x1b[2J\x1b[10;5H\x1b[K\x1b[3A\x1b[?25l\x1b[?1049h\x1b[1;24r\x1b[2 q\x1b[!p",
     b"\x1b[H\x1b[2J\x1b[10;5H\x1b[K\x1b[3A\x1b[?25l\x1b[?1049h\x1b[1;24r\x1b[2 q\x1b[!p"),
    (b"\x1b(B\x1b)0\x1b7\x1b8\x1bM\x1b=\x1b>\x1b#8", b"\x1b(B\x1b)0\x1b7\x1b8\x1bM\x1b=\x1b>\x1b#8"),
    # Queries a replaying terminal answers into its own input: dropped.
    (b"\x1b[c\x1b[>c\x1b[=c\x1b[5n\x1b[6n\x1b[21t\x1b[14t\x1b[?u\x1b[>q\x1b[?2026$p\x1bZ\x05x", b"x"),
    (b"\x1b[?1000;1006h\x1b[?1004h\x1b[>4;1m\x1b[?2004h", b"\x1b[?2004h"),  # mouse, focus, key modifiers
    ("a\u009b31m\u009d0;t\u009cb".encode(), "a31m0;tb".encode()),  # C1 controls, as UTF-8
    ("é€中\U0001F600".encode(), "é€中\U0001F600".encode()),
    (b"\x00\x01\x7f\x08\t\r\n\x07", b"\x08\t\r\n\x07"),
    (b"\x1b[31\x18m\x1b]52;x\x1a!", b"m!"),  # CAN and SUB abort a sequence
    (b"\x1b[" + b"1;" * LONGEST + b"mafter", b"after"),  # too long: dropped to its end
    (b"\x1b[" + b"1" * (LONGEST - 2) + b"mafter", b"after"),  # its final byte the first one past the bound
    (b"\x1b[" + b"1" * (LONGEST - 3) + b"mafter", b"\x1b[" + b"1" * (LONGEST - 3) + b"mafter"),  # just within
]


@pytest.mark.parametrize("raw, kept", CASES)
def test_what_the_recording_keeps(raw, kept):
    assert filtered(raw) == kept


@pytest.mark.parametrize("raw, kept", CASES)
def test_cut_anywhere_the_same(raw, kept):
    """One byte per read, and every cut in two: the same bytes out."""
    pane = PaneFilter()
    assert b"".join(pane.feed(raw[i:i + 1]) for i in range(len(raw))) + pane.finish() == kept
    for cut in range(len(raw) + 1):
        pane = PaneFilter()
        assert pane.feed(raw[:cut]) + pane.feed(raw[cut:]) + pane.finish() == kept, cut


def test_an_unfinished_string_is_held_back_not_leaked():
    pane = PaneFilter()
    assert pane.feed(b"ok\x1b]52;c;cm0g") == b"ok"
    assert pane.feed(b"LXJm") == b""
    assert pane.feed(b"\x07next") == b"next"
