"""The relay's network: a namespace of its own, joined to ours by a veth pair."""

from __future__ import annotations

import ipaddress
import json
import random

from .commands import HarnessError, _run, _tool

NETNS_PREFIX = "pairing-relay-"
VETH_SUPERNET = ipaddress.ip_network("10.213.0.0/16")


class Netns:
    """A network namespace joined to ours by a veth pair on a /30 of VETH_SUPERNET."""

    SLOTS = VETH_SUPERNET.num_addresses // 4

    def __init__(self, slot: int) -> None:
        self.name = f"{NETNS_PREFIX}{slot}"
        self.host_if, self.relay_if = f"prh{slot}", f"prr{slot}"
        subnet = ipaddress.ip_network(f"{VETH_SUPERNET[slot * 4]}/30")
        self.subnet = subnet
        self.host_ip, self.relay_ip = subnet[1], subnet[2]

    @classmethod
    def create(cls) -> Netns:
        ip = _tool("ip")
        start = random.randrange(cls.SLOTS)
        for offset in range(cls.SLOTS):
            net = cls((start + offset) % cls.SLOTS)
            # `ip netns add` fails when the name exists: that is the lock between concurrent relays.
            if _run([ip, "netns", "add", net.name], check=False).returncode:
                continue
            if _run([ip, "-4", "-o", "addr", "show", "to", str(net.subnet)]).stdout.strip():
                _run([ip, "netns", "del", net.name])  # someone else's veth uses this subnet
                continue
            try:
                net._wire()
            except BaseException:
                net.delete()
                raise
            return net
        raise HarnessError(f"no free /30 left in {VETH_SUPERNET}")

    def _wire(self) -> None:
        ip, inside = _tool("ip"), [_tool("ip"), "-n", self.name]
        _run([ip, "link", "add", self.host_if, "type", "veth", "peer", "name", self.relay_if,
              "netns", self.name])
        _run([ip, "addr", "add", f"{self.host_ip}/30", "dev", self.host_if])
        _run([*inside, "addr", "add", f"{self.relay_ip}/30", "dev", self.relay_if])
        _run([ip, "link", "set", "dev", self.host_if, "up"])
        _run([*inside, "link", "set", "dev", self.relay_if, "up"])
        _run([*inside, "link", "set", "dev", "lo", "up"])
        # Static neighbours: while the network is cut, a failed ARP would otherwise turn into
        # "host unreachable" errors, which a dead network never gives.
        _run([ip, "neigh", "replace", str(self.relay_ip), "lladdr", self._mac(inside, self.relay_if),
              "dev", self.host_if, "nud", "permanent"])
        _run([*inside, "neigh", "replace", str(self.host_ip), "lladdr", self._mac([ip], self.host_if),
              "dev", self.relay_if, "nud", "permanent"])

    @staticmethod
    def _mac(ip: list[str], dev: str) -> str:
        return str(json.loads(_run([*ip, "-j", "link", "show", "dev", dev]).stdout)[0]["address"])

    def set_relay_link(self, up: bool) -> None:
        _run([_tool("ip"), "-n", self.name, "link", "set", "dev", self.relay_if, "up" if up else "down"])

    def delete(self) -> None:
        ip = _tool("ip")
        # Deleting the netns alone removes the veth later, asynchronously.
        _run([ip, "link", "del", self.host_if], check=False)
        _run([ip, "netns", "del", self.name], check=False)

