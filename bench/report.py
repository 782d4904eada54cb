"""Raw numbers -> the table of ratios and goals, and the JSON file of a run."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import os
import platform
import socket
import statistics
import subprocess
from pathlib import Path

import paramiko

RESULTS = Path(__file__).resolve().parent / "results"
SKIPPED = "skipped (--quick)"


@dataclasses.dataclass(frozen=True)
class Row:
    measure: str
    value: str
    goal: str = "-"  # "-": reported for context, no goal
    met: bool | None = None

    @property
    def verdict(self) -> str:
        return "" if self.met is None else ("yes" if self.met else "**NO**")


def percentile(samples: list[float], p: float) -> float:
    """Nearest rank: the smallest sample with at least p % of all at or below it."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def machine() -> dict:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.machine())
    return {
        "host": socket.gethostname(),
        "nproc": os.cpu_count(),
        "model": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "paramiko": paramiko.__version__,
        "openssh": subprocess.run(["ssh", "-V"], capture_output=True, text=True).stderr.split(",")[0].strip(),
        "tmux": subprocess.run(["tmux", "-V"], capture_output=True, text=True).stdout.strip(),
    }


def _ratio(a: float, b: float) -> float:
    return a / b if b else math.inf


# Goals of issue 16, each a ratio within one run: (p, against, at most). p50 against the
# direct route is what tmate measured (one hop, its server seeing plaintext).
KEYSTROKE_GOALS = {(50, "direct"): 1.30, (99, "openssh"): 1.2}
BARE_GOALS = {50: 1.05, 99: 1.2}
AGAINST = {"openssh": "OpenSSH's tunnel", "direct": "direct to the host sshd"}


def _compare(label: str, ours: float, theirs: float, goal: float | None) -> Row:
    ratio = _ratio(ours, theirs)
    value = f"{ratio:.2f} ({ours:.2f} / {theirs:.2f} ms)"
    return Row(label, value) if goal is None else Row(label, value, f"<= {goal}", ratio <= goal)


def _keystroke_rows(keys: dict) -> list[Row]:
    rows = []
    for p in (50, 99):
        for against in ("direct", "openssh"):
            rows.append(_compare(f"keystroke p{p}: pairing / {AGAINST[against]}", percentile(keys["pairing"], p),
                                 percentile(keys[against], p), KEYSTROKE_GOALS.get((p, against))))
    return rows


def _bare_rows(bare: dict) -> list[Row]:
    """The echo without tmux; and what each tunnel adds over the direct route (its own cost, in µs)."""
    if not bare:
        return []
    rows = []
    for p, goal in BARE_GOALS.items():
        ours, openssh, floor = (percentile(bare[name], p) for name in ("pairing", "openssh", "direct"))
        rows.append(_compare(f"bare tunnel p{p}: pairing / OpenSSH's", ours, openssh, goal))
        rows.append(Row(f"bare tunnel p{p}: what the tunnel adds to the direct route's {floor:.2f} ms",
                        f"pairing {1000 * (ours - floor):.0f} us, OpenSSH {1000 * (openssh - floor):.0f} us"))
    return rows


def _group_rows(keys: dict, group: dict) -> list[Row]:
    rows = []
    for name, label in (("pairing", "pairing"), ("openssh", "OpenSSH, for reference")):
        together = percentile([s for guest in group[name] for s in guest], 99)
        alone = percentile(keys[name], 99)
        ratio = _ratio(together, alone)
        goal = name == "pairing"
        rows.append(Row(f"{len(group[name])} guests typing, p99 / 1 guest's: {label}",
                        f"{ratio:.2f} ({together:.2f} / {alone:.2f} ms)",
                        "<= 2" if goal else "-", ratio <= 2 if goal else None))
    return rows


def _baseline_rows(results: dict) -> list[Row]:
    """--baseline: this tree's hook against the other tree's, key by key in the same run."""
    rows = []
    for key, label in (("keystrokes_ms", "keystroke"), ("bare_keystrokes_ms", "bare tunnel"),
                       ("group_keystrokes_ms", "guests typing at once,")):
        samples = {route: ([s for guest in guests for s in guest] if key.startswith("group") else guests)
                   for route, guests in (results.get(key) or {}).items()}
        if "baseline" in samples:
            rows += [_compare(f"A/B {label} p{p}: pairing / the baseline's pairing host", percentile(samples["pairing"], p),
                              percentile(samples["baseline"], p), None) for p in (50, 99)]
    return rows


def _bulk_row(bulk: dict) -> Row:
    ours, openssh = statistics.median(bulk["pairing"]), statistics.median(bulk["openssh"])
    ratio = _ratio(ours, openssh)
    return Row("bulk host -> guest, MB/s: pairing / OpenSSH", f"{ratio:.2f} ({ours:.0f} / {openssh:.0f} MB/s)",
               ">= 0.8", ratio >= 0.8)


