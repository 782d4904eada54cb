"""AWS regions: their names (pulumi-aws's own list), and `--region auto`, the nearest by measured round trip.

Nearest to the host is nearly best for the guest too: the guest's path is guest -> relay -> host, so
with the relay beside the host it is about guest -> host, the shortest there is; a relay anywhere
else adds its detour to every key (docs/relay.md).
"""

from __future__ import annotations

import socket
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

AUTO = "auto"
PROBE_PORT = 443
PROBES = 3  # TCP connects per region; the median counts
WITHIN = 3.0  # s for the whole measurement, every region at once

# Regions an account can use without opting in: those AWS launched before 20 March 2019 ("Specify which
# AWS Regions your account can use", AWS Account Management guide). A newer region is measured only
# when its name is given; --region auto never picks one an account may not have enabled.
ENABLED_BY_DEFAULT = (
    "us-east-1", "us-east-2", "us-west-1", "us-west-2", "ca-central-1", "sa-east-1",
    "eu-central-1", "eu-west-1", "eu-west-2", "eu-west-3", "eu-north-1",
    "ap-south-1", "ap-northeast-1", "ap-northeast-2", "ap-northeast-3", "ap-southeast-1", "ap-southeast-2",
)


def known_regions() -> tuple[str, ...]:
    """Every region name the installed pulumi-aws knows (its Region enum), or () without the aws extra."""
    try:
        from pulumi_aws._enums import Region
    except ImportError:
        return ()
    return tuple(region.value for region in Region)


def ec2_endpoint(region: str) -> tuple[str, int]:
    return f"ec2.{region}.amazonaws.com", PROBE_PORT


@dataclass(frozen=True)
class Measured:
    region: str
    ms: float | None  # median TCP connect time; None: no connect succeeded in time

    def __str__(self) -> str:
        return f"{self.region} {self.ms:.0f} ms" if self.ms is not None else f"{self.region} no answer"


def _connect_ms(address: tuple[str, int], deadline: float) -> float | None:
    """One TCP connect's time (the handshake: one round trip), or None if it failed or ran past the deadline."""
    left = deadline - time.monotonic()
    if left <= 0:
        return None
    started = time.perf_counter()
    try:
        with socket.create_connection(address, timeout=left):
            return (time.perf_counter() - started) * 1000
    except OSError:
        return None


def _probe(region: str, endpoint: tuple[str, int], deadline: float) -> Measured:
    try:  # resolved once, outside the timing: DNS is not the path a key takes
        family, kind, proto, _, address = socket.getaddrinfo(*endpoint, type=socket.SOCK_STREAM)[0]
    except (OSError, UnicodeError):
        return Measured(region, None)
    times = [ms for ms in (_connect_ms(address[:2], deadline) for _ in range(PROBES)) if ms is not None]
    return Measured(region, statistics.median(times) if times else None)


def measure(endpoints: Mapping[str, tuple[str, int]], within: float = WITHIN) -> list[Measured]:
    """Every region's round trip, all in parallel within `within` seconds; nearest first, silent ones last."""
    deadline = time.monotonic() + within
    with ThreadPoolExecutor(max_workers=max(1, len(endpoints))) as pool:
        found = list(pool.map(lambda item: _probe(*item, deadline), endpoints.items()))
    return sorted(found, key=lambda m: (m.ms is None, m.ms or 0.0, m.region))


class NoRegionAnswered(RuntimeError):
    pass


def nearest(regions: Sequence[str] = ENABLED_BY_DEFAULT,
            endpoint: Callable[[str], tuple[str, int]] = ec2_endpoint, within: float = WITHIN) -> tuple[str, str]:
    """The nearest region and the line that says why (the figures), or NoRegionAnswered."""
    found = measure({region: endpoint(region) for region in regions}, within)
    if found[0].ms is None:
        raise NoRegionAnswered(f"--region auto: no region's EC2 endpoint answered within {within:g} s "
                               f"({len(found)} tried); check the network, or pass --region NAME")
    answered = [m for m in found if m.ms is not None]
    shown = ", ".join(map(str, answered[:5]))
    silent = len(found) - len(answered)
    return found[0].region, (f"--region auto: {found[0].region}, the nearest by TCP round trip to each region's EC2 "
                             f"endpoint: {shown}" + (f"; {silent} did not answer" if silent else ""))
