"""The benchmark command works end to end: a --quick run prints the table and writes
its raw numbers as JSON. Benchmarks are not timed tests: no speed is judged here."""

from __future__ import annotations

import json
import subprocess
import sys

from .harness import PROJECT


def test_quick_run_prints_the_table_and_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    result = subprocess.run([sys.executable, "-m", "bench", "--quick", "--out", str(out)], cwd=PROJECT,
                            capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stdout + result.stderr[-4000:]
    assert "| measure | measured | goal | met |" in result.stdout
    data = json.loads(out.read_text())
    for row in data["table"]:
        assert f"| {row['measure']} | {row['value']} | {row['goal']} |" in result.stdout
    keys = data["options"]["keys"]
    for measured in ("keystrokes_ms", "bare_keystrokes_ms"):
        assert {name: len(samples) for name, samples in data[measured].items()} == {
            "pairing": keys, "openssh": keys, "direct": keys}
    for route in ("pairing", "openssh"):
        assert [len(guest) for guest in data["group_keystrokes_ms"][route]] == [keys] * data["options"]["guests"]
        assert len(data["bulk_mb_s"][route]) == data["options"]["transfers"]
    phase = data["time_to_pair_s"]  # the warm start, each part and their sum
    assert 0 < phase["ready"] and 0 < phase["attached"] and 0 < phase["first_key"]
    assert abs(phase["total"] - phase["ready"] - phase["attached"] - phase["first_key"]) < 1e-9
    assert "warm start: pairing host started -> a guest's first echoed key" in result.stdout
    added = data["add_to_pair_s"]  # pairing add, then the new guest with the invite it wrote
    assert 0 < added["answered"] and 0 < added["attached"] and 0 < added["first_key"]
    assert "pairing add -> the new guest's first echoed key" in result.stdout
    assert data["hook"]["peak_rss_mb"] > 0 and data["hook"]["idle_seconds"] > 0
    assert data["machine"]["nproc"] >= 1
    assert data["load"][0]["loadavg"][0] >= 0
    assert out.with_suffix(".png").read_bytes().startswith(b"\x89PNG\r\n")  # the distributions, beside the JSON
