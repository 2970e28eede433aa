"""Server-side request forgery through webhooks (issue 12, finding 1): the addresses a probe
reached or could register are refused, when checked and again at each delivery (DNS
rebinding), unless the operator allows their network; a delivery connects to the address it
checked, keeping the name for ``Host`` and TLS.

DNS is the only thing faked (:class:`~tests.webhooks.fake_dns.FakeDns`, the resolver edge);
IP literals in their legacy spellings and ``localhost`` go through ``socket.getaddrinfo``."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import SecretStr
from sqlalchemy import Engine

from preread.settings import Settings
from preread.webhooks import (
    Deliverer,
    DestinationPolicy,
    RefusedAddressError,
    UnresolvableHostError,
)
from preread.webhooks.addresses import refusal
from preread.webhooks.outbox import DeliveryState, InvalidWebhookError, WebhookStore
from preread.webhooks.tunnel import webhook_client
from tests.store.conftest import FakeClock
from tests.webhooks.conftest import LOOPBACK_ALLOWED, TENANT, Receiver
from tests.webhooks.connect_proxy import ConnectProxy
from tests.webhooks.fake_dns import PUBLIC, FakeDns
from tests.webhooks.test_delivery import only_delivery, queue

ATTACKS = [
    # registered by the probe
    ("http://169.254.169.254/latest/meta-data/", "a link-local address"),
    ("http://metadata.google.internal/computeMetadata/v1/", "a link-local address"),
    ("http://10.0.0.1/", "a private address"),
    ("http://192.168.1.1/admin", "a private address"),
    ("http://[fd00::1]/", "a unique-local address"),
    # reached by its deliveries (Orthanc's REST port among them)
    ("http://127.0.0.1:8042/tools/reset", "a loopback address"),
    ("http://localhost:8042/", "a loopback address"),
    ("http://[::1]/", "a loopback address"),
    ("http://127.1/", "a loopback address"),
    ("http://2130706433/", "a loopback address"),
    ("http://0x7f000001/", "a loopback address"),
    ("http://0.0.0.0:8042/", "an unspecified address"),
    ("http://[::ffff:127.0.0.1]/", "a loopback address (in IPv4-mapped form)"),
    # the other forms of the same places
    ("http://[::ffff:a9fe:a9fe]/", "a link-local address (in IPv4-mapped form)"),
    ("http://[64:ff9b::7f00:1]/", "a loopback address (in NAT64 form)"),
    ("http://[2002:a00:1::]/", "a private address (in 6to4 form)"),
    ("http://[::]/", "an unspecified address"),
    ("http://224.0.0.1/", "a multicast address"),
    ("http://172.16.5.4/", "a private address"),
    ("http://100.64.0.1/", "a non-public address"),  # carrier-grade NAT
    ("http://240.0.0.1/", "a reserved address"),
    ("http://[fe80::1]/", "a link-local address"),
]
"""What a client may not register, and the reason the 422 gives."""


def attacker_dns() -> FakeDns:
    """Names of the probe: the cloud metadata name (as the cloud's DNS answers it)."""
    return FakeDns({"metadata.google.internal": ["169.254.169.254"]})


@pytest.mark.parametrize(("url", "why"), ATTACKS)
def test_addresses_of_the_probe_are_refused(url: str, why: str) -> None:
    with pytest.raises(RefusedAddressError) as refused:
        DestinationPolicy(resolve=attacker_dns()).check(url)
    assert str(refused.value) == f"the webhook URL's host resolves to {why}"


def test_every_address_of_a_name_is_checked() -> None:
    dns = FakeDns({"mixed.example.net": [PUBLIC, "10.1.2.3"]})
    with pytest.raises(RefusedAddressError, match="a private address"):
        DestinationPolicy(resolve=dns).check("https://mixed.example.net/hook")


def test_public_destinations_connect_to_the_checked_address_under_their_name() -> None:
    dns = FakeDns({"ris.example.net": [PUBLIC, "2606:2800:21f:cb07:6820:80da:af6b:8b2c"]})
    target = DestinationPolicy(resolve=dns).check("https://ris.example.net:8443/h?t=1")
    assert str(target.pinned_url) == f"https://{PUBLIC}:8443/h?t=1"
    assert (target.host_header, target.server_name) == ("ris.example.net:8443", "ris.example.net")
    assert dns.lookups == ["ris.example.net"]
    # the public internet in IPv4-mapped and NAT64 (DNS64) forms is the public internet
    for url in ("http://[::ffff:5db8:d70e]/", "http://[64:ff9b::5db8:d70e]/"):
        assert DestinationPolicy().check(url).server_name is None


def test_allowed_networks_come_from_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREREAD_WEBHOOK_ALLOWED_NETWORKS", '["10.20.0.0/16", "fd00:1::/32"]')
    monkeypatch.setenv("PREREAD_WEBHOOK_HTTPS_ONLY", "true")
    policy = DestinationPolicy.from_settings(Settings())
    assert policy.check("https://10.20.3.4/hl7").address == ipaddress.ip_address("10.20.3.4")
    assert policy.check("https://[fd00:1::5]/hl7").server_name is None
    with pytest.raises(RefusedAddressError, match="a private address"):
        policy.check("https://10.21.0.1/")
    with pytest.raises(RefusedAddressError, match="must be https"):
        policy.check("http://10.20.3.4/hl7")
    # allowing everything still never reaches "any address" (0.0.0.0 is loopback) or multicast
    everything = [ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0")]
    assert refusal(ipaddress.ip_address("127.0.0.1"), everything) is None
    for never in ("0.0.0.0", "::", "239.1.2.3", "::ffff:0.0.0.0"):
        assert refusal(ipaddress.ip_address(never), everything) is not None, never


def test_names_that_do_not_resolve_and_bad_urls_are_refused() -> None:
    policy = DestinationPolicy(resolve=FakeDns({}))
    with pytest.raises(UnresolvableHostError):
        policy.check("https://no-such-host.invalid/hook")
    for bad in ("ftp://x.example.org/", "http://[zz::1]/", "https://u:p@x.example.org/"):
        with pytest.raises(InvalidWebhookError):
            policy.check(bad)


# --- at each delivery ---------------------------------------------------------------------------


def test_by_default_a_delivery_never_reaches_loopback(
    webhooks: WebhookStore,
    engine: Engine,
    clock: FakeClock,
    receiver: Receiver,
    http_client: httpx.Client,
) -> None:
    webhook, _ = webhooks.create(TENANT, receiver.url)  # stored past any registration check
    queue(engine, clock)
    assert Deliverer(webhooks, http_client, clock=clock).run_once().retrying == 1
    delivery = only_delivery(webhooks, webhook.id)
    assert (delivery.last_status, delivery.last_error) == (None, "refused-address")
    assert receiver.received == []
    # the operator allows 127.0.0.0/8 (PREREAD_WEBHOOK_ALLOWED_NETWORKS): the same message goes
    clock.advance(5)
    allowed = Deliverer(webhooks, http_client, policy=LOOPBACK_ALLOWED, clock=clock)
    assert allowed.run_once().delivered == 1
    assert receiver.ids() == [delivery.id]


def test_dns_rebinding_to_loopback_is_refused_at_delivery(
    webhooks: WebhookStore,
    engine: Engine,
    clock: FakeClock,
    receiver: Receiver,
    http_client: httpx.Client,
) -> None:
    dns = FakeDns({"hooks.example.net": [PUBLIC]})
    policy = DestinationPolicy(resolve=dns)
    url = f"http://hooks.example.net:{receiver.port}/hook"
    policy.check(url)  # registration: public
    webhook, _ = webhooks.create(TENANT, url)
    queue(engine, clock)
    dns.zones["hooks.example.net"] = ["127.0.0.1"]  # … and loopback by delivery time
    deliverer = Deliverer(webhooks, http_client, policy=policy, clock=clock)
    assert deliverer.run_once().retrying == 1
    assert dns.lookups == ["hooks.example.net"] * 2
    assert receiver.received == []  # nothing connected to the receiver on 127.0.0.1
    assert only_delivery(webhooks, webhook.id).last_error == "refused-address"


def test_a_delivery_connects_to_the_address_it_checked(
    webhooks: WebhookStore,
    engine: Engine,
    clock: FakeClock,
    receiver: Receiver,
    http_client: httpx.Client,
) -> None:
    """The name exists only in the fake DNS: the request reached the receiver because it went
    to the checked address, with the name in ``Host``."""
    dns = FakeDns({"hooks.example.net": ["127.0.0.1"]})
    policy = DestinationPolicy(allowed_networks=LOOPBACK_ALLOWED.allowed_networks, resolve=dns)
    webhooks.create(TENANT, f"http://hooks.example.net:{receiver.port}/hook?t=1")
    queue(engine, clock)
    assert Deliverer(webhooks, http_client, policy=policy, clock=clock).run_once().delivered == 1
    [request] = receiver.received
    assert request.path == "/hook?t=1"
    assert request.headers["host"] == f"hooks.example.net:{receiver.port}"


def _certificate(tmp_path: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate (its own trust anchor) for ``name``, and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


def test_https_to_the_checked_address_verifies_the_name(
    webhooks: WebhookStore, engine: Engine, clock: FakeClock, tmp_path: Path
) -> None:
    cert_file, key_file = _certificate(tmp_path, "hooks.example.net")
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert_file, key_file)
    receiver = Receiver(tls=server_tls)
    receiver.start()
    dns = FakeDns({"hooks.example.net": ["127.0.0.1"], "other.example.net": ["127.0.0.1"]})
    policy = DestinationPolicy(allowed_networks=LOOPBACK_ALLOWED.allowed_networks, resolve=dns)
    try:
        with httpx.Client(verify=ssl.create_default_context(cafile=cert_file)) as client:
            good, _ = webhooks.create(TENANT, f"https://hooks.example.net:{receiver.port}/h")
            queue(engine, clock)
            assert Deliverer(webhooks, client, policy=policy, clock=clock).run_once().delivered
            webhooks.disable(TENANT, good.id)
            # a name the certificate does not carry fails the handshake: the name is checked,
            # not the address connected to
            other, _ = webhooks.create(TENANT, f"https://other.example.net:{receiver.port}/h")
            queue(engine, clock)
            assert Deliverer(webhooks, client, policy=policy, clock=clock).run_once().retrying
    finally:
        receiver.stop()
    assert len(receiver.received) == 1
    assert only_delivery(webhooks, good.id).state is DeliveryState.DELIVERED
    assert only_delivery(webhooks, other.id).last_error == "unreachable"


def test_through_a_proxy_the_tunnel_goes_to_the_checked_address_and_tls_checks_the_name(
    webhooks: WebhookStore, engine: Engine, clock: FakeClock, tmp_path: Path
) -> None:
    """PREREAD_WEBHOOK_PROXY: the proxy is asked to CONNECT to the address the policy checked
    (it resolves no name, so DNS cannot move the delivery), TLS runs inside the tunnel against
    the webhook's host name, with the proxy's credentials; a proxy that refuses leaves the
    message to be retried. (httpx's own proxying checked the certificate against the address.)"""
    cert_file, key_file = _certificate(tmp_path, "hooks.example.net")
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert_file, key_file)
    receiver = Receiver(tls=server_tls)
    receiver.start()
    proxy = ConnectProxy(credentials="preread:s3cret")
    proxy.start()
    dns = FakeDns({"hooks.example.net": ["127.0.0.1"]})
    policy = DestinationPolicy(allowed_networks=LOOPBACK_ALLOWED.allowed_networks, resolve=dns)
    trust = ssl.create_default_context(cafile=cert_file)
    via = f"127.0.0.1:{proxy.port}"
    try:
        hook, _ = webhooks.create(TENANT, f"https://hooks.example.net:{receiver.port}/h")
        with webhook_client(f"http://preread:wrong@{via}", verify=trust) as refused:
            queue(engine, clock)
            assert Deliverer(webhooks, refused, policy=policy, clock=clock).run_once().retrying
        assert proxy.refused == 1 and not receiver.received
        assert only_delivery(webhooks, hook.id).last_error == "unreachable"
        clock.advance(3600)  # the retry is due
        with webhook_client(f"http://preread:s3cret@{via}", verify=trust) as client:
            assert Deliverer(webhooks, client, policy=policy, clock=clock).run_once().delivered
    finally:
        receiver.stop()
        proxy.stop()
    assert proxy.targets == [f"127.0.0.1:{receiver.port}"]  # the checked address, not the name
    [request] = receiver.received
    assert request.headers["host"] == f"hooks.example.net:{receiver.port}"
    assert only_delivery(webhooks, hook.id).state is DeliveryState.DELIVERED


def test_the_webhook_proxy_setting_is_checked_at_start() -> None:
    assert Settings(webhook_proxy=SecretStr("http://u:p@proxy.hospital.example:3128"))
    for bad in ("https://proxy.example:3128", "socks5://proxy:1080", "http://proxy:31x8"):
        with pytest.raises(ValueError, match="webhook proxy"):
            Settings(webhook_proxy=SecretStr(bad))
