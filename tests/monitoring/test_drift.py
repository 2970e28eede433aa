"""Monitoring on a real job store: readings of one model version by a tenant's scanners, then a
noisier "new scanner" arrives. Each reading's input statistics are measured on real phantom
volumes (the train profile for the usual scanners, the robustness profile — noisier, thicker
slices, other kernels — for the new one); the SPC rule must raise the alert within a bounded
number of studies, send the tenant's webhook and show in the metrics, and never during the
baseline."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest
from pydicom.dataset import Dataset

from preread.api.metrics import ApiMetrics
from preread.audit import AuditLog
from preread.domain import ModelRef
from preread.monitoring.acquisition import Acquisition, acquisition_of
from preread.monitoring.monitor import ALERT_EVENT, open_alerts, points, summary, watch
from preread.monitoring.spc import Rule
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
    JobStore,
    StudyFingerprint,
)
from preread.webhooks.outbox import WebhookStore
from tests.study_support import finding, finish_reading, read_study, recorded_study
from training.phantoms import generate_phantom

MODEL = ModelRef("lung-nodule", "2.6.0", "PreRead Lung Nodule", "ab" * 32)
TENANT = "hosp-a"
DETECTION_BOUND = 8
"""The alert must fire within this many studies of the new scanner (measured: 5, the SPC
window, on these phantoms)."""


@pytest.fixture(scope="module")
def acquisitions() -> tuple[list[Acquisition], list[Acquisition]]:
    """Input statistics of six usual-scanner phantoms and three new-scanner ones."""

    def measured(seed: int, profile: str, maker: str) -> Acquisition:
        phantom = generate_phantom(seed, matrix=128, max_slices=24, profile=profile)  # type: ignore[arg-type]
        assert phantom.scanner is not None
        header = Dataset()
        header.Manufacturer = maker
        header.ManufacturerModelName = "CT-1" if maker == "UsualCo" else "CT-NEW"
        header.ConvolutionKernel = phantom.scanner.kernel
        header.SliceThickness = phantom.scanner.thickness
        return acquisition_of(header, phantom.volume)

    usual = [measured(s, "train", "UsualCo") for s in range(6)]
    new = [measured(s, "robustness", "NewCo") for s in range(3)]
    return usual, new


def read(store: JobStore, acquisition: Acquisition, findings: int, *, tenant: str = TENANT) -> str:
    """One study of ``tenant`` read by :data:`MODEL`, its series as ``acquisition`` says."""
    facts = recorded_study(store, tenant)
    job = store.enqueue(
        facts.study_instance_uid, facts.orthanc_study_id, MODEL, StudyFingerprint(5, "x")
    ).job
    found = [finding(n, centre=(10.0 * n, 0.0, -100.0)) for n in range(1, findings + 1)]
    return finish_reading(store, job, MODEL, found, acquisition=acquisition.to_json()).id


def test_a_noisier_new_scanner_raises_an_alert_within_a_bounded_number_of_studies(
    store: JobStore, acquisitions: tuple[list[Acquisition], list[Acquisition]]
) -> None:
    usual, new = acquisitions

    def mean(group: list[Acquisition]) -> float:
        return sum(a.noise_hu or 0.0 for a in group) / len(group)

    assert mean(new) > mean(usual) + 10  # the usual scanners' noise varies too (15-43 HU)
    hook, _ = WebhookStore(store.engine).create(TENANT, "https://ris.example.org/hooks")
    reviews, audit = ReviewStore(store), AuditLog(store.engine)
    reader = Reviewer("user-1", "Dr Ada", TENANT)
    for n in range(30):  # the baseline: the usual scanners; a reader reviews a few readings
        job_id = read(store, usual[n % len(usual)], findings=1 + n % 3)
        if n % 10 == 0:
            study = store.study(store.get(job_id).study_instance_uid)
            assert study is not None
            target = review_target(study, store.get(job_id))
            verdicts: list[Accepted | Rejected] = [
                Accepted(),
                Rejected(RejectReason.VESSEL),
                Accepted(),
            ]
            draft = ReviewDraft(
                tuple(Assessment(f.tracking_uid, f.number, verdicts[i])
                      for i, f in enumerate(target.findings))
            )  # fmt: skip
            reviews.sign(target, reader, draft, replaces=None, at=datetime.now(UTC), audit=audit,
                         grant_id="g")  # fmt: skip
        assert watch(store, datetime.now(UTC)) == ([], [])  # no false alarm

    delay = None
    for n in range(DETECTION_BOUND):  # the new scanner
        read(store, new[n % len(new)], findings=2)
        raised, _ = watch(store, datetime.now(UTC))
        if any(a.metric == "noise_hu" for a in raised):
            delay = n + 1
            break
    assert delay is not None, f"no noise alert within {DETECTION_BOUND} new-scanner studies"
    (noise,) = [a for a in open_alerts(store, TENANT) if a.metric == "noise_hu"]
    assert noise.group.startswith("NewCo / CT-NEW") and noise.z > 3
    assert (noise.model_id, noise.version) == (MODEL.id, MODEL.version)
    # the tenant's webhook got it, with no patient data; the gauge counts it
    sent = [
        d for d in WebhookStore(store.engine).deliveries(TENANT, hook.id)
        if d.event_type == ALERT_EVENT
    ]  # fmt: skip
    assert [d.payload["data"]["metric"] for d in sent if d.payload["data"]["metric"] == "noise_hu"]
    assert "DOE" not in str(sent)
    metrics = ApiMetrics()
    metrics.watch_alerts(lambda: [(a.model_id, a.version, a.metric) for a in open_alerts(store)])
    assert (
        'preread_monitoring_alerts_open{metric="noise_hu",model="lung-nodule",version="2.6.0"} 1.0'
        in metrics.render().decode()
    )
    # the page's figures: per acquisition group (maker / model / kernel / thickness band), the
    # review figures and the inputs
    groups = summary(points(store, TENANT, MODEL.id, "2.6.0"))
    usual_groups = [g for g in groups if g.group.startswith("UsualCo")]
    new_groups = [g for g in groups if g.group.startswith("NewCo")]
    assert usual_groups and new_groups and len(usual_groups) + len(new_groups) == len(groups)
    assert sum(g.reviewed for g in usual_groups) == 3
    reviewed = [g for g in usual_groups if g.reviewed]
    assert all(g.acceptance_rate is not None and "vessel" in g.rejected_per_scan for g in reviewed)
    assert min(g.means["noise_hu"] for g in new_groups) > 35
    print(f"drift detected after {delay} new-scanner studies (z = {noise.z:.1f})")


def test_an_alert_on_a_version_in_shadow_sends_no_webhook(store: JobStore) -> None:
    """Nothing about a shadow reading leaves PreRead: its alert is recorded (page, gauge), the
    tenant's webhook gets nothing."""
    hook, _ = WebhookStore(store.engine).create(TENANT, "https://ris.example.org/hooks")
    usual = Acquisition("UsualCo", "CT-1", "B30f", 1.0, "<=1.25 mm", 20.0, 0.3, (0.125,) * 8)
    for noise in (20.0, 21.0, 19.5, 60.0):
        facts = recorded_study(store, TENANT)
        acquisition = dataclasses.replace(usual, noise_hu=noise).to_json()
        read_study(store, facts, MODEL, [finding(1)], shadow=True, acquisition=acquisition)
    raised, _ = watch(store, datetime.now(UTC), Rule(baseline=3, window=1))
    assert "noise_hu" in {a.metric for a in raised}
    assert [a.metric for a in open_alerts(store, TENANT)] == [a.metric for a in raised]
    assert WebhookStore(store.engine).deliveries(TENANT, hook.id) == []
