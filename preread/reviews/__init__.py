"""Radiologists' reviews of AI results: the verdicts as typed data, in the store, and in DICOM.

* :mod:`.domain` — :class:`Review`, :class:`ReviewDraft`, :class:`Assessment` (verdicts
  :class:`Accepted`, :class:`Rejected` with a :class:`RejectReason`, :class:`Modified`),
  :class:`AddedNodule` with its :class:`VoxelMask`, :class:`Reviewer`;
* :func:`measure_added` — a nodule from the reader's click, measured from the pixels;
* :func:`sign_review` / :func:`store_review` — sign (grant, record, webhook, audit) and store
  the review SR and SEG in the study (:class:`ReviewContext`), :func:`review_subject` — what
  to review;
* :class:`ReviewStore` — versioned, tenant-scoped reviews (``current``, ``history``,
  ``signed`` for the learning loop);
* :func:`review_out` — a review as the JSON/FHIR/HL7 reports show it.

Typical use (the web UI)::

    ctx = ReviewContext(store, grants, AuditLog(store.engine), source)
    reviewer = Reviewer(user.id, user.display_name, user.tenant)
    subject = review_subject(ctx, user.tenant, study_uid)
    volume = series_volume(ctx, reviewer, subject)      # once per study opened
    added = measure_added(volume, click_lps)            # the reader's click, confirmed
    draft = ReviewDraft(
        assessments=(Assessment(f.tracking_uid, f.number, Accepted())
                     for f in subject.target.findings),
        added=(added,),
    )
    review = sign_review(ctx, reviewer, study_uid, subject.job.id, draft,
                         replaces=subject.current.id if subject.current else None)
"""

from preread.reviews.domain import (
    Accepted,
    AddedNodule,
    AiFinding,
    Assessment,
    Modified,
    Rejected,
    RejectReason,
    Review,
    ReviewDraft,
    Reviewer,
    ReviewTarget,
    Verdict,
    VoxelMask,
    check_complete,
)
from preread.reviews.errors import (
    NoNoduleHereError,
    ReviewConflictError,
    ReviewError,
    ReviewNotFoundError,
    ReviewNotStoredError,
)
from preread.reviews.measure import AddRule, measure_added
from preread.reviews.out import review_out
from preread.reviews.service import (
    ReviewContext,
    ReviewSubject,
    review_subject,
    review_target,
    series_volume,
    sign_review,
    store_review,
)
from preread.reviews.store import REVIEWED, ReviewStore

__all__ = [
    "REVIEWED",
    "Accepted",
    "AddRule",
    "AddedNodule",
    "AiFinding",
    "Assessment",
    "Modified",
    "NoNoduleHereError",
    "RejectReason",
    "Rejected",
    "Review",
    "ReviewConflictError",
    "ReviewContext",
    "ReviewDraft",
    "ReviewError",
    "ReviewNotFoundError",
    "ReviewNotStoredError",
    "ReviewStore",
    "ReviewSubject",
    "ReviewTarget",
    "Reviewer",
    "Verdict",
    "VoxelMask",
    "check_complete",
    "measure_added",
    "review_out",
    "review_subject",
    "review_target",
    "series_volume",
    "sign_review",
    "store_review",
]
