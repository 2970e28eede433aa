"""Errors of reviews.

PrereadError
└── ReviewError                 (a review, or a part of it, that cannot be made as given)
    ├── NoNoduleHereError       (measure_added: nothing nodule-like at the reader's click)
    ├── ReviewConflictError     (the result or its current review changed since the reader
    │                            opened it: another review was signed, or the study was read
    │                            again)
    ├── ReviewNotFoundError     (no such review for this tenant)
    └── ReviewNotStoredError    (signed and recorded, but its SR/SEG are not in the study yet:
                                 :func:`~preread.reviews.service.store_review` stores them)

A review refused for want of a grant raises :class:`preread.results.NotAuthorizedError`, the
error of every other refused use of a study.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from preread.errors import PrereadError

if TYPE_CHECKING:
    from preread.reviews.domain import Review


class ReviewError(PrereadError):
    """A review cannot be made as given; the message says what is wrong (naming the finding)."""


class NoNoduleHereError(ReviewError):
    """Nothing nodule-like around the point the reader clicked; the message says what is there."""


class ReviewConflictError(ReviewError):
    """What the reader reviewed is no longer current; reload and review again."""


class ReviewNotFoundError(ReviewError):
    """No review with this id for this tenant (another tenant's is reported the same way)."""

    def __init__(self, review_id: str) -> None:
        self.review_id = review_id
        super().__init__(f"no review {review_id}")


class ReviewNotStoredError(ReviewError):
    """The review is signed and recorded, but its SR and SEG could not be stored in the study
    (Orthanc unavailable, or refusing them); ``review`` is the recorded review."""

    def __init__(self, review: Review, reason: str) -> None:
        self.review = review
        super().__init__(
            f"review {review.id} (version {review.version}) is signed, but its SR/SEG are not "
            f"in the study yet: {reason}"
        )
