"""A DNS server's answers, at the edge PreRead resolves through (a
:class:`preread.webhooks.addresses.Resolver`): names under the zones a test gives answer the
addresses it says (and it may change them between lookups, as a DNS rebinding attacker does);
every other host — IP literals in any spelling, ``localhost`` — goes to the operating system's
resolver, exactly as in production."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence

from preread.webhooks.addresses import IPAddress, system_resolver

PUBLIC = "93.184.215.14"
"""A global unicast address (not in any special-purpose registry), used as "the internet"."""


class FakeDns:
    """``zones``: a name -> the addresses it and every name under it resolve to."""

    def __init__(self, zones: Mapping[str, Sequence[str]]) -> None:
        self.zones = {name: list(addresses) for name, addresses in zones.items()}
        self.lookups: list[str] = []

    def __call__(self, host: str, port: int) -> list[IPAddress]:
        self.lookups.append(host)
        for zone, addresses in self.zones.items():
            if host == zone or host.endswith("." + zone):
                return [ipaddress.ip_address(a) for a in addresses]
        return system_resolver(host, port)


def example_dns() -> FakeDns:
    """``example.org`` and ``example.net`` (and everything under them) on a public address."""
    return FakeDns({"example.org": [PUBLIC], "example.net": [PUBLIC]})
