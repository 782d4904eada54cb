"""The program in the host's tmux pane while the bench types: it echoes each key.

It does what a shell's line editor (readline, zle) does with a key: reads it
in raw mode and writes it back. Each guest's keys (argv: one string of keys
per guest) are drawn on that guest's own row, so that echoes of different
guests never land in the same cell, where tmux could draw only the last one.
"""

import os
import sys
import tty


def main() -> None:
    rows = {ord(key): row for row, keys in enumerate(sys.argv[1:], start=1) for key in keys}
    tty.setraw(0)
    while True:
        for key in os.read(0, 1024):
            if key in rows:
                os.write(1, b"\x1b[%d;1H%c" % (rows[key], key))


if __name__ == "__main__":
    main()
