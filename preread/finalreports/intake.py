"""The one way a final report comes in, whatever the channel: :func:`receive`.

The MLLP listener (:mod:`preread.finalreports.mllp`) and the API route
(``POST /api/v1/final-reports``) each turn what they received into an
:class:`~preread.finalreports.records.IncomingReport` (:mod:`.hl7`, :mod:`.fhir`), check that
the tenant may send it (:func:`check_grant`), and call :func:`receive`, which extracts the
nodule mentions and stores the report with its audit record in one transaction.

Using a tenant's final reports needs a grant in force for the purpose they serve: the API's
token declares its purpose of use (as for every route); the MLLP listener, which has no token,
receives for :data:`MLLP_PURPOSE` — comparing PreRead's readings with the radiologists' reports
is a review of PreRead's results (:class:`~preread.grants.Purpose`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from preread.audit.chain import Json
from preread.finalreports.extractor import extract
from preread.finalreports.records import IncomingReport, Received
from preread.finalreports.store import FinalReportStore
from preread.grants import GrantStore, Purpose
from preread.results import NotAuthorizedError

__all__ = ["MLLP_PURPOSE", "check_grant", "receive"]

MLLP_PURPOSE = Purpose.QUALITY_REVIEW


def check_grant(grants: GrantStore, tenant: str, purpose: str) -> None:
    """Refuse unless a grant for ``purpose`` is in force for ``tenant``.

    Raises:
        NotAuthorizedError: none is (the message says which purpose).
    """
    try:
        wanted = Purpose(purpose)
    except ValueError:
        raise NotAuthorizedError(f"unknown purpose of use {purpose!r}") from None
    if not grants.list(tenant=tenant, purpose=wanted, active_at=datetime.now(UTC)):
        raise NotAuthorizedError(
            f"no valid {wanted.value} grant for this tenant: its final reports cannot be used"
        )


def receive(
    store: FinalReportStore,
    tenant: str,
    incoming: IncomingReport,
    *,
    actor: str,
    purpose: str,
    detail: Mapping[str, Json] | None = None,
) -> Received:
    """Extract ``incoming``'s nodule mentions and store it for ``tenant`` (a new report, or the
    next version of its accession number), matched to the tenant's study, audited as
    ``final_report.receive`` by ``actor`` for ``purpose`` (``detail`` adds to the record; it
    must name no patient and hold no report text).

    Raises:
        StoreError, AuditError: nothing was stored.
    """
    mentions = extract(incoming.text)
    return store.save(tenant, incoming, mentions, actor=actor, purpose=purpose, detail=detail)
