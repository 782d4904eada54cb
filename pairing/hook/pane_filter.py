"""What a guest's terminal can be shown of a pane's bytes: the filter between `pipe-pane` and the recording.

A guest never gets the pane's raw bytes: tmux parses them into its own screen and draws that screen on
each client with its own sequences. A recording of the raw bytes would hand whoever replays it
(`asciinema cat`, `play`) what tmux keeps to itself: an OSC 52 clipboard write, a DCS passthrough
(`ESC P tmux; ...`), window titles (OSC 0/1/2, ESC k), and queries a terminal answers by typing into its
own input (device attributes, status and window reports, ENQ's answerback). So this keeps only what
draws: text, the C0 controls that move the cursor or ring, CSI sequences that move, erase, scroll, set
colours and attributes (SGR) or screen modes, and the plain ESC sequences (save/restore cursor, index,
character sets). Every OSC, DCS, SOS, PM and APC string is dropped whole; so is every other sequence,
every other control character, and the C1 controls (U+0080-U+009F, in UTF-8 C2 80-C2 9F).

A state machine over bytes (after DEC's VT500 parser, as tmux's input.c is): feed() takes any chunk and
returns what is safe so far, holding back only an unfinished CSI or ESC sequence (bounded) or a lone
C2 byte; a sequence split between two reads is judged whole.
"""

from __future__ import annotations

ESC, BEL, CAN, SUB, C2 = 0x1B, 0x07, 0x18, 0x1A, 0xC2
# C0 controls a terminal draws with: BEL, BS, HT, LF, VT, FF, CR, SO, SI. Not ENQ (answerback), not NUL.
DRAWING_CONTROLS = frozenset(b"\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f")
# CSI finals without a private marker or intermediate: cursor moves, erases, inserts and deletes,
# scrolling, tab stops, SGR, modes (SM/RM), scroll region, save/restore cursor. Not c (device attributes),
# n (status reports), t (window operations and reports), x, y, and the rest.
DRAWING_CSI = frozenset(b"@ABCDEFGHIJKLMPSTXZ`abdefghlmrsu")
PRIVATE_DRAWING_CSI = frozenset(b"hlJK")  # CSI ? ... : DEC modes (alternate screen, cursor), selective erase
# DEC modes that make the replaying terminal report mouse and focus into its own input.
REPORTING_MODES = frozenset({"9", "1000", "1001", "1002", "1003", "1004", "1005", "1006", "1015", "1016"})
STRINGS = frozenset(b"P]X^_k")  # DCS, OSC, SOS, PM, APC, and tmux's title (ESC k ... ESC \)
PLAIN_ESC = frozenset(b"78DEHMNO=>c")  # N, O: single shifts; not Z (DECID, a query a terminal answers)
CHARSET_INTERMEDIATES = frozenset(b"()*+-./#")
LONGEST = 256  # an unfinished sequence held back at most this long; past it, it is dropped

GROUND, ESCAPE, CSI, STRING, STRING_ESC, AFTER_C2, DISCARD = range(7)


