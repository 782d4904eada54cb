"""README.md as a newcomer reads it: short, both ways to pair on its first screen, and every command and
message it quotes checked against the real thing. Its commands are parsed by pairing's own parser (the
quick start's install is tests/test_install.py's); each sample of what the host and the guest see is
matched line by line, in order, against a real run: `pairing direct` as uid 65534 with a guest over a
veth (tests/test_direct.py's fixtures), `pairing host` and `pairing invite` on the harness relay."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys

from pairing.cli import parser

from .harness import PROJECT, join, wait_until
from .test_direct import HOST_IP, READY, direct, lan, land  # noqa: F401 (fixtures)

README = PROJECT / "README.md"
# Pages other branches write; linked from here before they land. The merge removes them from this set.
PAGES_OF_OTHERS: set[str] = set()
# The pages README.md's text moved to.
MOVED_PAGES = ("install", "relay", "guests", "recording", "windows-putty", "troubleshooting", "development")
# What may vary between a sample and a run: times, addresses, ports, names, paths, and "..." for the rest.
VARYING = [
    (r"\.\.\.", r".*"),
    (r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"),
    (r"\d\d:\d\d:\d\d", r"\d\d:\d\d:\d\d"),
    (r"\d+\.\d+\.\d+\.\d+(?::\d+)?", r"[0-9.]+(?::\d+)?"),
    (r"\b(?:alice|bob|carol|laptop)\b", r"[\w.-]+"),
    (r"pairing\.conf", r"\S*pairing\.conf"),
]


def readme() -> str:
    return README.read_text()


def section(title: str) -> str:
    return readme().split(f"\n## {title}\n")[1].split("\n## ")[0]


def blocks(text: str, info: str) -> list[list[str]]:
    """The code blocks of `text` opened with ```INFO, as lists of lines."""
    found: list[tuple[str, list[str]]] = []
    inside = False
    for line in text.splitlines():
        if line.startswith("```"):
            inside = not inside
            if inside:
                found.append((line[3:], []))
        elif inside:
            found[-1][1].append(line)
    return [lines for kind, lines in found if kind == info]


def shell_lines(block: list[str]) -> list[str]:
    """A block's commands, a line ending in && continued on the next one."""
    lines: list[str] = []
    for line in block:
        if lines and lines[-1].endswith("&&"):
            lines[-1] += " " + line.strip()
        else:
            lines.append(line.strip())
    return lines


def pattern(line: str) -> re.Pattern:
    """The sample line as a regular expression: literal but for what VARYING allows."""
    combined = "|".join(f"({sample})" for sample, _ in VARYING)
    out, at = [], 0
    for match in re.finditer(combined, line):
        out.append(re.escape(line[at:match.start()]))
        out.append(VARYING[match.lastindex - 1][1])
        at = match.end()
    out.append(re.escape(line[at:]))
    return re.compile("".join(out))


def assert_shown_in_order(sample: list[str], seen: list[str]) -> None:
    """Each sample line matches a line seen, after the one the line before it matched."""
    at = 0
    for line in sample:
        rule = pattern(line)
        found = next((i for i in range(at, len(seen)) if rule.fullmatch(seen[i])), None)
        assert found is not None, f"not shown after line {at}: {line!r}\n" + "\n".join(seen)
        at = found + 1


# --- the page ---------------------------------------------------------------------------------------


def test_the_page_is_short_with_short_lines_and_no_nested_parentheses():
    text = readme()
    assert len(text.encode()) < 8 * 1024
    assert [line for line in text.splitlines() if len(line) > 100] == []
    prose = re.sub(r"^```.*?^```$", "", text, flags=re.M | re.S)
    prose = re.sub(r"`[^`]*`", "", prose)
    assert not re.search(r"\([^()]*\(", prose), re.search(r"\([^()]*\(.*", prose)[0]


def test_both_ways_to_pair_and_run_as_yourself_are_on_the_first_screen():
    first = "\n".join(readme().splitlines()[:24])
    assert "`pairing direct`" in first and "`pairing up`" in first
    assert "Run pairing as your own user, not root: `pairing direct` refuses root" in first


def test_every_linked_page_exists_and_reads_as_short():
    """README.md's links, and the pages of docs/ it moved its text to: short lines, no nested parentheses,
    every link to a file that exists."""
    links = set(re.findall(r"\]\(([^)#]+)\)", readme()))
    assert {"docs/relay.md", "docs/recording.md", "docs/windows-putty.md", "docs/troubleshooting.md"} <= links
    missing = set()
    for page in [README, *(PROJECT / "docs" / f"{name}.md" for name in MOVED_PAGES)]:
        text = page.read_text()
        assert [line for line in text.splitlines() if len(line) > 100] == [], page
        prose = re.sub(r"`[^`]*`", "", re.sub(r"^```.*?^```$", "", text, flags=re.M | re.S))
        assert not re.search(r"\([^()]*\(", prose), (page, re.search(r"\([^()]*\(.*", prose)[0])
        for link in re.findall(r"\]\(([^)#]+)\)", text):
            target = (page.parent / link).resolve()
            if not link.startswith("https://") and not target.is_file():
                missing.add(str(target.relative_to(PROJECT)))
    assert missing <= PAGES_OF_OTHERS, missing


