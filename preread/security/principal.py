"""Scopes and the authenticated caller."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Scope(StrEnum):
    """What a client may do (OAuth2 scopes)."""

    REPORTS_READ = "reports:read"
    REPORTS_WRITE = "reports:write"
    """Send the hospital's final radiology reports (``POST /api/v1/final-reports``)."""
    STUDIES_ANALYZE = "studies:analyze"
    MODELS_READ = "models:read"
    WEBHOOKS_MANAGE = "webhooks:manage"
    ADMIN = "admin"
    GRANTS_MANAGE = "grants:manage"
    """The authorization platform's: issue and revoke grants of any tenant (not in ``admin``)."""


SCOPES: tuple[str, ...] = tuple(s.value for s in Scope)


@dataclass(frozen=True)
class Principal:
    """The caller of one request: an API client of one tenant, with the token's scopes — or a
    person signed in to the pages (``kind="user"``, ``client_id`` their username, the session
    in place of a token), checked by the same enforcement point."""

    client_id: str
    tenant: str
    scopes: frozenset[str]
    token_id: str
    rate_limit_per_minute: int
    purpose: str
    kind: str = "client"

    @property
    def actor(self) -> str:
        """Who the audit trail names: ``client:<id>`` or ``user:<username>``."""
        return f"{self.kind}:{self.client_id}"

    def can(self, scope: Scope) -> bool:
        """``admin`` grants every scope within the tenant — not ``grants:manage``: a hospital
        does not authorize the use of its own data; the platform does."""
        if scope.value in self.scopes:
            return True
        return scope is not Scope.GRANTS_MANAGE and Scope.ADMIN.value in self.scopes
