"""Reviews in the store: versioned (a second review supersedes, both kept, the new one is
current), tenant-scoped, recorded with the study's change, the webhook message and the audit
record in one transaction; SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from preread.audit import AuditAction, AuditLog, Outcome
from preread.domain import Comparison
from preread.reviews import (
    Accepted,
    Assessment,
    Modified,
    Rejected,
    RejectReason,
    ReviewConflictError,
    ReviewDraft,
    Reviewer,
    ReviewNotFoundError,
    ReviewStore,
    review_target,
)
from preread.store import JobStore, StudyFingerprint
from preread.webhooks.outbox import WebhookStore
from tests.reviews.conftest import MODEL, done_study
from tests.reviews.test_domain import added

READER = Reviewer("user-1", "Dr Ada Lovelace", "hosp-a")
SIGNED = datetime(2025, 2, 1, 9, 30, tzinfo=UTC)


def test_a_second_review_supersedes_the_first_and_both_are_kept(store: JobStore) -> None:
    facts, job = done_study(store, "hosp-a")
    uid = facts.study_instance_uid
    hook, _ = WebhookStore(store.engine).create("hosp-a", "https://ris.example.org/hooks")
    study = store.study(uid)
    assert study is not None
    target = review_target(study, job)
    one, two = target.findings
    reviews = ReviewStore(store)
    audit = AuditLog(store.engine)
    first = reviews.sign(
        target,
        READER,
        ReviewDraft(
            (
                Assessment(one.tracking_uid, 1, Accepted()),
                Assessment(two.tracking_uid, 2, Rejected(RejectReason.VESSEL)),
            ),
            (added(uid=None),),
        ),
        replaces=None,
        at=SIGNED,
        audit=audit,
        grant_id="grant-1",
    )
    assert (first.version, first.supersedes, first.stored_at) == (1, None, None)
    assert first.added[0].tracking_uid and first.seg_sop_instance_uid is not None
    assert reviews.current("hosp-a", uid, MODEL.id) == first
    assert reviews.get("hosp-a", first.id) == first
    after = store.study(uid)
    assert after is not None and after.updated_at > study.updated_at  # caches keyed by it move

    # the webhook message and the audit record came with it, without patient identifiers
    (message,) = WebhookStore(store.engine).deliveries("hosp-a", hook.id)
    assert message.event_type == "preread.reviewed"
    data = message.payload["data"]
    assert (data["review_id"], data["version"], data["job_id"]) == (first.id, 1, job.id)
    assert data["assessments"] == {"accepted": 1, "rejected": 1, "modified": 0}
    assert data["added"] == 1
    for private in (facts.patient_id, "DOE", READER.name):
        assert private not in str(message.payload)
    signs = [
        r.event for r in audit.records(study_uid=uid) if r.event.action is AuditAction.REVIEW_SIGN
    ]
    assert [(e.outcome, e.actor, e.detail["review_id"]) for e in signs] == [
        (Outcome.SUCCESS, "user:user-1", first.id)
    ]

    # signing against a review the reader did not see is refused; against the current one, a
    # new version supersedes it
    again = ReviewDraft(
        (
            Assessment(one.tracking_uid, 1, Modified("part-solid", 9.5)),
            Assessment(two.tracking_uid, 2, Accepted()),
        )
    )
    with pytest.raises(ReviewConflictError, match=f"review {first.id} now"):
        reviews.sign(target, READER, again, replaces=None, at=SIGNED, audit=audit, grant_id="g")
    later = SIGNED + timedelta(hours=1)
    second = reviews.sign(
        target, READER, again, replaces=first.id, at=later, audit=audit, grant_id="grant-1"
    )
    assert (second.version, second.supersedes) == (2, first.id)
    assert [r.id for r in reviews.history("hosp-a", uid)] == [second.id, first.id]
    assert reviews.current("hosp-a", uid, MODEL.id) == second
    assert reviews.get("hosp-a", first.id) == first  # never overwritten
    assert reviews.current_of("hosp-a", uid, MODEL.id, job.id) == second
    assert [r.id for r in reviews.signed("hosp-a")] == [first.id, second.id]
    assert [r.id for r in reviews.signed("hosp-a", current_only=True)] == [second.id]
    assert [r.id for r in reviews.signed("hosp-a", since=later)] == [second.id]
    assert {r.id for r in reviews.unstored()} == {first.id, second.id}

    stored = reviews.mark_stored("hosp-a", second.id, later + timedelta(seconds=5))
    assert stored.stored_at is not None
    assert [r.id for r in reviews.unstored()] == [first.id]

    # another tenant sees none of it
    with pytest.raises(ReviewNotFoundError):
        reviews.get("hosp-b", first.id)
    assert reviews.history("hosp-b", uid) == []
    assert reviews.current("hosp-b", uid, MODEL.id) is None
    assert list(reviews.signed("hosp-b")) == []


def test_a_reading_that_is_no_longer_current_cannot_be_reviewed(store: JobStore) -> None:
    facts, job = done_study(store, "hosp-a", findings=0)
    study = store.study(facts.study_instance_uid)
    assert study is not None
    target = review_target(study, job)
    store.enqueue(
        facts.study_instance_uid, facts.orthanc_study_id, MODEL, StudyFingerprint(11, "y")
    )
    reviews = ReviewStore(store)
    with pytest.raises(ReviewConflictError, match="is superseded"):
        reviews.sign(
            target,
            READER,
            ReviewDraft(),
            replaces=None,
            at=SIGNED,
            audit=AuditLog(store.engine),
            grant_id="g",
        )
    assert reviews.history("hosp-a", facts.study_instance_uid) == []


def test_a_reviewed_result_is_not_read_again_for_its_comparison(store: JobStore) -> None:
    """A result read while the priors could not be had is read again by the reconcile sweep,
    unless a radiologist has signed a review of it: the review names that result."""
    down = Comparison("unavailable", reason="the PACS could not be reached")
    _, reviewed = done_study(store, "hosp-a", comparison=down)
    _, unreviewed = done_study(store, "hosp-a", comparison=down, patient="PAT-2")
    assert reviewed.reason_code == unreviewed.reason_code == "comparison_unavailable"
    study = store.study(reviewed.study_instance_uid)
    assert study is not None
    target = review_target(study, reviewed)
    draft = ReviewDraft(
        tuple(Assessment(f.tracking_uid, f.number, Accepted()) for f in target.findings), ()
    )
    ReviewStore(store).sign(
        target, READER, draft, replaces=None, at=SIGNED, audit=AuditLog(store.engine), grant_id="g"
    )
    assert [j.supersedes for j in store.retry_comparisons(0.0, 3)] == [unreviewed.id]
