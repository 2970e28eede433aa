"""The clinical-preread grant that tests' phantom studies need (tenant ``default``, valid from a
minute ago for a day), written once for every test module that makes one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from preread.grants import GrantSpec, Purpose


def clinical_preread(
    issued_by: str, *, sender_aets: tuple[str, ...] = (), tenant: str = "default"
) -> GrantSpec:
    now = datetime.now(UTC)
    return GrantSpec(
        tenant=tenant,
        purpose=Purpose.CLINICAL_PREREAD,
        valid_from=now - timedelta(minutes=1),
        valid_to=now + timedelta(days=1),
        legal_basis="synthetic phantom studies, no patient data",
        issued_by=issued_by,
        sender_aets=sender_aets,
    )
