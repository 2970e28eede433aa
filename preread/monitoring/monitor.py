"""Every model version in use, watched per tenant (issue 15, item 4).

Each finished reading (real or in shadow) gives one point per metric: the input statistics of
the series it read (:mod:`.acquisition`: noise, slice thickness, the lungs' mean HU), what the
model found (findings per scan, their mean probability) and, once a radiologist reviewed it,
what the reader said (rejected findings per scan, reader-added nodules per scan, the share of
findings accepted or corrected). :func:`watch` runs the SPC rule (:mod:`.spc`) over each
tenant's newest points of each version and metric: a new out-of-control signal raises an alert
(a ``monitoring_alerts`` row and — unless the version reads in shadow — a
``preread.monitoring.alert`` webhook message in the same transaction; the
``preread_monitoring_alerts_open`` gauge counts the open ones); an alert whose metric is back
in control is cleared. :func:`summary` is what ``/ui/monitoring`` shows: per
version and acquisition group, the review figures and the input statistics, with each metric's
recent points for the plots.
"""

from __future__ import annotations

import itertools
import logging
import statistics
import uuid
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from preread.monitoring.acquisition import LUNG_BANDS_HU
from preread.monitoring.spc import Rule, Signal, check
from preread.reviews import Accepted, Modified, Rejected, Review, ReviewStore
from preread.store import JobState, JobStore
from preread.store.schema import JobRow, MonitoringAlertRow, StudyRow
from preread.webhooks.outbox import enqueue_event, iso_utc

__all__ = [
    "ALERT_EVENT",
    "METRICS",
    "Alert",
    "GroupSummary",
    "Point",
    "monitor_round",
    "open_alerts",
    "points",
    "summary",
    "versions_in_use",
    "watch",
]

ALERT_EVENT = "preread.monitoring.alert"
METRICS: Mapping[str, str] = {
    "noise_hu": "image noise (HU, soft tissue)",
    "slice_thickness_mm": "slice thickness (mm)",
    "lung_mean_hu": "mean lung attenuation (HU)",
    "findings_per_scan": "findings per scan",
    "mean_probability": "mean probability of the findings",
    "rejected_per_scan": "findings rejected per reviewed scan",
    "added_per_scan": "nodules added by the reader per reviewed scan",
    "acceptance_rate": "share of findings accepted or corrected",
}
log = logging.getLogger(__name__)
HISTORY = 200
"""How many of a version's newest readings per tenant are looked at."""
_BAND_MIDS = [(a + b) / 2 for a, b in itertools.pairwise(LUNG_BANDS_HU)]


@dataclass(frozen=True)
class Point:
    """One finished reading as monitoring sees it."""

    job_id: str
    finished_at: datetime
    model_id: str
    version: str
    shadow: bool
    group: str
    values: Mapping[str, float]
    probabilities: tuple[float, ...] = ()
    rejected_reasons: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Alert:
    id: str
    tenant: str
    model_id: str
    version: str
    metric: str
    group: str
    raised_at: datetime
    recent_mean: float
    baseline_mean: float
    baseline_sd: float
    z: float
    cleared_at: datetime | None = None

    def payload(self) -> dict[str, Any]:
        """The webhook message (no patient data: which version, which metric, how far)."""
        return {
            "type": ALERT_EVENT,
            "timestamp": iso_utc(self.raised_at),
            "data": {
                "alert_id": self.id,
                "model": {"id": self.model_id, "version": self.version},
                "metric": self.metric,
                "metric_meaning": METRICS[self.metric],
                "acquisition_group": self.group,
                "recent_mean": round(self.recent_mean, 4),
                "baseline_mean": round(self.baseline_mean, 4),
                "baseline_sd": round(self.baseline_sd, 4),
                "z": round(self.z, 2),
                "links": {"monitoring": "/ui/monitoring"},
            },
        }


def points(
    store: JobStore, tenant: str, model_id: str, version: str, *, limit: int = HISTORY
) -> list[Point]:
    """The version's newest ``limit`` finished readings of ``tenant``'s studies, oldest first,
    with the signed reviews of the real ones."""
    with store.transaction() as tx:
        rows = tx.session.scalars(
            select(JobRow)
            .join(StudyRow, StudyRow.study_instance_uid == JobRow.study_instance_uid)
            .where(
                StudyRow.tenant == tenant,
                JobRow.model_id == model_id,
                JobRow.model_version == version,
                JobRow.state.in_([JobState.DONE.value, JobState.SUPERSEDED.value]),
                JobRow.finished_at.is_not(None),
                JobRow.result.is_not(None),
            )
            .order_by(JobRow.finished_at.desc(), JobRow.id)
            .limit(limit)
        ).all()
        jobs = [
            (r.id, r.finished_at, bool(r.shadow), dict(r.result or {}), r.acquisition)
            for r in reversed(rows)
            if r.finished_at is not None
        ]
    if not jobs:
        return []
    reviews: dict[str, Review] = {}
    first = jobs[0][1]
    for review in ReviewStore(store).signed(tenant, since=first, model_id=model_id):
        reviews[review.target.job_id] = review  # oldest first: the newest one stays
    return [
        _point(job_id, at, model_id, version, shadow, result, acquisition, reviews.get(job_id))
        for job_id, at, shadow, result, acquisition in jobs
    ]


