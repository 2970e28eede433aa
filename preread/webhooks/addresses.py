"""Where a webhook may be sent: resolve its host, check every address, connect to a checked one.

A webhook URL is chosen by a client, and the deliverer runs inside the hospital's network: left
alone it would POST to the cloud metadata service (``169.254.169.254``), to Orthanc's REST port
on loopback, or to anything on ``10.x``, and its delivery records would tell the client which
ports answer. So (OWASP, *Server-Side Request Forgery Prevention Cheat Sheet*):

* the host is resolved (:class:`Resolver`; :func:`system_resolver` is ``socket.getaddrinfo``,
  which also turns legacy IPv4 spellings such as ``127.1``, ``2130706433`` or ``0x7f000001``
  into ``127.0.0.1``), and **every** address must pass :func:`refusal`: no loopback,
  link-local, private (RFC 1918), unique-local (``fc00::/7``), multicast, unspecified, reserved
  or otherwise non-global address (:mod:`ipaddress`), nor one of those inside an IPv4-mapped
  (``::ffff:0:0/96``), NAT64 (``64:ff9b::/96``, RFC 6052) or 6to4 (``2002::/16``) address;
* networks the operator names (``PREREAD_WEBHOOK_ALLOWED_NETWORKS``, e.g. the hospital's
  integration engine on ``10.20.0.0/16``) are allowed, except unspecified and multicast;
* the check runs when a webhook is registered *and before every delivery*, and the delivery
  connects to the address just checked (:meth:`Destination.pinned_url`, with the original
  ``Host`` header and TLS server name), so a name that resolves elsewhere by then (DNS
  rebinding) cannot reach what the check refused.

Errors (both are :class:`~preread.webhooks.outbox.InvalidWebhookError`: 422 at registration)::

    InvalidWebhookError
    ├── RefusedAddressError     (the URL resolves to an address webhooks may not reach)
    └── UnresolvableHostError   (the host has no address)
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import httpx

from preread.settings import Settings
from preread.webhooks.outbox import InvalidWebhookError, check_url

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

UNIQUE_LOCAL = ipaddress.IPv6Network("fc00::/7")
"""IPv6 unique-local addresses (RFC 4193), the IPv6 twin of RFC 1918."""
NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")
"""RFC 6052: an IPv4 address in the last 32 bits, reached through a NAT64 gateway."""
DEFAULT_PORTS = {"http": 80, "https": 443}


class RefusedAddressError(InvalidWebhookError):
    """The webhook URL resolves to an address webhooks may not reach; the message says which
    kind (``resolves to a loopback address``), never the address itself."""


class UnresolvableHostError(InvalidWebhookError):
    """The webhook URL's host has no address (unknown name, or DNS unavailable)."""


class Resolver(Protocol):
    """The DNS edge: every address of ``host`` (an IP literal or an IDNA-encoded name) for a
    TCP connection to ``port``; raises :class:`UnresolvableHostError` when there is none."""

    def __call__(self, host: str, port: int) -> Sequence[IPAddress]: ...


def system_resolver(host: str, port: int) -> list[IPAddress]:
    """The addresses the operating system gives ``host`` (``socket.getaddrinfo``, so
    ``/etc/hosts``, DNS and legacy IPv4 spellings resolve as they would for a connection)."""
    try:
        answers = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError, ValueError):
        raise UnresolvableHostError("the webhook URL's host does not resolve") from None
    found: list[IPAddress] = []
    for family, _, _, _, sockaddr in answers:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        address = ipaddress.ip_address(str(sockaddr[0]))
        if address not in found:
            found.append(address)
    if not found:
        raise UnresolvableHostError("the webhook URL's host does not resolve")
    return found


