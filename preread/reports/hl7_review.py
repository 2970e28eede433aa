"""The radiologist's review in the HL7 v2.5.1 ORU^R01 (:mod:`preread.reports.hl7`).

After the AI's OBXs, when the reading was reviewed (every OBX: -11 ``P`` like the rest — the
final report is the hospital's —, -14 the signing time, -16 the reviewer as ``user id^name``,
no -18 equipment: a person observed these):

=========  =====================================================================================
sub-id     OBX
=========  =====================================================================================
(none)     ST ``REVIEW^Reader review of AI result^99PRERD``: "Reviewed by <name> (review
           version n): 2 accepted, 1 rejected, 0 corrected, 1 nodule(s) added"
n          per AI finding n (its OBX-4, as the AI's OBXs of it): CWE
           ``REVIEW-ASSESSMENT^Reader assessment of AI finding^99PRERD`` =
           ``ACCEPTED^Accepted by reader^99PRERD`` / REJECTED / MODIFIED; a rejection adds CWE
           ``REJECTION-REASON^Reason for rejection^99PRERD`` = ``59820001^Blood vessel
           structure (body structure)^SCT`` …, and ST ``121106^Comment^DCM`` = the reader's
           words when given
n.1        a correction of AI finding n (a sub-id of its own, so that the reader's sizes never
           share OBX-3 and OBX-4 with the AI's): CWE solidness descriptor = the reader's type,
           NM ``AXIAL-LONG-AXIS…^99PRERD`` / ``103340004^Short axis^SCT`` [mm]
Rk         added nodule k: CWE REVIEW-ASSESSMENT = ``ADDED^Added by reader^99PRERD``, NM axial
           long axis, short axis, average diameter, 3-D long axis [mm], volume [mm3], mean
           attenuation [HU], CWE solidness descriptor, ST ``128138^Center of Mass^DCM`` = the
           LPS centre
=========  =====================================================================================

The codes are the review SR's (:mod:`preread.reports.review_codes`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC
from typing import Literal

from pydicom.sr.coding import Code

from preread.domain import FindingConcept
from preread.reports import codes, review_codes
from preread.reports import hl7 as base  # hl7 imports this module only when it renders
from preread.reports.review import AddedOut, AssessmentOut, ReviewOut

__all__ = ["review_obxs"]

_REVIEW = base._Coded.of(review_codes.REVIEW)
_ASSESSMENT = base._Coded.of(review_codes.ASSESSMENT)
_REASON = base._Coded.of(review_codes.REJECTION_REASON)
_COMMENT = base._Coded.of(codes.COMMENT)
_Kind = Literal["accepted", "rejected", "modified", "added"]
_Factory = Callable[..., base._Obx]


def review_obxs(review: ReviewOut, concept: FindingConcept) -> list[base._Obx]:
    """The OBXs of ``review`` (see the module docstring), after the AI's."""
    signed = base._dtm(review.signed_at.astimezone(UTC), "OBX-14 (review signed)")
    person = (review.reviewer.id, review.reviewer.name)

    def obx(
        value_type: str,
        name: base._Coded,
        value: tuple[str, ...],
        sub_id: str = "",
        units: base._Coded | None = None,
    ) -> base._Obx:
        return base._Obx(
            value_type,
            name,
            (value,),
            sub_id,
            units,
            observed=signed,
            responsible=person,
            by_device=False,
        )

    out = [obx("ST", _REVIEW, (_summary(review, concept),))]
    for a in sorted(review.assessments, key=lambda a: a.label):
        out.extend(_assessed(a, obx))
    for n in review.added:
        out.extend(_added(n, obx))
    return out


def _verdict(kind: _Kind) -> tuple[str, ...]:
    return base._Coded.of(review_codes.ASSESSMENTS[kind]).components()


def _assessed(a: AssessmentOut, obx: _Factory) -> list[base._Obx]:
    sub = str(a.label)
    out = [obx("CWE", _ASSESSMENT, _verdict(a.assessment), sub)]
    if a.reason is not None:
        reason = base._Coded.of(review_codes.REJECTION_REASONS[a.reason])
        out.append(obx("CWE", _REASON, reason.components(), sub))
        if a.reason_text:
            out.append(obx("ST", _COMMENT, (a.reason_text,), sub))
    corrected = f"{sub}.1"
    if a.nodule_type is not None:
        kind = base._Coded.of(codes.NODULE_TYPES[a.nodule_type]).components()
        out.append(obx("CWE", base._NODULE_TYPE, kind, corrected))
    for name, value in (
        (codes.AXIAL_LONG_AXIS, a.axial_long_axis_mm),
        (codes.SHORT_AXIS, a.short_axis_mm),
    ):
        if value is not None:
            number = base._nm(value, 2, name, corrected)
            out.append(obx("NM", base._Coded.of(name), (number,), corrected, base._MM))
    return out


def _added(n: AddedOut, obx: _Factory) -> list[base._Obx]:
    sub = f"R{n.number}"

    def number(name: Code, value: float, digits: int, units: base._Coded) -> base._Obx:
        return obx("NM", base._Coded.of(name), (base._nm(value, digits, name, sub),), sub, units)

    centre = " ".join(
        f"{axis}={base._nm(v, 2, codes.CENTER_OF_MASS, sub)}"
        for axis, v in zip("xyz", n.center_lps_mm, strict=True)
    )
    kind = base._Coded.of(codes.NODULE_TYPES[n.nodule_type]).components()
    return [
        obx("CWE", _ASSESSMENT, _verdict("added"), sub),
        number(codes.AXIAL_LONG_AXIS, n.axial_long_axis_mm, 2, base._MM),
        number(codes.SHORT_AXIS, n.short_axis_mm, 2, base._MM),
        number(codes.MEAN_DIAMETER, n.mean_diameter_mm, 2, base._MM),
        number(codes.LONG_AXIS, n.long_axis_mm, 2, base._MM),
        number(codes.VOLUME, n.volume_mm3, 1, base._MM3),
        number(codes.MEAN_ATTENUATION, n.mean_hu, 1, base._HU),
        obx("CWE", base._NODULE_TYPE, kind, sub),
        obx("ST", base._Coded.of(codes.CENTER_OF_MASS), (f"{centre} (LPS)",), sub, base._MM),
    ]


def _summary(review: ReviewOut, concept: FindingConcept) -> str:
    counts = {
        k: sum(1 for a in review.assessments if a.assessment == k)
        for k in ("accepted", "rejected", "modified")
    }
    return (
        f"Reviewed by {review.reviewer.name} (review version {review.version}): "
        f"{counts['accepted']} accepted, {counts['rejected']} rejected, {counts['modified']} "
        f"corrected, {len(review.added)} {concept.finding.meaning.lower()}(s) added"
    )
