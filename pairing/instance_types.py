"""The EC2 instance types a relay may run on, and the instanceType setting's parser."""

from __future__ import annotations

import re
from typing import Any

from .sshkeys import shorten

# Instance families pairing knows, by CPU architecture (which picks the AMI).
# A relay only forwards bytes, so small burstable types are the point; the
# others are listed for accounts where those are unavailable.
ARCHITECTURE_OF_FAMILY = {
    **dict.fromkeys(
        ("t2", "t3", "t3a", "m5", "m5a", "m6i", "m6a", "m7i", "m7a", "c5", "c5a", "c6i", "c6a", "c7i", "c7a"), "x86_64"
    ),
    **dict.fromkeys(("t4g", "a1", "m6g", "m7g", "m8g", "c6g", "c7g", "c8g"), "arm64"),
}
# The sizes each family really comes in (EC2's instance type list, as in the EC2 API's
# InstanceType enum that pulumi_aws.ec2.InstanceType mirrors; tests/test_settings.py
# checks every type below against it). A type outside this table would pass the
# settings and fail only at RunInstances, after the network was made.
_BURSTABLE = ("nano", "micro", "small", "medium", "large", "xlarge", "2xlarge")
_XL = {n: tuple(f"{k}xlarge" for k in n) for n in [(2, 4, 8, 12, 16, 24), (2, 4, 8, 12, 16, 24, 32), (2, 4, 8, 12, 16)]}
_M = ("large", "xlarge")
_G = ("medium", "large", "xlarge", *_XL[(2, 4, 8, 12, 16)], "metal")  # Graviton 2 and 3
_G4 = ("medium", "large", "xlarge", *_XL[(2, 4, 8, 12, 16, 24)], "48xlarge", "metal-24xl", "metal-48xl")
SIZES_OF_FAMILY = {
    **dict.fromkeys(("t2", "t3", "t3a", "t4g"), _BURSTABLE),
    "m5": (*_M, *_XL[(2, 4, 8, 12, 16, 24)], "metal"),
    "m5a": (*_M, *_XL[(2, 4, 8, 12, 16, 24)]),
    "c5a": (*_M, *_XL[(2, 4, 8, 12, 16, 24)]),
    "c5": (*_M, "2xlarge", "4xlarge", "9xlarge", "12xlarge", "18xlarge", "24xlarge", "metal"),
    **dict.fromkeys(("m6i", "c6i"), (*_M, *_XL[(2, 4, 8, 12, 16, 24, 32)], "metal")),
    **dict.fromkeys(("m6a", "c6a"), (*_M, *_XL[(2, 4, 8, 12, 16, 24, 32)], "48xlarge", "metal")),
    **dict.fromkeys(("m7i", "c7i"), (*_M, *_XL[(2, 4, 8, 12, 16, 24)], "48xlarge", "metal-24xl", "metal-48xl")),
    **dict.fromkeys(("m7a", "c7a"), ("medium", *_M, *_XL[(2, 4, 8, 12, 16, 24, 32)], "48xlarge", "metal-48xl")),
    "a1": ("medium", *_M, "2xlarge", "4xlarge", "metal"),
    **dict.fromkeys(("m6g", "m7g", "c6g", "c7g"), _G),
    **dict.fromkeys(("m8g", "c8g"), _G4),
}
assert set(SIZES_OF_FAMILY) == set(ARCHITECTURE_OF_FAMILY), "every family needs its sizes"
INSTANCE_SIZE = re.compile(r"(nano|micro|small|medium|large|[0-9]*xlarge|metal(-[0-9]+xl)?)")


def instance_type(raw: Any) -> str:
    """The pairing:instanceType setting: a type EC2 really has, in a family whose architecture we know."""
    family, dot, size = str(raw).strip().partition(".")
    if not dot or not INSTANCE_SIZE.fullmatch(size):
        raise ValueError(f"{shorten(raw)!r} is not an EC2 instance type; use e.g. t3.micro (x86_64) or t4g.micro (arm64)")
    if family not in ARCHITECTURE_OF_FAMILY:
        raise ValueError(
            f"{shorten(raw)!r} has an unknown instance family {shorten(family)!r}; "
            f"use one of {', '.join(sorted(ARCHITECTURE_OF_FAMILY))}"
        )
    sizes = SIZES_OF_FAMILY[family]
    if size not in sizes:
        raise ValueError(f"{family}.{size} does not exist; {family} comes in {', '.join(sizes)} (e.g. {family}.{sizes[0]})")
    return f"{family}.{size}"