def embedded_ipv4(address: IPAddress) -> tuple[ipaddress.IPv4Address, str] | None:
    """The IPv4 address an IPv6 address carries (IPv4-mapped, NAT64, 6to4) and the form's
    name; ``None`` for others."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped, "IPv4-mapped"
    if address in NAT64_WELL_KNOWN:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF), "NAT64"
    if address.sixtofour is not None:
        return address.sixtofour, "6to4"
    return None


def _kind(address: IPAddress) -> str | None:
    """What makes ``address`` unfit for a webhook (``"a loopback address"``), or ``None``."""
    if address.is_unspecified:
        return "an unspecified address"
    if address.is_multicast:
        return "a multicast address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if isinstance(address, ipaddress.IPv6Address) and address in UNIQUE_LOCAL:
        return "a unique-local address"
    if address.is_reserved:  # before private: 240.0.0.0/4 is both
        return "a reserved address"
    if address.is_private:
        return "a private address"
    if isinstance(address, ipaddress.IPv6Address) and address.is_site_local:
        return "a site-local address"
    if not address.is_global:
        return "a non-public address"
    return None


def refusal(address: IPAddress, allowed: Iterable[IPNetwork] = ()) -> str | None:
    """Why a webhook may not be sent to ``address`` (``"a loopback address"``), or ``None``
    when it may: a global address, or one inside an ``allowed`` network (never an unspecified
    or multicast one). An IPv4-mapped or NAT64 address is judged by the IPv4 address it
    carries; a 6to4 address by both."""
    embedded = embedded_ipv4(address)
    judged: list[tuple[IPAddress, str]] = []
    if embedded is not None:
        judged.append(embedded)
    if embedded is None or embedded[1] == "6to4":
        judged.append((address, ""))
    networks = tuple(allowed)
    for candidate, form in judged:
        kind = _kind(candidate)
        if kind is None:
            continue
        never = candidate.is_unspecified or candidate.is_multicast
        if not never and any(candidate in net or address in net for net in networks):
            continue
        return f"{kind} (in {form} form)" if form else kind
    return None


@dataclass(frozen=True)
class Destination:
    """A webhook URL whose addresses passed the check, and the one to connect to."""

    url: httpx.URL
    addresses: tuple[IPAddress, ...]

    @property
    def address(self) -> IPAddress:
        """The address the delivery connects to (the resolver's first)."""
        return self.addresses[0]

    @property
    def pinned_url(self) -> httpx.URL:
        """The URL with its host replaced by :attr:`address` (path and query unchanged)."""
        return self.url.copy_with(host=str(self.address))

    @property
    def host_header(self) -> str:
        """The ``Host`` header the receiver expects: the URL's host (IDNA) and explicit port."""
        return self.url.netloc.decode("ascii")

    @property
    def server_name(self) -> str | None:
        """The TLS server name (SNI, and the name the certificate must carry) for https;
        ``None`` for http or an IP literal host."""
        host = self.url.raw_host.decode("ascii")
        if self.url.scheme != "https" or _is_ip_literal(host):
            return None
        return host


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class DestinationPolicy:
    """Which webhook URLs may be registered and delivered to (see the module docstring).

    ``resolve`` is the DNS edge (tests pass their own); ``allowed_networks`` are reachable
    although private; ``https_only`` refuses plain ``http`` URLs.
    """

    allowed_networks: tuple[IPNetwork, ...] = ()
    https_only: bool = False
    resolve: Resolver = system_resolver

    @classmethod
    def from_settings(
        cls, settings: Settings, resolve: Resolver = system_resolver
    ) -> DestinationPolicy:
        """The policy of ``PREREAD_WEBHOOK_ALLOWED_NETWORKS`` and ``PREREAD_WEBHOOK_HTTPS_ONLY``."""
        return cls(
            allowed_networks=tuple(settings.webhook_allowed_networks),
            https_only=settings.webhook_https_only,
            resolve=resolve,
        )

    def check(self, url: str) -> Destination:
        """Resolve ``url``'s host and check every address; the :class:`Destination` to connect
        to, or :class:`InvalidWebhookError` (:class:`RefusedAddressError`,
        :class:`UnresolvableHostError`) saying why not."""
        check_url(url)
        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL:
            raise InvalidWebhookError("the webhook URL cannot be parsed") from None
        if self.https_only and parsed.scheme != "https":
            raise RefusedAddressError(
                "the webhook URL must be https (PREREAD_WEBHOOK_HTTPS_ONLY is set)"
            )
        host = parsed.raw_host.decode("ascii")
        port = parsed.port or DEFAULT_PORTS[parsed.scheme]
        addresses = tuple(self.resolve(host, port))
        if not addresses:
            raise UnresolvableHostError("the webhook URL's host does not resolve")
        for address in addresses:
            why = refusal(address, self.allowed_networks)
            if why is not None:
                raise RefusedAddressError(f"the webhook URL's host resolves to {why}")
        return Destination(parsed, addresses)
