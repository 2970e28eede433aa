"""The identity provider over HTTP (httpx, with timeouts): its discovery document, its signing
keys, its token endpoint.

* :meth:`OpenIdProvider.metadata` — ``<issuer>/.well-known/openid-configuration`` (OpenID
  Connect Discovery 1.0 §4), kept for an hour; its ``issuer`` must be the configured one,
  exactly (§4.3), and every endpoint https (plain http only on this machine, as in tests);
* :meth:`OpenIdProvider.signing_key` — a key of its JWKS (``jwks_uri``, RFC 7517) by ``kid``,
  kept for an hour; a ``kid`` not among them fetches the set again (the provider rotated its
  keys), at most every :data:`KEYS_REFETCH_S`;
* :meth:`OpenIdProvider.exchange` — the authorization code and the PKCE verifier for the
  tokens (RFC 6749 §4.1.3, RFC 7636 §4.5), the client authenticated by ``client_secret_basic``
  (or ``client_secret_post`` when that is all the provider takes; a public client sends only
  its id).

Nothing here logs or keeps a code or a token; errors name the endpoint and what went wrong.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import jwt
from pydantic import SecretStr

from preread.oidc.config import is_loopback
from preread.oidc.errors import IdTokenError, ProviderError, ProviderRefusedError

DISCOVERY_PATH = "/.well-known/openid-configuration"
METADATA_TTL_S = 3600.0
KEYS_TTL_S = 3600.0
KEYS_REFETCH_S = 30.0
MAX_DOCUMENT_BYTES = 1_000_000
ALGORITHMS = (
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"
)  # fmt: skip
"""Signature algorithms PreRead accepts on ID tokens (public-key only: never ``none``, never an
HMAC keyed with something public); with the provider's ``id_token_signing_alg_values_supported``
they make the allowed list."""
_SHOWN = 160


def _printable(text: str) -> str:
    return "".join(c for c in text if c.isprintable())[:_SHOWN]


def check_endpoint(url: object, name: str) -> str:
    """``url`` if it is an https URL (http on this machine only); ProviderError otherwise."""
    parts = urlsplit(url) if isinstance(url, str) else None
    host = parts.hostname if parts is not None else None
    if (
        parts is None
        or not host
        or not (parts.scheme == "https" or (parts.scheme == "http" and is_loopback(host)))
    ):
        raise ProviderError(
            "The identity provider's configuration cannot be used: tell your administrator.",
            f"oidc: discovery: {name} is not an https URL",
        )
    assert isinstance(url, str)
    return url


@dataclass(frozen=True)
class ProviderMetadata:
    """What PreRead uses of the discovery document."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    algorithms: tuple[str, ...]
    """The ID token algorithms both sides accept, in PreRead's order."""
    token_auth_methods: tuple[str, ...]
    pkce_methods: tuple[str, ...] | None
    """``code_challenge_methods_supported`` (None: the document does not say)."""

    @classmethod
    def parse(cls, document: Mapping[str, Any], issuer: str) -> ProviderMetadata:
        """The metadata of ``document``, fetched from ``issuer``'s discovery URL.

        Raises:
            ProviderError: another issuer, an endpoint missing or not https, no algorithm in
                common, or S256 missing from the PKCE methods it lists.
        """
        if document.get("issuer") != issuer:
            raise ProviderError(
                "The identity provider's configuration names another issuer: tell your "
                "administrator (PREREAD_OIDC_ISSUER must be the provider's issuer exactly).",
                "oidc: discovery: the document's issuer is not PREREAD_OIDC_ISSUER",
            )
        offered = document.get("id_token_signing_alg_values_supported")
        offered = offered if isinstance(offered, list) else []
        algorithms = tuple(a for a in ALGORITHMS if a in offered)
        if not algorithms:
            raise ProviderError(
                "The identity provider signs ID tokens with no algorithm PreRead accepts: tell "
                "your administrator.",
                f"oidc: discovery: no ID token algorithm among {', '.join(ALGORITHMS)}",
            )
        pkce = document.get("code_challenge_methods_supported")
        pkce_methods = _strings(pkce) if isinstance(pkce, list) else None
        if pkce_methods is not None and "S256" not in pkce_methods:
            raise ProviderError(
                "The identity provider does not offer PKCE (S256): tell your administrator.",
                "oidc: discovery: S256 is not among code_challenge_methods_supported",
            )
        methods = document.get("token_endpoint_auth_methods_supported")
        # client_secret_basic: the default of Discovery §3 when the document says nothing
        token_auth = _strings(methods) if isinstance(methods, list) else ("client_secret_basic",)
        return cls(
            issuer=issuer,
            authorization_endpoint=check_endpoint(
                document.get("authorization_endpoint"), "authorization_endpoint"
            ),
            token_endpoint=check_endpoint(document.get("token_endpoint"), "token_endpoint"),
            jwks_uri=check_endpoint(document.get("jwks_uri"), "jwks_uri"),
            algorithms=algorithms,
            token_auth_methods=token_auth,
            pkce_methods=pkce_methods,
        )


