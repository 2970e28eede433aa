"""The provider over HTTP, against the real one: its discovery document checked and kept, its
keys kept; an unreachable provider answered with a page (502) and audited."""

from __future__ import annotations

import socket

import httpx
import pytest

from preread.audit import AuditAction
from preread.oidc import IdTokenError, OidcSignIn, ProviderError
from preread.oidc.provider import KEYS_REFETCH_S, OpenIdProvider
from tests.accounts.conftest import Site
from tests.oidc.conftest import Provider, begin, config_for


class Counting(httpx.HTTPTransport):
    """httpx's own transport, counting the requests it sends."""

    def __init__(self) -> None:
        super().__init__()
        self.paths: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        return super().handle_request(request)


def test_the_discovery_document_and_the_keys_are_fetched_once(provider: Provider) -> None:
    wire = Counting()
    idp = OpenIdProvider(provider.issuer, name="SSO", transport=wire)
    meta = idp.metadata()
    assert meta.token_endpoint.startswith(provider.issuer) and meta.pkce_methods == ("S256",)
    assert "client_secret_basic" in meta.token_auth_methods
    key = idp.signing_key("preread-test-rs256", "RS256")
    assert (
        idp.metadata() is meta
        and idp.signing_key("preread-test-rs256", "RS256").key_id == key.key_id
    )
    assert wire.paths == ["/.well-known/openid-configuration", "/jwks"]


def test_an_unknown_key_id_fetches_the_keys_again_at_most_every_30_s(provider: Provider) -> None:
    wire = Counting()
    ticks = [0.0]
    idp = OpenIdProvider(provider.issuer, name="SSO", transport=wire, clock=lambda: ticks[0])
    idp.signing_key("preread-test-rs256", "RS256")
    ticks[0] = 10.0
    with pytest.raises(IdTokenError):
        idp.signing_key("rotated-in", "RS256")
    assert wire.paths.count("/jwks") == 1  # fetched 10 s ago: not again
    ticks[0] = KEYS_REFETCH_S + 1
    with pytest.raises(IdTokenError):
        idp.signing_key("rotated-in", "RS256")
    assert wire.paths.count("/jwks") == 2  # the provider may have rotated its keys
    assert idp.signing_key("preread-test-rs256", "RS256").key_id == "preread-test-rs256"
    assert wire.paths.count("/jwks") == 2


def test_a_document_of_another_issuer_is_refused(provider: Provider) -> None:
    # the same provider, configured with a trailing slash: not its issuer, exactly
    with pytest.raises(ProviderError) as refused:
        OpenIdProvider(provider.issuer + "/", name="SSO").metadata()
    assert (
        refused.value.reason == "oidc: discovery: the document's issuer is not PREREAD_OIDC_ISSUER"
    )


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_an_unreachable_provider_is_a_page_not_an_error(site: Site) -> None:
    issuer = f"http://127.0.0.1:{_closed_port()}"
    site.services.oidc = OidcSignIn(config_for(issuer, timeout_s=2.0), site.engine)
    browser = site.browser()
    mark = site.audit_mark()
    answer = begin(browser)
    assert answer.status_code == 502
    assert "PreRead cannot reach St Elsewhere SSO now" in answer.text
    failed = site.audit_until(mark, 1)[0].event
    assert failed.action is AuditAction.AUTH_FAILED
    assert failed.detail["reason"] == "oidc: discovery: ConnectError"
