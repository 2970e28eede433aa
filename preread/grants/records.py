"""Grants as typed records; a :class:`GrantSpec` is checked when it is made."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from preread.errors import PrereadError
from preread.grants.purposes import Purpose, purpose

_DA = re.compile(r"^\d{8}$")
_AET = re.compile(r"^[\x20-\x7e]{1,16}$")
_MODALITY = re.compile(r"^[A-Z0-9_]{1,16}$")
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")


class GrantError(PrereadError):
    """A grant cannot be made or changed as asked (the message names what is wrong)."""


class GrantNotFoundError(PrereadError):
    """No such grant."""


@dataclass(frozen=True)
class GrantSpec:
    """What a grant authorizes.

    Scope: the tenant's studies, optionally only those sent by ``sender_aets``, of
    ``modalities``, with a StudyDate within [``study_date_from``, ``study_date_to``] (DICOM DA,
    inclusive), or only the listed ``study_uids`` (None: all). Validity: ``valid_from`` ≤ t <
    ``valid_to`` (aware datetimes). ``legal_basis`` names the law, contract or consent
    reference; ``issued_by`` who issued it on the platform.
    """

    tenant: str
    purpose: Purpose
    valid_from: datetime
    valid_to: datetime
    legal_basis: str
    issued_by: str
    sender_aets: tuple[str, ...] = ()
    modalities: tuple[str, ...] = ()
    study_date_from: str | None = None
    study_date_to: str | None = None
    study_uids: tuple[str, ...] | None = None

    def checked(self) -> GrantSpec:
        """This spec, or :class:`GrantError` naming the first thing wrong with it."""
        try:
            purpose(str(self.purpose))
        except ValueError as exc:
            raise GrantError(str(exc)) from None
        if not self.tenant:
            raise GrantError("a grant needs the tenant whose data it authorizes")
        for name in ("valid_from", "valid_to"):
            if getattr(self, name).tzinfo is None:
                raise GrantError(f"{name} needs a time zone")
        if self.valid_to <= self.valid_from:
            raise GrantError(
                f"the grant ends ({self.valid_to.isoformat()}) before it starts "
                f"({self.valid_from.isoformat()})"
            )
        if not self.legal_basis.strip():
            raise GrantError("a grant needs its legal basis or consent reference")
        if not self.issued_by.strip():
            raise GrantError("a grant needs who issued it")
        for aet in self.sender_aets:
            if not _AET.match(aet):
                raise GrantError(f"sender AE title {aet!r}: 1-16 printable ASCII characters")
        for modality in self.modalities:
            if not _MODALITY.match(modality):
                raise GrantError(f"modality {modality!r}: a DICOM modality code such as CT")
        for name in ("study_date_from", "study_date_to"):
            value = getattr(self, name)
            if value is not None and not _DA.match(value):
                raise GrantError(f"{name} {value!r}: a date YYYYMMDD")
        if (
            self.study_date_from is not None
            and self.study_date_to is not None
            and self.study_date_to < self.study_date_from
        ):
            raise GrantError(
                f"the scope matches nothing: study dates from {self.study_date_from} "
                f"to {self.study_date_to}"
            )
        if self.study_uids is not None:
            if not self.study_uids:
                raise GrantError("the scope matches nothing: an empty list of studies")
            bad = [u for u in self.study_uids if not _UID.match(u) or len(u) > 64]
            if bad:
                raise GrantError(f"not StudyInstanceUIDs: {', '.join(bad[:3])}")
        return self


def check_senders(spec: GrantSpec, tenant_of: Callable[[str], str | None]) -> GrantSpec:
    """Refuse a scope naming senders whose studies belong to another tenant (it would match
    nothing): ``tenant_of`` is the deployment's mapping (``Settings.tenant_of``)."""
    foreign = [aet for aet in spec.sender_aets if tenant_of(aet) != spec.tenant]
    if foreign:
        shown = ", ".join(f"{aet} ({tenant_of(aet) or 'no tenant'})" for aet in foreign)
        raise GrantError(
            f"the scope matches nothing: sender(s) {shown} do not send for {spec.tenant!r}"
        )
    return spec


@dataclass(frozen=True)
class Grant:
    id: str
    spec: GrantSpec
    created_at: datetime
    revoked_at: datetime | None = None
    revoked_by: str | None = None
    revoke_reason: str | None = None

    @property
    def tenant(self) -> str:
        return self.spec.tenant

    @property
    def purpose(self) -> Purpose:
        return self.spec.purpose

    def valid_at(self, moment: datetime) -> bool:
        return self.revoked_at is None and self.spec.valid_from <= moment < self.spec.valid_to
