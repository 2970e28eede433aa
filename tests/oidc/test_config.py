"""The ``PREREAD_OIDC_*`` settings as :class:`OidcConfig`: what is needed, what contradicts, the
client secret from a file; and the claims' mapping to a tenant and a role (pure functions)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from preread.accounts import Role
from preread.oidc import ClaimRules, ClaimsError, OidcConfig, OidcConfigError
from preread.oidc.claims import claim, identity_of, role_of, tenant_of
from preread.settings import Settings

ISSUER = "https://login.st-elsewhere.example/realms/radiology"
COMPLETE: dict[str, Any] = {
    "oidc_issuer": ISSUER,
    "oidc_client_id": "preread",
    "oidc_tenant": "hosp-a",
    "oidc_role_claim": "realm_access.roles",
    "oidc_roles": {"preread-radiologist": "radiologist", "preread-admin": "admin"},
}


def test_no_issuer_no_openid_connect_and_a_complete_configuration(tmp_path: Path) -> None:
    assert OidcConfig.from_settings(Settings(data_dir=tmp_path)) is None
    config = OidcConfig.from_settings(Settings(data_dir=tmp_path, **COMPLETE))
    assert config is not None
    assert config.provider_name == "login.st-elsewhere.example"  # the issuer's host by default
    assert config.scopes == ("openid", "profile", "email") and config.client_secret is None
    assert config.rules.roles == {
        "preread-radiologist": Role.RADIOLOGIST,
        "preread-admin": Role.ADMIN,
    }


def test_the_client_secret_and_the_scopes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / "client-secret"
    secret.write_text("from-a-secret-file\n", encoding="utf-8")
    monkeypatch.setenv("PREREAD_OIDC_CLIENT_SECRET_FILE", str(secret))
    monkeypatch.setenv("PREREAD_OIDC_SCOPES", "profile, groups")
    config = OidcConfig.from_settings(Settings(data_dir=tmp_path, **COMPLETE))
    assert config is not None and config.client_secret is not None
    assert config.client_secret.get_secret_value() == "from-a-secret-file"
    assert "from-a-secret-file" not in repr(config)
    assert config.scopes == ("openid", "profile", "groups")  # openid is always asked for


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"oidc_client_id": ""}, "PREREAD_OIDC_CLIENT_ID"),
        ({"oidc_tenant_claim": "hospital"}, "one of PREREAD_OIDC_TENANT and"),
        ({"oidc_tenant": None}, "one of PREREAD_OIDC_TENANT and"),
        ({"oidc_tenant": "Hospital A"}, "tenant 'Hospital A'"),
        ({"oidc_roles": {}}, "PREREAD_OIDC_ROLES"),
        ({"oidc_role_claim": ""}, "PREREAD_OIDC_ROLE_CLAIM"),
        ({"oidc_roles": {"pacs": "superuser"}}, "unknown role 'superuser'"),
        ({"oidc_issuer": "http://login.st-elsewhere.example"}, "an https URL"),
        ({"oidc_issuer": f"{ISSUER}?realm=x"}, "without query"),
    ],
)
def test_incomplete_or_contradictory_settings_are_refused_by_name(
    tmp_path: Path, changes: dict[str, Any], named: str
) -> None:
    with pytest.raises(OidcConfigError, match=named):
        OidcConfig.from_settings(Settings(data_dir=tmp_path, **{**COMPLETE, **changes}))


RULES = ClaimRules(
    role_claim="realm_access.roles",
    roles={"preread-radiologist": Role.RADIOLOGIST, "preread-admin": Role.ADMIN},
    tenant_claim="https://st-elsewhere.example/site",
    tenants={"North": "hosp-north"},
)


def _claims(**changes: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "sub": "f81d4fae-7dec",
        "preferred_username": "ada",
        "name": "Dr Ada Lovelace",
        "realm_access": {"roles": ["offline_access", "preread-radiologist"]},
        "https://st-elsewhere.example/site": "North",
        **changes,
    }
    return claims


def test_claims_by_name_or_dotted_path_give_the_tenant_and_the_highest_role() -> None:
    assert claim(_claims(), "realm_access.roles") == ["offline_access", "preread-radiologist"]
    assert claim(_claims(), "https://st-elsewhere.example/site") == "North"  # a name with dots
    assert claim(_claims(), "realm_access.missing") is None
    person = identity_of(_claims(), RULES, issuer=ISSUER, provider="SSO")
    assert (person.subject, person.tenant, person.role) == (
        "f81d4fae-7dec",
        "hosp-north",
        Role.RADIOLOGIST,
    )
    assert (person.username, person.display_name) == ("ada", "Dr Ada Lovelace")
    both = _claims(realm_access={"roles": ["preread-admin", "preread-radiologist"]})
    assert role_of(both, RULES, "SSO") is Role.ADMIN
    assert role_of(_claims(realm_access={"roles": "preread-admin"}), RULES, "SSO") is Role.ADMIN


@pytest.mark.parametrize(
    ("claims", "message", "reason"),
    [
        (
            _claims(realm_access={"roles": ["offline_access"]}),
            "has no PreRead role",
            "no PreRead role",
        ),
        (_claims(realm_access=None), "has no PreRead role", "no PreRead role"),
        (
            _claims(**{"https://st-elsewhere.example/site": "South"}),
            "'South', which is no",
            "no tenant",
        ),
        (
            _claims(**{"https://st-elsewhere.example/site": ["North", "East"]}),
            "does not name one",
            "2 values",
        ),
    ],
)
def test_claims_without_a_mapped_role_or_tenant_are_refused(
    claims: dict[str, Any], message: str, reason: str
) -> None:
    with pytest.raises(ClaimsError) as refused:
        identity_of(claims, RULES, issuer=ISSUER, provider="St Elsewhere SSO")
    assert message in str(refused.value) and "St Elsewhere SSO" in str(refused.value)
    assert reason in refused.value.reason


def test_a_tenant_claim_without_a_mapping_is_the_tenant_itself() -> None:
    rules = ClaimRules(role_claim="groups", roles={"r": Role.RADIOLOGIST}, tenant_claim="tenant")
    assert tenant_of({"tenant": "hosp-c"}, rules, "SSO") == "hosp-c"
    with pytest.raises(ClaimsError, match="which is no PreRead tenant"):
        tenant_of({"tenant": "Hospital C"}, rules, "SSO")
