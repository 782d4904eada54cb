"""`--region auto`: every region's round trip measured at once, within its deadline, the nearest chosen.

Real TCP against local listeners only, never a real endpoint: one that answers, one that refuses, one
whose accept queue is full (its SYNs vanish, as behind a dead path). The command itself runs in a
network namespace of its own with nothing in it, where no AWS endpoint can be reached or even named.
(A measured difference in delay needs netem, which this kernel lacks: sch_netem is not built.)
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pairing.regions import ENABLED_BY_DEFAULT, Measured, known_regions, measure, nearest

from .harness import PROJECT

pytestmark = pytest.mark.pure


@pytest.fixture()
def listeners():
    answering = socket.create_server(("127.0.0.1", 0))
    refusing = socket.create_server(("127.0.0.1", 0))
    refused_port = refusing.getsockname()[1]
    refusing.close()  # nothing listens there now: a connect gets a reset at once
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(0)
    fillers = []
    for _ in range(4):  # the queue holds backlog + 1; the rest of these wait, never completed
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(silent.getsockname())
        fillers.append(filler)
    yield {"answering": answering.getsockname(), "refusing": ("127.0.0.1", refused_port),
           "silent": silent.getsockname()}
    for sock in (answering, silent, *fillers):
        sock.close()


def test_every_region_at_once_within_the_deadline_nearest_first(listeners):
    endpoints = {"eu-silent-1": listeners["silent"], "eu-refusing-1": listeners["refusing"],
                 "eu-near-1": listeners["answering"]}
    started = time.monotonic()
    found = measure(endpoints, within=1.5)
    took = time.monotonic() - started
    assert took < 1.5 + 0.5, took  # the silent one does not hold the others past the deadline
    assert [m.region for m in found] == ["eu-near-1", "eu-refusing-1", "eu-silent-1"]
    assert found[0].ms is not None and found[0].ms < 100
    assert found[1].ms is None and found[2].ms is None


def test_nearest_says_its_figures_in_one_line(listeners):
    chosen, line = nearest(["eu-near-1", "eu-silent-1"], endpoint=lambda region: listeners[
        "answering" if region == "eu-near-1" else "silent"], within=1.0)
    assert chosen == "eu-near-1"
    assert line.startswith("--region auto: eu-near-1, the nearest by TCP round trip to each region's EC2 endpoint: "
                           "eu-near-1 ")
    assert line.endswith(" ms; 1 did not answer") and "\n" not in line


def test_order_is_by_round_trip_then_name():
    assert str(Measured("eu-west-1", 12.4)) == "eu-west-1 12 ms"
    assert str(Measured("eu-west-2", None)) == "eu-west-2 no answer"


def test_auto_only_picks_regions_every_account_has_and_pulumi_aws_knows():
    known = known_regions()
    assert "eu-central-1" in known and len(known) >= 30  # pulumi-aws's own list, not ours
    assert set(ENABLED_BY_DEFAULT) <= set(known)
    assert "af-south-1" in known and "af-south-1" not in ENABLED_BY_DEFAULT  # opt-in: never picked by auto


def test_up_with_auto_and_no_network_is_one_line_before_anything(tmp_path, keys):
    """In a network namespace with nothing in it: no endpoint answers, and nothing was touched."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    for suffix in ("", ".pub"):
        (home / ".ssh" / f"id_ed25519{suffix}").write_bytes(Path(f"{keys['host'].path}{suffix}").read_bytes())
    started = time.monotonic()
    result = subprocess.run(["unshare", "--net", sys.executable, "-m", "pairing", "up", "--guest",
                             keys["guest"].public_line, "--region", "auto"], cwd=PROJECT,
                            env={"HOME": str(home), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"},
                            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr == (f"pairing up: --region auto: no region's EC2 endpoint answered within 3 s "
                             f"({len(ENABLED_BY_DEFAULT)} tried); check the network, or pass --region NAME\n")
    assert time.monotonic() - started < 20
    assert not (home / ".local" / "share" / "pairing").exists()  # no backend, no key, no invite: as test_up checks
