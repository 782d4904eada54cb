"""One line of `pairing doctor`: a check's name, whether it passed, what it found and the fix."""

from __future__ import annotations

from dataclasses import dataclass

from .text import shown


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""

    def line(self) -> str:
        """Escaped (text.shown): the details quote banners, tools' versions and their errors."""
        mark = "ok  " if self.ok else "FAIL"
        return shown(f"{mark} {self.name}: {self.detail}" + (f"; fix: {self.fix}" if not self.ok and self.fix else ""))
