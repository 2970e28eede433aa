"""A model version's life on a real job store (SQLite and PostgreSQL), with the shipped
packages: shadow, the promotion gate on reviewed studies, promote, rollback and its re-read.
Jobs are driven through the store's own state machine; the pipeline's shadow reading (nothing
leaves) is tested end to end in ``tests/pipeline/test_service.py``."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from inference.registry import Registry
from preread.audit import AuditAction, AuditLog, Outcome
from preread.lifecycle import GateRefusedError, LifecycleError, LiveLineup, ModelLife, Stage
from preread.lifecycle.lineup import ref_of
from preread.reviews import (
    Accepted,
    Assessment,
    Rejected,
    RejectReason,
    ReviewDraft,
    Reviewer,
    ReviewStore,
)
from preread.reviews.service import review_target
from preread.store import (
    JobState,
    JobStore,
    StudyFingerprint,
)
from preread.webhooks.outbox import WebhookStore
from preread.worklist import Worklist, WorklistQuery
from tests.reviews.test_domain import added
from tests.study_support import finding, finish_reading, read_study, recorded_study

MODELS = Path(__file__).resolve().parents[2] / "models"
TENANT = "hosp-a"
READER = Reviewer("user-1", "Dr Ada Lovelace", TENANT)
TRUE_NODULE = (-20.0, 10.0, -120.0)
VESSEL = (60.0, 10.0, -120.0)


def test_shadow_gate_promote_rollback_and_reread(store: JobStore) -> None:
    registry = Registry(MODELS)
    old, new = registry.find("lung-nodule", "2.4.0"), registry.find("lung-nodule", "2.6.0")
    active, candidate = ref_of(old), ref_of(new)
    audit = AuditLog(store.engine)
    life = ModelLife(store, audit, registry, [old])  # PREREAD_MODELS=lung-nodule@2.4.0
    lineup = LiveLineup(store, [old], registry, ttl_s=0.0)
    hook, _ = WebhookStore(store.engine).create(TENANT, "https://ris.example.org/hooks")
    reviews = ReviewStore(store)
    by = "Dr Chen (AI committee)"
    why = "2.6.0: fewer false positives on new kernels"

    stages = [(s.version, s.stage) for s in life.stages("lung-nodule")]  # newest first
    start = [version for version, _ in stages].index("2.6.0")
    assert {stage for _, stage in stages[:start]} <= {Stage.CANDIDATE}  # newer installs
    assert stages[start : start + 3] == [
        ("2.6.0", Stage.CANDIDATE),
        ("2.4.0", Stage.ACTIVE),
        ("2.3.0", Stage.CANDIDATE),
    ]
    with pytest.raises(LifecycleError, match="only a version in shadow can be promoted"):
        life.promote("lung-nodule", "2.6.0", reviews, min_studies=1, by=by, reason=why)
    with pytest.raises(LifecycleError, match="--by is required"):
        life.shadow("lung-nodule", "2.6.0", by=" ", reason="x")
    life.shadow("lung-nodule", "2.6.0", by=by, reason=why)
    assert [(r.model.version, r.shadow) for r in lineup.readings()] == [
        ("2.4.0", False),
        ("2.6.0", True),
    ]

    # three studies, each read by both; the reader accepts the active's nodule, rejects its
    # vessel and adds the nodule it missed, which the shadow version found
    missed = (1.5, 2.0, 3.0)  # tests.reviews.test_domain.added's centre
    shadow_jobs = []
    for _ in range(3):
        facts = recorded_study(store, TENANT)
        job = read_study(
            store, facts, active, [finding(1, centre=TRUE_NODULE), finding(2, centre=VESSEL)]
        )
        shadow_jobs.append(
            read_study(
                store,
                facts,
                candidate,
                [finding(1, centre=TRUE_NODULE), finding(2, centre=missed)],
                shadow=True,
            )
        )
        recorded = store.study(facts.study_instance_uid)
        assert recorded is not None
        target = review_target(recorded, job)
        one, two = target.findings
        draft = ReviewDraft(
            (
                Assessment(one.tracking_uid, 1, Accepted()),
                Assessment(two.tracking_uid, 2, Rejected(RejectReason.VESSEL)),
            ),
            (added(uid=None),),
        )
        reviews.sign(target, READER, draft, replaces=None, at=datetime.now(UTC), audit=audit,
                     grant_id="grant-1")  # fmt: skip

    # a shadow reading never reaches a client: not in the study's view, the job lookup, the
    # worklist, the priors' lookup, nor the webhook outbox
    uid = shadow_jobs[0].study_instance_uid
    _, view = store.study_view(uid, tenant=TENANT)
    assert [j.model_version for j in view] == ["2.4.0"]
    assert store.tenant_job(shadow_jobs[0].id, TENANT) is None
    assert [j.model_version for j in store.current_for_study(uid)] == ["2.4.0"]
    assert len(store.current_for_study(uid, include_shadow=True)) == 2
    rows = Worklist(store).page(WorklistQuery(tenant=TENANT)).rows
    assert {r.job_id for r in rows}.isdisjoint({j.id for j in shadow_jobs}) and len(rows) == 3
    sent = {
        d.payload["data"].get("job_id")
        for d in WebhookStore(store.engine).deliveries(TENANT, hook.id)
    }
    assert len(sent) == 3 and sent.isdisjoint({j.id for j in shadow_jobs})

    # the gate: too few studies refuses (audited, nothing changes), enough passes
    with pytest.raises(
        GateRefusedError, match="3 reviewed studies read in shadow, fewer than the 4"
    ) as refused:
        life.promote("lung-nodule", "2.6.0", reviews, min_studies=4, by=by, reason=why)
    assert refused.value.result.figures["shadow_sensitivity"] == 1.0
    stage = {s.version: s.stage for s in life.stages("lung-nodule")}
    assert (stage["2.6.0"], stage["2.4.0"]) == (Stage.SHADOW, Stage.ACTIVE)
    promoted, result = life.promote(
        "lung-nodule", "2.6.0", reviews, min_studies=3, by=by, reason=why
    )
    f = result.figures
    assert (f["studies"], f["true_nodules"]) == (3, 6)
    assert (f["active_sensitivity"], f["shadow_sensitivity"]) == (0.5, 1.0)
    assert (f["active_fp_per_scan"], f["shadow_fp_per_scan"]) == (1.0, 0.0)
    assert f["held_out"]["cpm"] == (old.read_evaluation()["cpm"], new.read_evaluation()["cpm"])
    assert "| sensitivity | 0.500 | 1.000 |" in result.table()
    assert (promoted.stage, promoted.replaced, promoted.gate) == (Stage.ACTIVE, "2.4.0", f)
    assert [(r.model.version, r.shadow) for r in lineup.readings()] == [("2.6.0", False)]
    assert lineup.may_run("lung-nodule", "2.4.0", False)[0] is False  # queued old jobs stop
    assert "withdrawn" in lineup.may_run("lung-nodule", "2.4.0", False)[1]

    # the promoted version reads a study it read in shadow for real: a new, real job
    seen = store.study(uid)
    assert seen is not None
    with store.transaction() as tx:
        live = tx.enqueue(uid, seen.facts.orthanc_study_id, candidate, StudyFingerprint(10, "x"))
    assert live.created and live.superseded is not None and live.superseded.shadow
    assert not live.job.shadow
    live_done = finish_reading(store, live.job, candidate, [finding(1, centre=TRUE_NODULE)])

    # rollback: 2.4.0 is active again; the study 2.6.0 read is listed and read again by 2.4.0,
    # whose run will remove both earlier readings' objects from the study
    restored, reads = life.rollback("lung-nodule", "2.6.0", reread=True, by=by, reason=why)
    assert (restored.version, restored.stage) == ("2.4.0", Stage.ACTIVE)
    assert [(r.study_instance_uid, r.job_id) for r in reads] == [(uid, live_done.id)]
    again = store.get(reads[0].reread_by or "")
    assert (again.model_version, again.state, again.shadow) == ("2.4.0", JobState.QUEUED, False)
    assert store.get(live_done.id).state is JobState.SUPERSEDED
    removed = {j.model_version for j in store.outputs_to_remove(again.id)}
    assert removed == {"2.4.0", "2.6.0"}
    assert [(r.model.version, r.shadow) for r in lineup.readings()] == [("2.4.0", False)]
    with pytest.raises(LifecycleError, match=r"2\.6\.0 is retired: cannot rollback"):
        life.rollback("lung-nodule", "2.6.0", by=by, reason=why)

    moves = [
        (r.event.detail["move"], r.event.detail["version"], r.event.outcome)
        for r in audit.records()
        if r.event.action is AuditAction.MODEL_STAGE
    ]
    assert moves == [
        ("shadow", "2.6.0", Outcome.SUCCESS),
        ("promote", "2.6.0", Outcome.REFUSED),
        ("promote", "2.6.0", Outcome.SUCCESS),
        ("rollback", "2.6.0", Outcome.SUCCESS),
    ]
    assert all(r.event.actor == "operator:Dr Chen (AI committee)" for r in audit.records()
               if r.event.action is AuditAction.MODEL_STAGE)  # fmt: skip


def test_pinning_records_the_version_that_reads_so_a_newer_install_does_not_take_over(
    store: JobStore,
) -> None:
    """``PREREAD_MODELS=lung-nodule`` names the newest installed version: before a candidate
    is published, the version reading now is recorded active, and stays so for a process
    whose unversioned name resolves to the newer package."""
    registry = Registry(MODELS)
    old, new = registry.find("lung-nodule", "2.4.0"), registry.find("lung-nodule", "2.6.0")
    audit = AuditLog(store.engine)
    before = ModelLife(store, audit, registry, [old])
    pinned = before.pin_active("lung-nodule", by="cli:ops", reason="before 2.6.0 is published")
    assert (pinned.version, pinned.stage) == ("2.4.0", Stage.ACTIVE)
    assert before.pin_active("lung-nodule", by="cli:ops", reason="again").changed_at == (
        pinned.changed_at
    )  # recorded once
    after = ModelLife(store, audit, registry, [new])  # the newest install, after a restart
    assert after.active("lung-nodule").version == "2.4.0"
    assert [
        r.event.detail["move"]
        for r in audit.records()
        if r.event.action is AuditAction.MODEL_STAGE and r.event.detail
    ] == ["pin"]