def test_the_quick_start_is_two_commands_one_that_pairs_and_one_that_tests():
    pairs, tests = [line for block in blocks(section("Quick start"), "sh") for line in shell_lines(block)]
    assert pairs.startswith("python3 -m venv venv && venv/bin/pip install -q . && venv/bin/pairing direct ")
    assert tests == "bash .ci/run" and (PROJECT / ".ci" / "run").is_file()


def test_every_command_it_quotes_is_one_pairing_takes():
    """Each sh line, split at &&: pairing's commands parse with its own parser; the rest are named here."""
    others = {"python3 -m venv venv", "venv/bin/pip install -q .", "venv/bin/pip install -q -r requirements.txt",
              "bash .ci/run", "ssh -F pairing.conf pairing"}
    commands = []
    for block in blocks(readme(), "sh"):
        for line in shell_lines(block):
            commands += [part.strip() for part in line.split("&&") if part.strip()]
    assert len(commands) >= 7, commands
    for command in commands:
        argv = shlex.split(command)
        if argv[0] in ("pairing", "venv/bin/pairing"):
            parser().parse_args(argv[1:])  # exits 2 on anything it does not take
        else:
            assert command in others, command
    assert "-e .[aws]" in (PROJECT / "requirements.txt").read_text().splitlines()


# --- what the host and the guest see ------------------------------------------------------------------


def test_direct_as_the_readme_shows_it(direct):  # noqa: F811 (fixture)
    """The host's lines, the guest's status line and the invite's first lines, from a real run."""
    hook = direct.start("--listen", HOST_IP)
    guest = None
    try:
        hook.wait_for(READY)
        guest = land(direct)
        hook.wait_for("joined the session (typing)", 10)
        wait_until(lambda: " typing, 0 watching" in hook.text.splitlines()[-1], 10, "the status line")
        # The host's tmux status line, once the join notice on it has gone.
        wait_until(lambda: re.search(r"^\[pair\] ", guest.screen, re.M), 15, "the tmux status line",
                   show=lambda: guest.screen)
        host, invite = hook.text.splitlines(), direct.invite.read_text().splitlines()
    finally:
        if guest:
            guest.disconnect()
        assert hook.stop() == 0, hook.text
    shown = section("Direct: nothing but OpenSSH and tmux")
    (sample,) = blocks(shown, "")
    assert_shown_in_order(sample, host)
    (header,) = blocks(section("What the guest runs"), "")
    assert_shown_in_order(header, invite)
    assert "`tmux -S ~/.local/state/pairing/tmux/pair attach -t pair`" in shown
    assert re.search(r"attach yourself: tmux -S \S+ attach -t pair\)", hook.text), hook.text


def test_direct_as_root_stops_with_the_readmes_words(tmp_path, keys):
    quoted = re.search(r"As root it stops at once:\n?`([^`]+)`", section("Direct: nothing but OpenSSH and tmux"))[1]
    result = subprocess.run([sys.executable, "-m", "pairing", "direct", "--guest", keys["guest"].public_line,
                             "--listen", "127.0.0.1", "--invite", str(tmp_path / "pairing.conf")],
                            cwd=tmp_path, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
                            env={"HOME": str(tmp_path), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                                 "PYTHONPATH": str(PROJECT)})
    assert (result.returncode, result.stdout) == (2, "") and result.stderr == f"pairing direct: {quoted}\n", result
    assert list(tmp_path.iterdir()) == []


def test_the_relay_as_the_readme_shows_it(pairing, hook, guests, tmp_path):
    """`pairing up`'s lines are its invite's and its hook's: `pairing invite`, then `pairing host`."""
    invite = subprocess.run([sys.executable, "-m", "pairing", "invite", "--outputs", str(pairing.outputs)],
                            cwd=tmp_path, capture_output=True, text=True, timeout=60,
                            env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "PYTHONPATH": str(PROJECT)})
    assert invite.returncode == 0, invite.stderr
    join(pairing, guests, "guest")
    hook.wait_for("joined the session (typing)", 10)
    wait_until(lambda: "1 typing, 0 watching" in hook.text, 10, "the status line to count the guest")
    (sample,) = blocks(section("Relay: from anywhere, through AWS"), "")
    assert_shown_in_order(sample, invite.stdout.splitlines() + hook.text.splitlines())
