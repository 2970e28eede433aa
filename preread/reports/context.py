"""What the hospital-facing formats (FHIR, HL7 v2, HTML) need besides the PreRead itself.

The SR and SEG carry the patient and study tags copied from the source images; the other formats
are made later, from the stored result, so the study's identifying tags travel with it as a
:class:`ReportStudy` (DICOM string forms, as Orthanc returns them: DA ``YYYYMMDD``, TM
``HHMMSS.ffffff``, PN ``Family^Given^Middle^Prefix^Suffix``; an absent tag is ``""``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from preread.reports.json import PreReadOut
from preread.reports.review import ReviewOut

__all__ = ["ReportInput", "ReportStudy"]


@dataclass(frozen=True)
class ReportStudy:
    """The study a report is about, and whose patient it is (DICOM string forms)."""

    tenant: str
    study_instance_uid: str
    patient_id: str
    issuer_of_patient_id: str
    patient_name: str
    patient_birth_date: str
    patient_sex: str
    accession_number: str
    study_date: str
    study_time: str
    study_description: str


@dataclass(frozen=True)
class ReportInput:
    """One finished pre-read, ready to be rendered in any format.

    ``job_id`` identifies the reading (a new reading of the same study has a new id);
    ``finished_at`` is when it was stored (aware, UTC). The SR and SEG SOP Instance UIDs are
    those stored in the study (the SEG's is None when there are no findings). ``review`` is
    the radiologist's current review of this reading (None: not reviewed).
    """

    study: ReportStudy
    preread: PreReadOut
    job_id: str
    finished_at: datetime
    sr_sop_instance_uid: str
    seg_sop_instance_uid: str | None
    review: ReviewOut | None = None
