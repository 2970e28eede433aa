"""Deterministic UIDs of what a review writes into the study (PS3.5 9.1, 9.2).

Like :mod:`preread.reports.uids` for the AI's results: each UID is
:func:`pydicom.uid.generate_uid` with fixed entropy — the scheme, the review's id and the UID's
role ("sr-instance", "tracking-added-2", …) — so storing a review again (a retry after a lost
answer, :func:`preread.reviews.service.store_review`) stores the very same instances, which
Orthanc keeps once. The UIDs are recorded with the review before anything is stored.
"""

from __future__ import annotations

from pydicom.uid import UID, generate_uid

__all__ = ["added_tracking_uid", "review_uid"]

_SCHEME = "preread-review-uid-v1"


def review_uid(review_id: str, role: str) -> UID:
    """The UID playing ``role`` in the objects of review ``review_id``."""
    return generate_uid(entropy_srcs=[_SCHEME, review_id, role])


def added_tracking_uid(review_id: str, number: int) -> UID:
    """The Tracking UID (TID 4108) of added nodule ``number`` of a review, shared by its SR,
    SEG and the reports."""
    return review_uid(review_id, f"tracking-added-{number}")
