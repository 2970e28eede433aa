"""Who may call the API: OAuth2 clients (client-credentials grant), signed access tokens,
scopes, tenants, rate limits.

* :class:`ClientStore` — clients of a tenant with hashed secrets (``preread clients create``);
* :class:`KeyRing` — ES256 signing keys in a folder, newest signs, all verify (rotation);
* :class:`TokenService` — issues and verifies short-lived JWT access tokens;
* :class:`RateLimiter` — a token bucket per client;
* :class:`FailureThrottle` — failed client authentications per source and (client, source).

A verified token becomes a :class:`Principal`: the client, its tenant and its scopes. Every
route asks for the scope it needs; every query is limited to the principal's tenant.
"""

from preread.security.clients import ApiClient, ClientStore
from preread.security.errors import AuthError, ClientNotFoundError, InvalidClientError
from preread.security.keys import KeyRing
from preread.security.principal import SCOPES, Principal, Scope
from preread.security.ratelimit import RateLimiter
from preread.security.throttle import FailureThrottle, source_key
from preread.security.tokens import TokenService

__all__ = [
    "SCOPES",
    "ApiClient",
    "AuthError",
    "ClientNotFoundError",
    "ClientStore",
    "FailureThrottle",
    "InvalidClientError",
    "KeyRing",
    "Principal",
    "RateLimiter",
    "Scope",
    "TokenService",
    "source_key",
]
