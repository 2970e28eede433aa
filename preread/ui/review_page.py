"""What ``review.html`` shows of a study under review: its findings with their measurements
and key image links, the reader's choices so far, the current review and what went wrong."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from preread.domain import Vec3
from preread.reports.json import FindingOut
from preread.reviews import RejectReason, Review, ReviewSubject
from preread.reviews.domain import NODULE_TYPES
from preread.ui.planes import Plane
from preread.ui.review_form import Choice

__all__ = ["REASONS", "FindingView", "ReasonView", "page_context", "point_text"]


@dataclass(frozen=True)
class ReasonView:
    value: str
    label: str
    key: str
    """The digit that picks it after ``r``."""


REASONS: tuple[ReasonView, ...] = tuple(
    ReasonView(reason.value, label, str(n))
    for n, (reason, label) in enumerate(
        [
            (RejectReason.VESSEL, "Vessel"),
            (RejectReason.SCAR_FIBROSIS, "Scar / fibrosis"),
            (RejectReason.LYMPH_NODE, "Lymph node"),
            (RejectReason.BONE, "Bone"),
            (RejectReason.ARTEFACT, "Artefact"),
            (RejectReason.OTHER, "Other (say what)"),
        ],
        start=1,
    )
)


@dataclass(frozen=True)
class FindingView:
    """One AI finding as the page lists it."""

    number: int
    tracking_uid: str
    title: str
    size: str
    probability: str
    rows: tuple[tuple[str, str], ...]
    images: tuple[tuple[str, str], ...]
    """(plane, URL) of its key images."""


@dataclass(frozen=True)
class AddedView:
    """A nodule added by the current review (kept in a new one unless unticked)."""

    tracking_uid: str
    number: int
    text: str


def _mm(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} mm"


def finding_view(uid: str, f: FindingOut) -> FindingView:
    kind = f.nodule_type or "untyped"
    side = f" {f.lung_side} lung" if f.lung_side else ""
    size = f.axial_long_axis_mm if f.axial_long_axis_mm is not None else f.long_axis_mm
    rows: list[tuple[str, str]] = [
        ("Type", kind),
        ("Probability", f"{100 * f.probability:.1f} %"),
        ("Long axis (axial)", _mm(f.axial_long_axis_mm)),
        ("Short axis (axial)", _mm(f.short_axis_mm)),
        ("Mean diameter", _mm(f.mean_diameter_mm)),
        ("Long axis (3-D)", _mm(f.long_axis_mm)),
        ("Volume", f"{f.volume_mm3:.0f} mm³"),
        ("Mean attenuation", f"{f.mean_hu:.0f} HU"),
    ]
    if f.solid_component_long_axis_mm is not None:
        rows.append(("Solid component", _mm(f.solid_component_long_axis_mm)))
    rows.append(("Centre (LPS)", point_text(f.center_lps_mm) + " mm"))
    base = f"/ui/studies/{uid}/key-images"
    return FindingView(
        number=f.label,
        tracking_uid=f.tracking_uid,
        title=f"{kind.capitalize()} nodule{side}",
        size=f"{size:.1f} mm",
        probability=f"{100 * f.probability:.0f} %",
        rows=tuple(rows),
        images=tuple((p.value, f"{base}/{p.value}.png?finding={f.label}") for p in Plane),
    )


def point_text(point: Vec3) -> str:
    return ", ".join(f"{v:.1f}" for v in point)


@dataclass(frozen=True)
class ReviewSummary:
    id: str
    version: int
    reviewer: str
    signed_at: str
    counts: str
    stored: bool


def summary(review: Review | None) -> ReviewSummary | None:
    if review is None:
        return None
    counts = (
        f"{review.count('accepted')} accepted, {review.count('rejected')} rejected, "
        f"{review.count('modified')} corrected, {len(review.added)} added"
    )
    return ReviewSummary(
        id=review.id,
        version=review.version,
        reviewer=review.reviewer.name,
        signed_at=review.signed_at.strftime("%Y-%m-%d %H:%M UTC"),
        counts=counts,
        stored=review.stored_at is not None,
    )


def same_reading(subject: ReviewSubject) -> bool:
    """Whether the current review is of the reading under review (a review of an earlier
    reading is replaced, but its verdicts and nodules do not carry over)."""
    return subject.current is not None and subject.current.target.job_id == subject.job.id


def page_context(
    subject: ReviewSubject,
    *,
    choices: Mapping[int, Choice],
    clicks: Sequence[str] = (),
    keep: Sequence[str] | None = None,
    replaces: str | None = None,
    error: str | None = None,
    conflict: str | None = None,
    signed: str | None = None,
) -> dict[str, Any]:
    """The template context of ``review.html``. ``keep``: the current review's added nodules
    still ticked (None: all); ``replaces``: the review a signature supersedes (default: the
    current one); ``signed``: the id of a review just signed (a confirmation is shown)."""
    facts = subject.study.facts
    uid = facts.study_instance_uid
    current = subject.current
    findings = [
        finding_view(uid, f) for f in sorted(subject.preread.findings, key=lambda f: f.label)
    ]
    previous = []
    if current is not None and same_reading(subject):
        for n, added in enumerate(current.added, start=1):
            text = (
                f"{added.nodule_type}, {added.long_axis_mm:.1f} × {added.short_axis_mm:.1f} mm, "
                f"{added.volume_mm3:.0f} mm³ at {point_text(added.centre_lps_mm)} mm"
            )
            previous.append(AddedView(added.tracking_uid or "", n, text))
    model = subject.preread.model
    date = facts.study_date
    return {
        "uid": uid,
        "facts": facts,
        "study_date": f"{date[:4]}-{date[4:6]}-{date[6:]}" if len(date) == 8 else date,
        "patient": facts.patient_name.replace("^", " ").strip() or "(no name)",
        "model": f"{model.id} {model.version}",
        "job_id": subject.job.id,
        "replaces": replaces if replaces is not None else (current.id if current else ""),
        "findings": findings,
        "choices": choices,
        "empty": Choice(),
        "reasons": REASONS,
        "types": NODULE_TYPES,
        "current": summary(current),
        "signed": signed is not None and current is not None and current.id == signed,
        "previous_added": previous,
        "keep": None if keep is None else set(keep),
        "clicks": list(clicks),
        "error": error,
        "conflict": conflict,
    }
