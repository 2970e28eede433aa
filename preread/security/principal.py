"""Scopes and the authenticated caller."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Scope(StrEnum):
    """What a client may do (OAuth2 scopes)."""

    REPORTS_READ = "reports:read"
    STUDIES_ANALYZE = "studies:analyze"
    MODELS_READ = "models:read"
    WEBHOOKS_MANAGE = "webhooks:manage"
    ADMIN = "admin"


SCOPES: tuple[str, ...] = tuple(s.value for s in Scope)


@dataclass(frozen=True)
class Principal:
    """The caller of one request: an API client of one tenant, with the token's scopes."""

    client_id: str
    tenant: str
    scopes: frozenset[str]
    token_id: str
    rate_limit_per_minute: int

    def can(self, scope: Scope) -> bool:
        """``admin`` grants every scope, within the tenant."""
        return scope.value in self.scopes or Scope.ADMIN.value in self.scopes
