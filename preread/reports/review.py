"""A radiologist's review of a pre-read, as the hospital-facing reports show it.

:class:`ReviewOut` is the review in the JSON report (``review`` of :class:`ReportOut`), the
``GET /api/v1/studies/{uid}/reviews`` listing, and what the FHIR and HL7 encoders render
(:attr:`preread.reports.context.ReportInput.review`). It is made from the typed review by
:func:`preread.reviews.review_out`; the reports package does not depend on the reviews package.
Sizes are rounded as in the SR; coordinates are LPS mm. No voxel masks travel here (they are in
the review's SEG).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from preread.domain import NoduleType
from preread.reports.json import PreReadOut

__all__ = ["AddedOut", "AssessmentOut", "ReportOut", "ReviewOut", "ReviewerOut"]

RejectReasonOut = Literal["vessel", "scar-fibrosis", "lymph-node", "bone", "artefact", "other"]


class ReviewerOut(BaseModel):
    """Who signed the review (a user of PreRead)."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(description="PreRead user id")
    name: str = Field(description="display name, as in the SR's Verifying Observer Name")


class AssessmentOut(BaseModel):
    """The reader's verdict on one AI finding (``label``/``tracking_uid`` as in ``findings``)."""

    model_config = ConfigDict(frozen=True)

    label: int = Field(description="the AI finding's label ('AI nodule <label>')")
    tracking_uid: str
    assessment: Literal["accepted", "rejected", "modified"]
    reason: RejectReasonOut | None = Field(
        default=None, description="rejected: what the finding is instead"
    )
    reason_text: str | None = Field(default=None, description="rejected: the reader's words")
    nodule_type: NoduleType | None = Field(default=None, description="modified: the reader's type")
    axial_long_axis_mm: float | None = Field(
        default=None, description="modified: the reader's axial long axis"
    )
    short_axis_mm: float | None = Field(
        default=None, description="modified: the reader's short axis"
    )


class AddedOut(BaseModel):
    """A nodule the reader added (reader-placed; its extent measured from the pixels)."""

    model_config = ConfigDict(frozen=True)

    number: int = Field(description="1.. in the review; segment 'Reader nodule <number>'")
    tracking_id: str
    tracking_uid: str = Field(description="shared with the review's SR and SEG")
    center_lps_mm: tuple[float, float, float]
    axial_long_axis_mm: float
    short_axis_mm: float
    mean_diameter_mm: float
    long_axis_mm: float = Field(description="maximal 3-D diameter")
    volume_mm3: float
    mean_hu: float
    nodule_type: NoduleType
    solid_component_long_axis_mm: float | None = None
    reader_placed: Literal[True] = True


class ReviewOut(BaseModel):
    """One signed review of one AI result (a done job), version ``version`` of the study's
    reviews for that model; ``supersedes`` the one before (never overwritten)."""

    model_config = ConfigDict(frozen=True, protected_namespaces=())

    id: str
    version: int = Field(ge=1)
    supersedes: str | None
    current: bool = Field(description="the newest review of the study and model")
    signed_at: datetime
    reviewer: ReviewerOut
    job_id: str = Field(description="the reading reviewed")
    model_id: str
    model_version: str
    ai_sr_sop_instance_uid: str = Field(description="the AI SR the review assesses")
    review_sr_sop_instance_uid: str
    review_seg_sop_instance_uid: str | None = Field(
        description="the SEG of the added and modified nodules (none when there are none)"
    )
    stored: bool = Field(description="the review's SR (and SEG) are in the study")
    assessments: list[AssessmentOut]
    added: list[AddedOut]


class ReportOut(PreReadOut):
    """The JSON report: the AI pre-read, and the radiologist's current review of it (null while
    nobody reviewed this reading). The pre-read itself stays AI-generated and preliminary."""

    review: ReviewOut | None = None