def _point(
    job_id: str,
    at: datetime,
    model_id: str,
    version: str,
    shadow: bool,
    result: Mapping[str, Any],
    acquisition: Mapping[str, Any] | None,
    review: Review | None,
) -> Point:
    values: dict[str, float] = {}
    group = "?"
    if acquisition:
        group = str(acquisition.get("group") or "?")
        if acquisition.get("noise_hu") is not None:
            values["noise_hu"] = float(acquisition["noise_hu"])
        values["slice_thickness_mm"] = float(acquisition.get("slice_thickness_mm") or 0.0)
        histogram = acquisition.get("lung_histogram") or []
        if sum(histogram) > 0:
            values["lung_mean_hu"] = sum(m * f for m, f in zip(_BAND_MIDS, histogram, strict=False))
    findings = [f for f in result.get("findings") or [] if isinstance(f, Mapping)]
    probabilities = tuple(float(f.get("probability", 0.0)) for f in findings)
    values["findings_per_scan"] = float(len(findings))
    if probabilities:
        values["mean_probability"] = statistics.fmean(probabilities)
    reasons: Counter[str] = Counter()
    if review is not None:
        verdicts = [a.verdict for a in review.assessments]
        kept = sum(isinstance(v, Accepted | Modified) for v in verdicts)
        for v in verdicts:
            if isinstance(v, Rejected):
                reasons[v.reason.value] += 1
        values["rejected_per_scan"] = float(sum(reasons.values()))
        values["added_per_scan"] = float(len(review.added))
        if verdicts:
            values["acceptance_rate"] = kept / len(verdicts)
    return Point(job_id, at, model_id, version, shadow, group, values, probabilities, reasons)


def watch(
    store: JobStore, now: datetime, rule: Rule | None = None
) -> tuple[list[Alert], list[Alert]]:
    """One monitoring round over every tenant's versions in use: the alerts raised and cleared."""
    rule = rule or Rule()
    raised: list[Alert] = []
    cleared: list[Alert] = []
    for tenant, model_id, version in versions_in_use(store):
        series = points(store, tenant, model_id, version)
        with store.transaction() as tx:  # one per version: its metrics' alerts together
            for metric in METRICS:
                values = [p.values[metric] for p in series if metric in p.values]
                recent = [p for p in series if metric in p.values][-rule.window :]
                signal = check(values, rule)
                key = (tenant, model_id, version, metric)
                current = _open(tx.session, key)
                if signal is not None and current is None:
                    group = Counter(p.group for p in recent).most_common(1)[0][0]
                    shadow = all(p.shadow for p in recent)
                    alert = _raise(tx.session, key, group, signal, now, announce=not shadow)
                    raised.append(alert)
                elif (
                    signal is None
                    and current is not None
                    and len(values) >= (rule.baseline + rule.window)
                ):
                    current.cleared_at = now
                    cleared.append(_alert(current))
    return raised, cleared


def monitor_round(store: JobStore) -> None:
    """:func:`watch` now, logging each alert raised or cleared (what the service's and the
    scale-out leader's reconcile call)."""
    raised, cleared = watch(store, datetime.now(UTC))
    for a in raised:
        log.warning(
            "monitoring alert: %s %s, tenant %s: %s %.3g (baseline %.3g +/- %.3g, z %.1f), "
            "acquisition group %s",
            a.model_id, a.version, a.tenant, a.metric, a.recent_mean, a.baseline_mean,
            a.baseline_sd, a.z, a.group,
        )  # fmt: skip
    for a in cleared:
        log.info("monitoring alert cleared: %s %s, tenant %s: %s", a.model_id, a.version,
                 a.tenant, a.metric)  # fmt: skip


def open_alerts(store: JobStore, tenant: str | None = None) -> list[Alert]:
    with store.transaction() as tx:
        stmt = select(MonitoringAlertRow).where(MonitoringAlertRow.cleared_at.is_(None))
        if tenant is not None:
            stmt = stmt.where(MonitoringAlertRow.tenant == tenant)
        rows = tx.session.scalars(stmt.order_by(MonitoringAlertRow.raised_at.desc())).all()
        return [_alert(r) for r in rows]


