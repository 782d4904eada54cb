"""How every command's --help reads: prose wrapped, examples and tables as written, required flags shown so.

cli.py's parsers use it (CommandParser for every command, so a new one gets it too); tests/test_help_and_status.py
checks what a user sees.
"""

from __future__ import annotations

import argparse
import copy
import re

from .text import did_you_mean


SHOWN_REQUIRED = "pairing_required"  # set on an argparse action: required, checked by the command


class Help(argparse.HelpFormatter):
    """Every command's help: prose wrapped to the terminal, indented lines (examples, the exit status table) kept as
    written, and in the usage line the flags a command's own checks require (SHOWN_REQUIRED) without brackets:
    argparse must not stop at them alone, since `pairing up` says every problem at once (up_plan)."""

    def _fill_text(self, text, width, indent):
        out: list[str] = []
        prose: list[str] = []
        for line in [*text.splitlines(), ""]:
            if line and not line.startswith(" ") and not line.endswith(":"):
                prose.append(line)
                continue
            if prose:
                out.append(super()._fill_text(" ".join(prose), width, indent))
                prose = []
            out.append(indent + line if line else "")
        return "\n".join(out).rstrip("\n")

    def _format_usage(self, usage, actions, groups, prefix):
        shown = []
        for action in actions:
            if getattr(action, SHOWN_REQUIRED, False):
                action = copy.copy(action)
                action.required = True
            shown.append(action)
        return super()._format_usage(usage, shown, groups, prefix)


class CommandParser(argparse.ArgumentParser):
    """Every command's parser (the top one's too): Help's formatting unless told otherwise, and a mistyped
    command, choice or flag gets the nearest one it has: `pairing whoo` (did you mean who?)."""

    def __init__(self, *args, formatter_class=Help, **kwargs) -> None:
        super().__init__(*args, formatter_class=formatter_class, **kwargs)

    def error(self, message: str):
        choice = re.match(r"(argument .*: invalid choice: '(.*)') (\(choose from .*\))$", message)
        if choice:
            near = did_you_mean(choice[2], re.findall(r"'([^']*)'", choice[3]))
            message = f"{choice[1]}{near} {choice[3]}"
        elif message.startswith("unrecognized arguments: "):
            typed = next((word for word in message.split()[2:] if word.startswith("-")), "")
            flags = [flag for action in self._actions for flag in action.option_strings if flag.startswith("--")]
            message += did_you_mean(typed.partition("=")[0], flags) if typed else ""
        super().error(message)


def unrecognized(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """parse_args, but flags no command has are said by that command's parser, which knows its own flags
    (the top parser would say them with no suggestion)."""
    args, extra = parser.parse_known_args(argv)
    if extra:
        commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        commands.choices[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def examples(*lines: str) -> str:
    return "example" + ("s" if len(lines) > 1 else "") + ":\n" + "\n".join(f"  {line}" for line in lines)
