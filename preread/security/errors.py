"""Errors of authentication and authorization (the API maps them to 400/401/403)."""

from __future__ import annotations

from preread.errors import PrereadError


class AuthError(PrereadError):
    """A request could not be authenticated (bad, expired or unknown token)."""


class InvalidClientError(AuthError):
    """Client authentication failed (unknown client, wrong secret, revoked): OAuth2
    ``invalid_client``. The message never says which of these it was."""


class ClientNotFoundError(PrereadError):
    """No such API client."""