def recent_alerts(store: JobStore, tenant: str, limit: int = 50) -> list[Alert]:
    with store.transaction() as tx:
        rows = tx.session.scalars(
            select(MonitoringAlertRow)
            .where(MonitoringAlertRow.tenant == tenant)
            .order_by(MonitoringAlertRow.raised_at.desc())
            .limit(limit)
        ).all()
        return [_alert(r) for r in rows]


@dataclass(frozen=True)
class GroupSummary:
    """One model version's readings of one acquisition group, for the monitoring page."""

    model_id: str
    version: str
    shadow: bool
    group: str
    studies: int
    reviewed: int
    acceptance_rate: float | None
    rejected_per_scan: Mapping[str, float]
    added_per_scan: float | None
    probability_histogram: tuple[int, ...]
    """Findings per probability decile."""
    means: Mapping[str, float]


def summary(series: Sequence[Point]) -> list[GroupSummary]:
    """Per version and acquisition group: the figures the page shows."""
    by: dict[tuple[str, str, bool, str], list[Point]] = defaultdict(list)
    for p in series:
        by[(p.model_id, p.version, p.shadow, p.group)].append(p)
    out = []
    for (model_id, version, shadow, group), pts in sorted(by.items()):
        reviewed = [p for p in pts if "rejected_per_scan" in p.values]
        reasons: Counter[str] = Counter()
        for p in reviewed:
            reasons.update(p.rejected_reasons)
        histogram = [0] * 10
        for p in pts:
            for prob in p.probabilities:
                histogram[min(int(prob * 10), 9)] += 1
        rates = [p.values["acceptance_rate"] for p in reviewed if "acceptance_rate" in p.values]
        out.append(
            GroupSummary(
                model_id=model_id,
                version=version,
                shadow=shadow,
                group=group,
                studies=len(pts),
                reviewed=len(reviewed),
                acceptance_rate=statistics.fmean(rates) if rates else None,
                rejected_per_scan={r: n / len(reviewed) for r, n in sorted(reasons.items())},
                added_per_scan=(
                    statistics.fmean(p.values["added_per_scan"] for p in reviewed)
                    if reviewed
                    else None
                ),
                probability_histogram=tuple(histogram),
                means={
                    m: statistics.fmean(vals)
                    for m in METRICS
                    if (vals := [p.values[m] for p in pts if m in p.values])
                },
            )
        )
    return out


def versions_in_use(store: JobStore) -> list[tuple[str, str, str]]:
    with store.transaction() as tx:
        rows = tx.session.execute(
            select(StudyRow.tenant, JobRow.model_id, JobRow.model_version)
            .join(StudyRow, StudyRow.study_instance_uid == JobRow.study_instance_uid)
            .where(JobRow.state == JobState.DONE.value, StudyRow.tenant.is_not(None))
            .distinct()
        ).all()
    return sorted((str(t), str(m), str(v)) for t, m, v in rows)


def _open(session: Session, key: tuple[str, str, str, str]) -> MonitoringAlertRow | None:
    tenant, model_id, version, metric = key
    return session.scalars(
        select(MonitoringAlertRow)
        .where(
            MonitoringAlertRow.tenant == tenant,
            MonitoringAlertRow.model_id == model_id,
            MonitoringAlertRow.model_version == version,
            MonitoringAlertRow.metric == metric,
            MonitoringAlertRow.cleared_at.is_(None),
        )
        .with_for_update()
    ).first()


def _raise(
    session: Session,
    key: tuple[str, str, str, str],
    group: str,
    signal: Signal,
    now: datetime,
    *,
    announce: bool,
) -> Alert:
    """Record the alert; ``announce``: also queue the tenant's webhook message (not for a
    version in shadow: nothing about a shadow reading leaves PreRead; the page and the gauge
    show it)."""
    tenant, model_id, version, metric = key
    row = MonitoringAlertRow(
        id=str(uuid.uuid4()),
        tenant=tenant,
        model_id=model_id,
        model_version=version,
        metric=metric,
        acquisition_group=group[:255],
        raised_at=now,
        recent_mean=signal.recent_mean,
        baseline_mean=signal.baseline_mean,
        baseline_sd=signal.baseline_sd,
        z=signal.z,
    )
    session.add(row)
    session.flush()
    alert = _alert(row)
    if announce:
        enqueue_event(
            session, tenant=tenant, event_type=ALERT_EVENT, payload=alert.payload(), now=now
        )
    return alert


def _alert(row: MonitoringAlertRow) -> Alert:
    return Alert(
        id=row.id,
        tenant=row.tenant,
        model_id=row.model_id,
        version=row.model_version,
        metric=row.metric,
        group=row.acquisition_group,
        raised_at=row.raised_at,
        recent_mean=row.recent_mean,
        baseline_mean=row.baseline_mean,
        baseline_sd=row.baseline_sd,
        z=row.z,
        cleared_at=row.cleared_at,
    )