def _outage_rows(outages: list[dict]) -> list[Row]:
    specs = (("back", "tunnel usable after the network returns", 2),
             ("detected", "dead relay noticed by the hook", 15),
             ("port_freed", "dead connection's port freed on the relay", 30))
    if not outages:
        return [Row(label, SKIPPED, f"<= {limit} s") for _, label, limit in specs]
    rows = []
    for key, label, limit in specs:
        values = [o[key] for o in outages]
        worst = max(values)
        shown = f"{worst:.2f} s" + (f" (worst of {', '.join(f'{v:.2f}' for v in values)})" if len(values) > 1 else "")
        rows.append(Row(label, shown, f"<= {limit} s", worst <= limit))
    return rows


def _hook_rows(hook: dict) -> list[Row]:
    rows = []
    if hook.get("idle_seconds"):
        seconds = hook["idle_seconds"]
        own = 100 * hook["idle_cpu_s"] / seconds
        children = 100 * hook["idle_children_cpu_s"] / seconds
        rows.append(Row(f"hook CPU, idle {seconds:g} s with a guest attached",
                        f"{own:.2f} % of a core (+{children:.2f} % in its tmux calls)",
                        "about 0 (<= 1 % in all)", own + children <= 1))
    else:
        rows.append(Row("hook CPU, idle with a guest attached", SKIPPED, "about 0 (<= 1 % in all)"))
    rows.append(Row("hook peak RSS (VmHWM)", f"{hook['peak_rss_mb']:.1f} MB", "<= 60 MB", hook["peak_rss_mb"] <= 60))
    return rows


# Issue 20's goals, seconds on the harness relay: what a person waits for, not a ratio.
TIME_TO_PAIR_GOALS = {"time_to_pair_s": ("warm start: pairing host started -> a guest's first echoed key", 3.0),
                      "add_to_pair_s": ("pairing add -> the new guest's first echoed key", 2.0)}


def _time_to_pair_rows(results: dict) -> list[Row]:
    rows = []
    for key, (label, goal) in TIME_TO_PAIR_GOALS.items():
        phase = results.get(key)
        if phase is None:
            continue
        parts = ", ".join(f"{name.replace('_', ' ')} {value:.2f}" for name, value in phase.items() if name != "total")
        rows.append(Row(label, f"{phase['total']:.2f} s ({parts})", f"<= {goal:g} s", phase["total"] <= goal))
    return rows


def rows(results: dict) -> list[Row]:
    return [
        *_time_to_pair_rows(results),
        *_keystroke_rows(results["keystrokes_ms"]),
        *_bare_rows(results.get("bare_keystrokes_ms")),
        *_baseline_rows(results),
        _bulk_row(results["bulk_mb_s"]),
        *_group_rows(results["keystrokes_ms"], results["group_keystrokes_ms"]),
        *_outage_rows(results["outages"]),
        *_hook_rows(results["hook"]),
    ]


def render(results: dict) -> str:
    info, options = results["machine"], results["options"]
    lines = [
        f"{results['date']}: {info['host']}, nproc {info['nproc']}, {info['model']}, Linux {info['kernel']}; "
        f"{info['openssh']}, paramiko {info['paramiko']}, Python {info['python']}, {info['tmux']}; "
        f"relays: {options['relay_suite']}, {results['relay_openssh']}; "
        f"pairing host --tunnel {options.get('tunnel') or 'paramiko'}",
        f"{options['keys']} keys per guest, a key every {options['interval_ms']:g} ms on average; "
        f"{options['transfers']} x {options['payload_mb']:g} MB bulk; {options['outages']} outage(s)"
        + _load(results.get("load")),
        "",
        "| measure | measured | goal | met |",
        "|---|---|---|---|",
    ]
    lines += [f"| {r.measure} | {r.value} | {r.goal} | {r.verdict} |" for r in rows(results)]
    return "\n".join(lines)


def _load(load: list[dict] | None) -> str:
    if not load:
        return ""
    return f"; load average {load[0]['loadavg'][0]:.2f} at the start, {max(l['loadavg'][0] for l in load):.2f} at most"


def default_path(results: dict, quick: bool) -> Path:
    stamp = dt.datetime.fromisoformat(results["date"]).strftime("%Y-%m-%dT%H%M")
    return RESULTS / f"{stamp}-{results['machine']['host']}{'-quick' if quick else ''}.json"


def save(results: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    table = [dataclasses.asdict(r) for r in rows(results)]
    path.write_text(json.dumps({**results, "table": table}) + "\n")