class PaneFilter:
    """One pane's byte stream, filtered: feed() each chunk in order, then finish()."""

    def __init__(self) -> None:
        self.state = GROUND
        self.held = bytearray()  # the sequence being read (from its ESC), not yet judged
        self.dcs = False  # in STRING: whether it is a DCS, which only ESC \\ ends (as tmux reads it)
        self.final_from = 0x40  # in DISCARD: the lowest byte that ends the sequence dropped

    def feed(self, data: bytes) -> bytes:
        out = bytearray()
        for byte in data:
            self._step(byte, out)
        return bytes(out)

    def finish(self) -> bytes:
        """The stream ended: an unfinished sequence is dropped, a lone C2 byte let through (the decoder's to judge)."""
        out = b"\xc2" if self.state == AFTER_C2 else b""
        self.state, self.held = GROUND, bytearray()
        return out

    def _step(self, byte: int, out: bytearray) -> None:
        state = self.state
        if state == STRING:
            if byte == ESC:
                self.state = STRING_ESC
            elif byte in (CAN, SUB) or byte == BEL and not self.dcs:  # BEL ends an OSC (xterm's, tmux's habit)
                self.state = GROUND
            return
        if state == STRING_ESC:  # ESC \ ends the string; in a DCS (tmux's passthrough doubles its ESCs) only that
            if self.dcs and byte != ord("\\"):
                self.state = STRING
                return
            self.state = GROUND
            if byte != ord("\\"):  # elsewhere any other ESC starts a new sequence
                self._escape(out)
                self._step(byte, out)
            return
        if state == AFTER_C2:
            self.state = GROUND
            if 0x80 <= byte <= 0x9F:  # U+0080-U+009F: C1 controls (CSI, OSC, DCS in 8 bits): dropped
                return
            out.append(C2)
            self._step(byte, out)
            return
        if byte == ESC:
            self._escape(out)
            return
        if state == GROUND:
            if byte == C2:
                self.state = AFTER_C2
            elif byte >= 0x20 and byte != 0x7F or byte in DRAWING_CONTROLS:
                out.append(byte)
            return
        if byte in (CAN, SUB):  # abort the sequence
            self._ground()
        elif byte < 0x20:  # a control inside a sequence acts at once (VT500), the sequence goes on
            if byte in DRAWING_CONTROLS:
                out.append(byte)
        elif state == DISCARD or len(self.held) >= LONGEST:  # too long to be drawing: dropped to its final byte
            if state != DISCARD:
                self.state, self.held = DISCARD, bytearray()
                self.final_from = 0x40 if state == CSI else 0x30
            if byte >= self.final_from:
                self._ground()
        elif state == ESCAPE:
            self._after_escape(byte, out)
        else:
            self._in_csi(byte, out)

    def _escape(self, out: bytearray) -> None:
        self.state, self.held = ESCAPE, bytearray(b"\x1b")

    def _ground(self) -> None:
        self.state, self.held = GROUND, bytearray()

    def _after_escape(self, byte: int, out: bytearray) -> None:
        held = self.held
        if len(held) == 1 and byte == ord("["):
            held.append(byte)
            self.state = CSI
        elif len(held) == 1 and byte in STRINGS:
            self.state, self.held, self.dcs = STRING, bytearray(), byte == ord("P")
        elif 0x20 <= byte <= 0x2F:  # an intermediate: a character set's designation, ESC # 8, ...
            held.append(byte)
        else:
            intermediates = bytes(held[1:])
            keep = (not intermediates and byte in PLAIN_ESC) or \
                   (len(intermediates) == 1 and intermediates[0] in CHARSET_INTERMEDIATES and 0x30 <= byte <= 0x7E)
            if keep:
                out += held + bytes([byte])
            self._ground()

    def _in_csi(self, byte: int, out: bytearray) -> None:
        if byte < 0x40 or byte > 0x7E:  # a parameter, an intermediate (or a stray byte, judged with the rest)
            self.held.append(byte)
            return
        body = bytes(self.held[2:])
        if _drawing_csi(body, byte):
            out += self.held + bytes([byte])
        self._ground()


def _drawing_csi(body: bytes, final: int) -> bool:
    """Whether CSI body final draws (see DRAWING_CSI) rather than asks or reports."""
    marker = body[:1] if body[:1] in (b"<", b"=", b">", b"?") else b""
    params, intermediates = body[len(marker):], b""
    while params and 0x20 <= params[-1] <= 0x2F:
        intermediates, params = params[-1:] + intermediates, params[:-1]
    if any(not (0x30 <= b <= 0x3B) for b in params):  # only digits, ':' and ';' are parameters
        return False
    if intermediates:
        return not marker and (intermediates, final) in ((b" ", ord("q")), (b"!", ord("p")))  # cursor style, soft reset
    if marker == b"?":
        return final in PRIVATE_DRAWING_CSI and not REPORTING_MODES & set(params.decode().split(";"))
    return not marker and final in DRAWING_CSI


def filtered(text_bytes: bytes) -> bytes:
    """One whole piece of output (a screen's snapshot), filtered."""
    pane = PaneFilter()
    return pane.feed(text_bytes) + pane.finish()
