"""From a verified ID token's claims to the person PreRead signs in: tenant and role by the
configured mappings (:class:`~preread.oidc.config.ClaimRules`), pure functions.

A claim is named by a dotted path into the token's JSON (``realm_access.roles``, Keycloak's
realm roles), a name with dots that is a claim itself (``https://example.org/groups``) taken
first. A role or tenant claim may hold a string or a list of strings. Several mapped roles give
the highest (``admin`` above ``radiologist``); no mapped role refuses the sign-in.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from preread.accounts import Role
from preread.accounts.external import ExternalIdentity
from preread.oidc.config import ClaimRules
from preread.oidc.errors import ClaimsError
from preread.security.clients import check_tenant

_RANK = {Role.RADIOLOGIST: 1, Role.ADMIN: 2}
MAX_SHOWN = 80  # characters of a claim value quoted in a message


def claim(claims: Mapping[str, Any], path: str) -> object | None:
    """The value of the claim at ``path`` (a name, or a dotted path into nested objects)."""
    value: object = claims.get(path)
    if value is not None:
        return value
    value = claims
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def strings(value: object) -> list[str]:
    """A claim's value as strings: a string alone, the strings of a list; else none."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []


def _shown(value: str) -> str:
    return repr(value if len(value) <= MAX_SHOWN else value[:MAX_SHOWN] + "…")


def tenant_of(claims: Mapping[str, Any], rules: ClaimRules, provider: str) -> str:
    """The person's tenant: the fixed one, or the tenant claim's one value (mapped through
    ``rules.tenants`` when that is set).

    Raises:
        ClaimsError: no value, several, one not in the mapping, or not a tenant name.
    """
    if rules.tenant is not None:
        return rules.tenant
    assert rules.tenant_claim is not None  # ClaimRules has one of the two
    values = strings(claim(claims, rules.tenant_claim))
    if len(values) != 1:
        raise ClaimsError(
            f"Your account at {provider} does not name one PreRead tenant (its "
            f"{rules.tenant_claim!r} claim has {len(values)} values): ask your administrator.",
            f"oidc: tenant claim {rules.tenant_claim!r} has {len(values)} values",
        )
    value = values[0]
    tenant = rules.tenants.get(value) if rules.tenants else value
    try:
        if tenant is None:
            raise ValueError("not in PREREAD_OIDC_TENANTS")
        return check_tenant(tenant)
    except ValueError:
        raise ClaimsError(
            f"Your account at {provider} belongs to {_shown(value)}, which is no PreRead "
            "tenant: ask your administrator.",
            f"oidc: tenant claim value {_shown(value)} is no tenant",
        ) from None


def role_of(claims: Mapping[str, Any], rules: ClaimRules, provider: str) -> Role:
    """The highest role that a value of the role claim maps to.

    Raises:
        ClaimsError: none of its values maps to a role (or there is no such claim).
    """
    mapped = [rules.roles[v] for v in strings(claim(claims, rules.role_claim)) if v in rules.roles]
    if not mapped:
        raise ClaimsError(
            f"Your account at {provider} has no PreRead role: none of its "
            f"{rules.role_claim!r} values is one that PreRead maps to radiologist or admin. "
            "Ask your administrator to add you to a PreRead group.",
            f"oidc: no PreRead role in claim {rules.role_claim!r}",
        )
    return max(mapped, key=_RANK.__getitem__)


def identity_of(
    claims: Mapping[str, Any], rules: ClaimRules, *, issuer: str, provider: str
) -> ExternalIdentity:
    """The person a verified ID token's ``claims`` assert (``sub`` checked by the verifier).

    Raises:
        ClaimsError: no tenant or no role (see :func:`tenant_of`, :func:`role_of`).
    """
    subject = str(claims["sub"])
    username = next(iter(strings(claim(claims, rules.username_claim))), "")
    name = next(iter(strings(claims.get("name"))), "")
    return ExternalIdentity(
        issuer=issuer,
        subject=subject,
        tenant=tenant_of(claims, rules, provider),
        role=role_of(claims, rules, provider),
        username=username,
        display_name=name or username,
    )
