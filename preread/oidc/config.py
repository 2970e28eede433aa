"""The OpenID Connect settings, checked once at start-up: :class:`OidcConfig` from
:class:`~preread.settings.Settings` (``PREREAD_OIDC_*``), or None when no issuer is set."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from pydantic import SecretStr

from preread.accounts import AccountError, Role, role
from preread.oidc.errors import OidcConfigError
from preread.security.clients import check_tenant
from preread.settings import Settings

MAX_ISSUER = 255  # what oidc_identities.issuer holds


def is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine (``localhost``, 127.0.0.0/8, ``::1``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_issuer(issuer: str) -> str:
    """``issuer`` if it is an https URL without query or fragment (plain http only for a
    provider on this machine, as in tests); OidcConfigError otherwise."""
    parts = urlsplit(issuer)
    host = parts.hostname or ""
    secure = parts.scheme == "https" or (parts.scheme == "http" and is_loopback(host))
    if not host or not secure or parts.query or parts.fragment or len(issuer) > MAX_ISSUER:
        raise OidcConfigError(
            f"PREREAD_OIDC_ISSUER={issuer!r}: an https URL without query or fragment, at most "
            f"{MAX_ISSUER} characters (plain http only for a provider on this machine)"
        )
    return issuer


@dataclass(frozen=True)
class ClaimRules:
    """How the ID token's claims make a PreRead account: which tenant, which role, which
    username for a new account. A claim is named by a dotted path (``realm_access.roles``)."""

    role_claim: str
    roles: Mapping[str, Role]
    tenant: str | None = None
    tenant_claim: str | None = None
    tenants: Mapping[str, str] = field(default_factory=dict)
    username_claim: str = "preferred_username"

    def __post_init__(self) -> None:
        if (self.tenant is None) == (self.tenant_claim is None):
            raise OidcConfigError("set one of PREREAD_OIDC_TENANT and PREREAD_OIDC_TENANT_CLAIM")
        if not self.role_claim or not self.roles:
            raise OidcConfigError(
                "set PREREAD_OIDC_ROLE_CLAIM and PREREAD_OIDC_ROLES (claim value -> radiologist "
                "or admin): without a role nobody can sign in"
            )
        try:
            for tenant in (self.tenant, *self.tenants.values()):
                if tenant is not None:
                    check_tenant(tenant)
        except ValueError as exc:
            raise OidcConfigError(f"OpenID Connect tenant: {exc}") from None


@dataclass(frozen=True)
class OidcConfig:
    """One identity provider and PreRead's client at it."""

    issuer: str
    client_id: str
    rules: ClaimRules
    client_secret: SecretStr | None = None
    scopes: tuple[str, ...] = ("openid", "profile", "email")
    provider_name: str = ""
    redirect_uri: str | None = None
    timeout_s: float = 10.0

    def __post_init__(self) -> None:
        check_issuer(self.issuer)
        if not self.client_id:
            raise OidcConfigError("PREREAD_OIDC_CLIENT_ID is needed with PREREAD_OIDC_ISSUER")
        if "openid" not in self.scopes:
            object.__setattr__(self, "scopes", ("openid", *self.scopes))
        if not self.provider_name:
            object.__setattr__(self, "provider_name", urlsplit(self.issuer).hostname or "")

    @classmethod
    def from_settings(cls, settings: Settings) -> OidcConfig | None:
        """The configured provider, None without ``PREREAD_OIDC_ISSUER``.

        Raises:
            OidcConfigError: a setting is missing, malformed or contradicts another (named).
        """
        if not settings.oidc_issuer:
            return None
        try:
            roles = {value: role(name) for value, name in settings.oidc_roles.items()}
        except AccountError as exc:
            raise OidcConfigError(f"PREREAD_OIDC_ROLES: {exc}") from None
        rules = ClaimRules(
            role_claim=settings.oidc_role_claim,
            roles=roles,
            tenant=settings.oidc_tenant or None,
            tenant_claim=settings.oidc_tenant_claim or None,
            tenants=dict(settings.oidc_tenants),
            username_claim=settings.oidc_username_claim or "preferred_username",
        )
        return cls(
            issuer=settings.oidc_issuer,
            client_id=settings.oidc_client_id,
            rules=rules,
            client_secret=settings.oidc_client_secret,
            scopes=tuple(settings.oidc_scopes),
            provider_name=settings.oidc_provider_name,
            redirect_uri=settings.oidc_redirect_uri,
            timeout_s=settings.oidc_timeout_s,
        )