class OpenIdProvider:
    """One identity provider, its documents kept (thread-safe)."""

    def __init__(
        self,
        issuer: str,
        *,
        name: str,
        timeout_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        """``name``: the provider as people know it (in messages); ``transport``: httpx's
        (the default reaches the network)."""
        self.issuer = issuer
        self.name = name
        self.timeout_s = timeout_s
        self._clock = clock
        self._transport = transport
        self._lock = threading.Lock()
        self._metadata: tuple[float, ProviderMetadata] | None = None
        self._keys: tuple[float, list[dict[str, Any]]] | None = None

    def metadata(self) -> ProviderMetadata:
        """The provider's metadata (fetched at most once an hour).

        Raises:
            ProviderError: the document cannot be fetched or used.
        """
        now = self._clock()
        with self._lock:
            if self._metadata is not None and now - self._metadata[0] < METADATA_TTL_S:
                return self._metadata[1]
        url = self.issuer.rstrip("/") + DISCOVERY_PATH
        found = ProviderMetadata.parse(self._get_json(url, "discovery"), self.issuer)
        with self._lock:
            self._metadata = (now, found)
        return found

    def signing_key(self, kid: str | None, algorithm: str) -> jwt.PyJWK:
        """The provider's public key ``kid`` (the only suitable one when ``kid`` is None), for
        ``algorithm``.

        Raises:
            IdTokenError: no such key (after fetching the set again), or it does not fit.
            ProviderError: the key set cannot be fetched.
        """
        now = self._clock()
        with self._lock:
            cached = self._keys
        if cached is None or now - cached[0] >= KEYS_TTL_S:
            found = _pick(self._fetch_keys(now), kid, algorithm)
        else:
            found = _pick(cached[1], kid, algorithm)
            if found is None and now - cached[0] >= KEYS_REFETCH_S:
                found = _pick(self._fetch_keys(now), kid, algorithm)  # the keys rotated
        if found is None:
            raise IdTokenError(
                "The identity provider's answer could not be verified: try again, or tell your "
                "administrator.",
                "oidc: id token: no key of the provider matches its kid",
            )
        try:
            return jwt.PyJWK(found, algorithm=algorithm)
        except jwt.PyJWKError as exc:
            raise IdTokenError(
                "The identity provider's answer could not be verified: tell your administrator.",
                f"oidc: id token: the provider's key does not fit {algorithm}: {exc}",
            ) from None

    def exchange(
        self,
        *,
        code: str,
        redirect_uri: str,
        code_verifier: str,
        client_id: str,
        client_secret: SecretStr | None,
    ) -> str:
        """The ID token the token endpoint gives for ``code`` (RFC 6749 §4.1.3 with PKCE).

        Raises:
            ProviderRefusedError: the provider refused (``invalid_grant``: used, expired, or
                another client's or browser's code).
            ProviderError: the endpoint cannot be reached, or its answer has no ID token.
        """
        meta = self.metadata()
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": code_verifier,
        }
        headers = {"Accept": "application/json"}
        if client_secret is None:
            form["client_id"] = client_id
        elif "client_secret_basic" in meta.token_auth_methods:
            pair = f"{quote(client_id, safe='')}:{quote(client_secret.get_secret_value(), safe='')}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        else:  # client_secret_post (RFC 6749 §2.3.1: basic is preferred)
            form["client_id"] = client_id
            form["client_secret"] = client_secret.get_secret_value()
        try:
            with self._client() as client:
                answer = client.post(meta.token_endpoint, data=form, headers=headers)
        except httpx.HTTPError as exc:
            raise self._unreachable("token endpoint", exc) from None
        body = _json_or_none(answer.content)
        if answer.status_code != 200:
            error = body.get("error") if isinstance(body, dict) else None
            if isinstance(error, str) and 400 <= answer.status_code < 500:
                description = body.get("error_description") if isinstance(body, dict) else None
                detail = _printable(description) if isinstance(description, str) else ""
                raise ProviderRefusedError(
                    f"{self.name} refused the sign-in ({_printable(error)}): start again.",
                    f"oidc: token endpoint: {_printable(error)} {detail}".rstrip(),
                    error,
                )
            raise ProviderError(
                f"{self.name} could not complete the sign-in: try again later.",
                f"oidc: token endpoint answered {answer.status_code}",
            )
        token = body.get("id_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise ProviderError(
                f"{self.name} sent no ID token: tell your administrator (the scopes must "
                "include openid).",
                "oidc: token endpoint: no id_token in the answer",
            )
        return token

    def _fetch_keys(self, now: float) -> list[dict[str, Any]]:
        document = self._get_json(self.metadata().jwks_uri, "jwks")
        keys = document.get("keys")
        if not isinstance(keys, list):
            raise ProviderError(
                f"{self.name}'s signing keys cannot be read: tell your administrator.",
                "oidc: jwks: no keys list",
            )
        found = [k for k in keys if isinstance(k, dict)]
        with self._lock:
            self._keys = (now, found)
        return found

    def _client(self) -> httpx.Client:
        return httpx.Client(
            timeout=self.timeout_s, follow_redirects=False, transport=self._transport
        )

    def _unreachable(self, what: str, exc: httpx.HTTPError) -> ProviderError:
        return ProviderError(
            f"PreRead cannot reach {self.name} now: try again later, or tell your administrator.",
            f"oidc: {what}: {type(exc).__name__}",
        )

    def _get_json(self, url: str, what: str) -> dict[str, Any]:
        try:
            with self._client() as client, client.stream("GET", url) as answer:
                if answer.status_code != 200:
                    raise ProviderError(
                        f"PreRead cannot read {self.name}'s configuration: tell your "
                        "administrator.",
                        f"oidc: {what}: {url} answered {answer.status_code}",
                    )
                content = bytearray()
                for chunk in answer.iter_bytes():
                    content += chunk
                    if len(content) > MAX_DOCUMENT_BYTES:
                        raise ProviderError(
                            f"{self.name}'s configuration is too large: tell your administrator.",
                            f"oidc: {what}: over {MAX_DOCUMENT_BYTES} bytes",
                        )
        except httpx.HTTPError as exc:
            raise self._unreachable(what, exc) from None
        document = _json_or_none(bytes(content))
        if not isinstance(document, dict):
            raise ProviderError(
                f"PreRead cannot read {self.name}'s configuration: tell your administrator.",
                f"oidc: {what}: not a JSON object",
            )
        return document


def _strings(values: list[Any]) -> tuple[str, ...]:
    return tuple(v for v in values if isinstance(v, str))


def _json_or_none(content: bytes) -> Any:
    try:
        return json.loads(content)
    except ValueError:
        return None


def _pick(keys: list[dict[str, Any]], kid: str | None, algorithm: str) -> dict[str, Any] | None:
    """The signing key ``kid`` among ``keys`` (the one key of ``algorithm``'s type when the
    token names none); a key marked for encryption, or for another algorithm, is never one."""
    kty = "OKP" if algorithm == "EdDSA" else {"R": "RSA", "P": "RSA", "E": "EC"}[algorithm[0]]
    usable = [
        k
        for k in keys
        if k.get("kty") == kty
        and k.get("use", "sig") == "sig"
        and k.get("alg", algorithm) == algorithm
    ]
    if kid is None:
        return usable[0] if len(usable) == 1 else None
    return next((k for k in usable if k.get("kid") == kid), None)
