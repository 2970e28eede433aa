"""Signing a review end to end against a real Orthanc: the review SR and SEG appear in the
study (dciodvfy: no error; dsrdump reads them), VERIFIED by the reader, with the AI SR and the
superseded review as predecessors; a revoked grant refuses and stores nothing; the webhook
message and the audit records are there; the JSON, FHIR and HL7 reports show the verdicts.

The study (tests/reviews/phantom_study.py) is a small synthetic chest CT with three nodules, of
which the "AI result" holds two; the third is the one the AI "missed", which the reader adds
with a click.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message
from pydicom.dataset import Dataset

from dicom_gateway.client import OrthancClient
from dicom_gateway.orthanc_server import OrthancServer
from inference.registry import Registry
from preread.audit import AuditAction, AuditLog, Outcome
from preread.grants import GrantStore
from preread.reports.fhir import to_fhir_bundle
from preread.reports.hl7 import to_oru
from preread.reports.html import to_html
from preread.reports.review import ReportOut
from preread.results import NotAuthorizedError, report_input
from preread.reviews import (
    Accepted,
    Assessment,
    Modified,
    Rejected,
    RejectReason,
    Review,
    ReviewContext,
    ReviewDraft,
    Reviewer,
    measure_added,
    review_out,
    review_subject,
    series_volume,
    sign_review,
)
from preread.reviews.errors import ReviewNotStoredError
from preread.reviews.service import store_unstored
from preread.store import JobRecord, JobStore, StudyFacts
from preread.watcher import survey
from preread.webhooks.outbox import WebhookStore
from tests.dicom_tools import dciodvfy, dsrdump
from tests.grant_support import clinical_preread
from tests.reviews.phantom_study import MODEL, NODULES, read_phantom_study

READER = Reviewer("user-7", "Dr Grace Hopper", "default")
TENANT = "default"


@dataclass
class Scene:
    ctx: ReviewContext
    client: OrthancClient
    facts: StudyFacts
    job: JobRecord
    grants: GrantStore
    grant_id: str
    hook_id: str
    tmp: Path


@pytest.fixture(scope="module")
def scene(orthanc: OrthancServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scene]:
    tmp = tmp_path_factory.mktemp("review")
    client = orthanc.client()
    with JobStore.create(f"sqlite:///{tmp / 'preread.db'}") as store:
        store.migrate()
        read = read_phantom_study(client, store, tmp, tenant=TENANT)
        facts, done = read.facts, read.job
        grants = GrantStore(store.engine)
        grant = grants.create(clinical_preread("tests"))
        hook, _ = WebhookStore(store.engine).create(TENANT, "https://ris.example.org/hooks")
        ctx = ReviewContext(store, grants, AuditLog(store.engine), client, store_retry_delays_s=())
        yield Scene(ctx, client, facts, done, grants, grant.id, hook.id, tmp)


def _instance(scene: Scene, series_uid: str) -> Dataset:
    (ds,) = scene.client.series_datasets(scene.facts.study_instance_uid, series_uid)
    return ds


def _validate(scene: Scene, ds: Dataset, name: str) -> Path:
    path = scene.tmp / f"{name}.dcm"
    ds.save_as(path, enforce_file_format=True)
    report = dciodvfy(path)
    errors = [line for line in report if "Error" in line]
    assert not errors, report
    return path


def _series_in_study(scene: Scene) -> set[str]:
    study_id = scene.client.find_study(scene.facts.study_instance_uid)
    assert study_id is not None
    return {
        scene.client.series(s).series_instance_uid for s in scene.client.study(study_id).series_ids
    }


def _sign_first(scene: Scene) -> Review:
    subject = review_subject(scene.ctx, TENANT, scene.facts.study_instance_uid)
    assert subject.current is None and subject.job.id == scene.job.id
    one, two = subject.target.findings
    miss = NODULES[2].center_lps_mm
    volume = series_volume(scene.ctx, READER, subject)  # what the UI measures clicks on
    added = measure_added(volume, (miss[0] + 1.0, miss[1] - 1.0, miss[2]))
    draft = ReviewDraft(
        assessments=(
            Assessment(one.tracking_uid, one.number, Modified("part-solid", 15.0, 12.5)),
            Assessment(two.tracking_uid, two.number, Rejected(RejectReason.OTHER, "mucus plug")),
        ),
        added=(added,),
    )
    return sign_review(scene.ctx, READER, scene.facts.study_instance_uid, scene.job.id, draft)


def _fingerprint(scene: Scene) -> str:
    study_id = scene.client.find_study(scene.facts.study_instance_uid)
    assert study_id is not None
    return survey(scene.client, scene.client.study(study_id)).fingerprint.token


def test_signing_stores_a_verified_review_sr_and_seg_in_the_study(scene: Scene) -> None:
    fingerprint = _fingerprint(scene)
    review = _sign_first(scene)
    assert _fingerprint(scene) == fingerprint  # PreRead's own series: the study is not re-read
    assert review.version == 1 and review.stored_at is not None
    assert review.seg_series_uid is not None
    assert {review.sr_series_uid, review.seg_series_uid} <= _series_in_study(scene)

    sr = _instance(scene, review.sr_series_uid)
    path = _validate(scene, sr, "review-sr")
    assert (sr.CompletionFlag, sr.VerificationFlag) == ("COMPLETE", "VERIFIED")
    observer = sr.VerifyingObserverSequence[0]
    assert observer.VerifyingObserverName.family_name == READER.name
    assert observer.VerifyingOrganization == TENANT
    assert str(observer.VerificationDateTime).startswith(review.signed_at.strftime("%Y%m%d%H%M"))
    predecessors = [
        item.ReferencedSOPInstanceUID
        for study in sr.PredecessorDocumentsSequence
        for series in study.ReferencedSeriesSequence
        for item in series.ReferencedSOPSequence
    ]
    assert predecessors == [review.target.ai_sr_sop_instance_uid]
    dump = dsrdump(path, "+Pl")
    assert dump.returncode == 0, dump.stderr
    for expected in (
        "Modified by reader",
        "Rejected by reader",
        "Added by reader",
        "Reason for rejection",
        "mucus plug",
        "part-solid pulmonary nodule",
        "Reader nodule 1",
        "VERIFIED",
        READER.name,
    ):
        assert expected in dump.stdout, expected
    content = hd.sr.srread(path).content
    assert isinstance(content, hd.sr.MeasurementReport)
    groups = content.get_volumetric_roi_measurement_groups()
    assert {str(g.tracking_uid) for g in groups} == {
        *(a.tracking_uid for a in review.assessments),
        str(review.added[0].tracking_uid),
    }

    seg = _instance(scene, review.seg_series_uid)
    _validate(scene, seg, "review-seg")
    segments = hd.seg.Segmentation.from_dataset(seg)
    assert segments.get_segment_numbers() == [1, 2]
    modified, added = (segments.get_segment_description(n) for n in (1, 2))
    assert modified.tracking_uid == review.assessments[0].tracking_uid
    assert added.tracking_uid == review.added[0].tracking_uid
    assert added.segment_label.startswith("Reader nodule 1")
    assert added.algorithm_type.value == "SEMIAUTOMATIC"
    assert seg.ContentCreatorName.family_name == READER.name

    # recorded: the webhook message (no patient identifier) and the audit trail
    (message,) = WebhookStore(scene.ctx.store.engine).deliveries(TENANT, scene.hook_id)
    assert message.event_type == "preread.reviewed"
    assert message.payload["data"]["review_id"] == review.id
    assert scene.facts.patient_id not in str(message.payload)
    actions = [
        (r.event.action, r.event.outcome)
        for r in scene.ctx.audit.records(study_uid=scene.facts.study_instance_uid)
    ]
    assert (AuditAction.REVIEW_SIGN, Outcome.SUCCESS) in actions
    assert (AuditAction.RESULTS_STORE, Outcome.SUCCESS) in actions
    assert (AuditAction.PIXELS_FETCH, Outcome.SUCCESS) in actions

    # the reports show the verdicts
    study = scene.ctx.store.study(scene.facts.study_instance_uid)
    assert study is not None
    report = report_input(study, scene.job, review_out(review, current=True))
    doc = ReportOut(**dict(report.preread), review=report.review).model_dump(mode="json")
    assert doc["status"] == "preliminary"
    verdicts = [(a["label"], a["assessment"]) for a in doc["review"]["assessments"]]
    assert verdicts == [(1, "modified"), (2, "rejected")]
    assert doc["review"]["reviewer"]["name"] == READER.name
    assert doc["review"]["added"][0]["reader_placed"] is True
    bundle = Bundle.model_validate_json(to_fhir_bundle(report).model_dump_json())
    resources = [e.resource for e in bundle.entry or [] if e.resource is not None]
    kinds = [r.get_resource_type() for r in resources]
    assert kinds.count("Practitioner") == 1 and kinds.count("Provenance") == 1
    assert kinds.count("Observation") == 4  # 2 AI findings, 1 correction, 1 added
    diagnostic = next(r for r in resources if isinstance(r, DiagnosticReport))
    assert diagnostic.status == "preliminary"
    assert diagnostic.resultsInterpreter is not None
    assert diagnostic.resultsInterpreter[0].display == READER.name
    text = bundle.model_dump_json()
    for code in ("MODIFIED", "REJECTED", "ADDED", "74964007"):
        assert f'"{code}"' in text, code
    message_text = to_oru(report)
    parsed = parse_message(message_text, validation_level=VALIDATION_LEVEL.STRICT, find_groups=True)
    assert parsed.validate()
    assert "REVIEW-ASSESSMENT^Reader assessment of AI finding^99PRERD" in message_text
    assert "REJECTED^Rejected by reader^99PRERD" in message_text
    assert "|R1|" in message_text and READER.name in message_text
    page = to_html(report)
    assert f"Verified by {READER.name}" in page
    assert "modified: part-solid, long axis 15.0 mm, short axis 12.5 mm" in page
    assert "rejected: other, mucus plug" in page and "(added by the reader)" in page
    assert "Not reviewed yet." in to_html(report_input(study, scene.job))


def test_signed_reviews_become_a_deidentified_training_dataset_under_a_grant(
    scene: Scene,
) -> None:
    """``preread datasets build --from-reviews``'s function on the signed review: corrected and
    added nodules as positives (one SEG the training loader reads), the rejected finding as a
    hard negative; de-identified, versioned by content; a grant that no longer covers the
    study leaves it out of the next version."""
    from preread.datasets import (
        DatasetContext,
        DatasetError,
        DatasetRegistry,
        authorized_datasets,
        build_from_reviews,
    )
    from preread.datasets import diff as dataset_diff
    from preread.grants import GrantSpec, Purpose
    from preread.settings import Settings
    from preread.training_access import TrainingAccess
    from training.annotations import labelled, load_annotated_pairs
    from training.config import DataConfig, InputConfig
    from training.data import training_cases
    from training.review_samples import case_samples

    uid = scene.facts.study_instance_uid
    review = review_subject(scene.ctx, TENANT, uid).current or _sign_first(scene)
    settings = Settings(data_dir=scene.tmp / "data")
    now = datetime.now(UTC)
    training = GrantSpec(
        tenant=TENANT,
        purpose=Purpose.MODEL_TRAINING,
        valid_from=now - timedelta(minutes=1),
        valid_to=now + timedelta(days=1),
        legal_basis="synthetic phantom studies, no patient data",
        issued_by="tests",
    )
    grant = scene.grants.create(training)
    access = TrainingAccess.open(settings, scene.ctx.store)
    registry = DatasetRegistry(settings.datasets_path)
    ctx = DatasetContext(
        scene.ctx.store, scene.grants, scene.ctx.audit, scene.client, access, registry
    )

    def build(grant_id: str) -> tuple[object, bool]:
        result = build_from_reviews(
            ctx, tenant=TENANT, grant_id=grant_id, model_id=MODEL.id, created_by="cli:tests"
        )
        return result.manifest, result.new

    try:
        first, new = build(grant.id)
        assert new and first.ref == f"reviews-{TENANT}@1"  # type: ignore[attr-defined]
        manifest, folder = registry.resolve(f"reviews-{TENANT}")
        (case,) = manifest.cases
        assert (case.review_id, case.grant_id, case.reviewer) == (review.id, grant.id, "user-7")
        assert case.model == f"{MODEL.id}@{MODEL.version}"
        assert [(p.origin, p.reader_placed) for p in case.positives] == [
            ("ai-corrected", False),
            ("reader-added", True),
        ]
        assert case.positives[0].long_axis_mm == 15.0  # the reader's correction
        assert [n.reason for n in case.negatives] == ["other"]  # the free text is not copied
        # the training loader reads it: the SEG lies on the de-identified CT series
        (pair,) = load_annotated_pairs(folder / "cases", segment_filter=labelled("Nodule"))
        assert set(pair.label.segment_names.values()) == {"Nodule"}
        assert sorted(np.unique(pair.label.labels).tolist()) == [0, 1, 2]
        seg = pydicom.dcmread(pair.seg_path)
        assert case.case_id != uid and str(seg.StudyInstanceUID) == case.case_id
        for private in (scene.facts.patient_id, scene.facts.patient_name):
            assert private not in str(seg) and private not in (folder / "manifest.json").read_text()
        # the same content again: no new version; a grant that no longer covers the study
        # leaves it out of the next one
        assert build(grant.id)[1] is False and registry.versions(f"reviews-{TENANT}") == [1]
        ref = f"reviews-{TENANT}@1"
        assert [m.ref for m, _ in authorized_datasets([ref], registry, scene.grants)] == [ref]
        data = DataConfig(source="datasets", datasets=[ref], label_segments=["Nodule"])
        (trainable,) = training_cases(
            data, InputConfig(), scene.tmp / "cache", dataset_folders=[folder]
        )
        assert trainable.label.any()  # data.source: datasets trains on the positives
        # and the rejected finding is a hard negative for the false-positive classifier
        package = Registry(Path(__file__).resolve().parents[2] / "models").find("lung-nodule")
        samples = case_samples(
            folder / "cases" / case.case_id,
            [(p.centre_lps_mm, p.long_axis_mm) for p in case.positives],
            package.card.input,
            np.random.default_rng(0),
            copies=2,
        )
        assert [(s.positive, s.source) for s in samples] == [
            (False, "reader-rejected:other"),
            *[(True, "truth")] * 4,
        ]
        scene.grants.revoke(grant.id, by="tests", reason="consent withdrawn")
        with pytest.raises(DatasetError, match="not valid now"):
            build(grant.id)
        with pytest.raises(DatasetError, match=f"built under grant {grant.id}, which is no"):
            authorized_datasets([ref], registry, scene.grants)  # what preread train checks
        other = scene.grants.create(dataclasses.replace(training, study_uids=("1.2.3.4",)))
        second, new = build(other.id)
        assert new and not second.cases  # type: ignore[attr-defined]
        assert "lists other studies" in second.left_out[0].reason  # type: ignore[attr-defined]
        change = dataset_diff(manifest, registry.manifest(f"reviews-{TENANT}", 2))
        assert change.removed == (case.case_id,) and not change.added
    finally:
        access.close()
    included = [
        r.event
        for r in scene.ctx.audit.records(study_uid=uid)
        if r.event.action is AuditAction.DATASET_INCLUDE
    ]
    assert [e.detail["grant_id"] for e in included] == [grant.id, grant.id]


def test_a_second_review_supersedes_the_first(scene: Scene) -> None:
    subject = review_subject(scene.ctx, TENANT, scene.facts.study_instance_uid)
    first = subject.current or _sign_first(scene)
    draft = ReviewDraft(
        tuple(Assessment(f.tracking_uid, f.number, Accepted()) for f in subject.target.findings)
    )
    second = sign_review(
        scene.ctx, READER, scene.facts.study_instance_uid, scene.job.id, draft, replaces=first.id
    )
    assert (second.version, second.supersedes, second.seg_sop_instance_uid) == (2, first.id, None)
    sr = _instance(scene, second.sr_series_uid)
    _validate(scene, sr, "review-sr-2")
    predecessors = {
        item.ReferencedSOPInstanceUID
        for study in sr.PredecessorDocumentsSequence
        for series in study.ReferencedSeriesSequence
        for item in series.ReferencedSOPSequence
    }
    assert predecessors == {second.target.ai_sr_sop_instance_uid, first.sr_sop_instance_uid}
    assert first.sr_series_uid in _series_in_study(scene)  # never overwritten
    assert [r.id for r in scene.ctx.reviews.history(TENANT, scene.facts.study_instance_uid)] == [
        second.id,
        first.id,
    ]


def test_a_review_orthanc_did_not_take_is_stored_by_the_next_sweep(scene: Scene) -> None:
    """Orthanc away at signing: the review is recorded (the reader's work is not lost), the
    error says so, and the service's reconcile sweep (store_unstored) stores its SR later."""
    uid = scene.facts.study_instance_uid
    subject = review_subject(scene.ctx, TENANT, uid)
    draft = ReviewDraft(
        tuple(Assessment(f.tracking_uid, f.number, Accepted()) for f in subject.target.findings)
    )
    away = OrthancClient("http://127.0.0.1:9", "preread", "x", timeout=2.0)  # nothing listens
    offline = dataclasses.replace(scene.ctx, source=away)
    replaces = None if subject.current is None else subject.current.id
    with pytest.raises(ReviewNotStoredError) as refused:
        sign_review(offline, READER, uid, scene.job.id, draft, replaces=replaces)
    review = refused.value.review
    assert [r.id for r in scene.ctx.reviews.unstored()] == [review.id]
    assert review.sr_series_uid not in _series_in_study(scene)
    assert store_unstored(offline) == 0  # still away: kept for the next sweep
    assert store_unstored(scene.ctx) == 1
    assert review.sr_series_uid in _series_in_study(scene)
    assert scene.ctx.reviews.unstored() == []


def test_a_revoked_grant_refuses_and_stores_nothing(scene: Scene) -> None:
    uid = scene.facts.study_instance_uid
    before_series = _series_in_study(scene)
    before = scene.ctx.reviews.history(TENANT, uid)
    current = scene.ctx.reviews.current(TENANT, uid, MODEL.id)
    scene.grants.revoke(scene.grant_id, by="tests", reason="consent withdrawn")
    draft = ReviewDraft(
        tuple(
            Assessment(f.tracking_uid, f.number, Accepted())
            for f in review_subject(scene.ctx, TENANT, uid).target.findings
        )
    )
    with pytest.raises(NotAuthorizedError, match="revoked"):
        sign_review(
            scene.ctx,
            READER,
            uid,
            scene.job.id,
            draft,
            replaces=None if current is None else current.id,
        )
    assert scene.ctx.reviews.history(TENANT, uid) == before
    assert _series_in_study(scene) == before_series
    refused = [
        r.event
        for r in scene.ctx.audit.records(study_uid=uid)
        if r.event.action is AuditAction.REVIEW_SIGN and r.event.outcome is Outcome.REFUSED
    ]
    assert len(refused) == 1 and "revoked" in str(refused[0].detail["reason"])
    assert refused[0].actor == f"user:{READER.user_id}"
