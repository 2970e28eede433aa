"""The lost-to-follow-up worklist from a tenant's re-read archive (I/O: the PACS is asked).

A patient is on it when the newest of their archived CTs that the backfill read with a result
calling for follow-up (a finding >= 6 mm, or a Lung-RADS exam category of 3 or more:
:func:`~preread.backfill.reader.needs_follow_up`) has **no later CT** on the PACS now: the
PACS is asked (C-FIND) for the patient's CT studies dated after it, at the time the worklist is
made, so that a CT taken since the archive was read takes the patient off. A patient whose
archived study has no PatientID cannot be asked for and stays on the list (a person checks).
Only studies a quality-review grant still covers are listed (one revoked since the archive was
read takes its studies off, before the PACS is asked about the patient). Every C-FIND is
audited (``backfill.query`` under the archived study's UID, purpose ``quality-review``), and so
is the worklist itself (``export``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from dicom_gateway.errors import GatewayError
from preread.audit import AuditAction, AuditLog, Outcome
from preread.backfill.exports import LostCase
from preread.backfill.reader import (
    ArchiveSource,
    BackfillError,
    needs_follow_up,
    record_access,
)
from preread.backfill.store import BackfillItem, BackfillStore
from preread.grants import GrantStore, Purpose, StudyScope

__all__ = ["lost_to_follow_up"]


def lost_to_follow_up(
    store: BackfillStore,
    archive: ArchiveSource,
    audit: AuditLog,
    grants: GrantStore,
    tenant: str,
    *,
    sender_aet: str,
    actor: str,
    export_format: str,
    now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
) -> list[LostCase]:
    """The tenant's patients who may have been lost to follow-up (see the module docstring);
    ``sender_aet`` is the PACS's AE title (the sender the grants are matched with).

    Raises:
        BackfillError: the PACS could not be asked (nothing is listed then: a partial list
            would look complete).
    """
    newest: dict[tuple[str, str], BackfillItem] = {}
    for item in store.items(tenant, state="done"):
        if not needs_follow_up(item.summary):
            continue
        scope = StudyScope(
            tenant=tenant,
            study_instance_uid=item.study_instance_uid,
            sender_aet=sender_aet,
            modalities=("CT",),
            study_date=f"{item.study_date:%Y%m%d}",
        )
        if grants.covering(scope, Purpose.QUALITY_REVIEW)[0] is None:
            continue
        key = (item.patient_id.strip(), item.issuer_of_patient_id.strip())
        if not key[0]:
            key = ("", item.study_instance_uid)  # no PatientID: one entry per study
        held = newest.get(key)
        if held is None or (item.study_date, item.study_instance_uid) > (
            held.study_date,
            held.study_instance_uid,
        ):
            newest[key] = item
    cases: list[LostCase] = []
    for item in newest.values():
        checked_at = now()
        if item.patient_id.strip():
            try:
                later = archive.patient_studies(
                    item.patient_id,
                    item.issuer_of_patient_id or None,
                    after=item.study_date,
                    exclude_study_uid=item.study_instance_uid,
                )
            except GatewayError as exc:
                record_access(
                    audit,
                    actor,
                    tenant,
                    AuditAction.BACKFILL_QUERY,
                    Outcome.FAILURE,
                    item.study_instance_uid,
                    reason=str(exc),
                )
                raise BackfillError(f"the PACS could not be asked for later CTs: {exc}") from exc
            record_access(
                audit,
                actor,
                tenant,
                AuditAction.BACKFILL_QUERY,
                Outcome.SUCCESS,
                item.study_instance_uid,
                later_ct=len(later),
                peer=archive.peer,
            )
            if later:
                continue
        cases.append(_case(item, checked_at))
    record_access(
        audit,
        actor,
        tenant,
        AuditAction.EXPORT,
        Outcome.SUCCESS,
        None,
        kind="lost-to-follow-up",
        cases=len(cases),
        format=export_format,
    )
    return cases


def _case(item: BackfillItem, checked_at: dt.datetime) -> LostCase:
    summary = item.summary or {}
    largest = summary.get("largest_mean_diameter_mm")
    kind = summary.get("largest_type")
    category = summary.get("lung_rads")
    ge_6 = summary.get("ge_6mm")
    return LostCase(
        tenant=item.tenant,
        patient_id=item.patient_id,
        issuer_of_patient_id=item.issuer_of_patient_id,
        study_instance_uid=item.study_instance_uid,
        accession_number=item.accession_number,
        study_date=item.study_date,
        largest_mean_diameter_mm=float(largest) if isinstance(largest, int | float) else 0.0,
        largest_type=kind if isinstance(kind, str) else None,
        nodules_ge_6mm=ge_6 if isinstance(ge_6, int) else 0,
        lung_rads=category if isinstance(category, str) else None,
        model=item.model or "",
        checked_at=checked_at,
    )
