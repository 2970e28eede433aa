"""The coded concepts of a radiologist's review of an AI result, with the source of each.

The review SR (:mod:`preread.reviews.sr`), its SEG and the FHIR, HL7 and JSON reports use these
codes, so a verdict reads the same in every format.

**IHE AI Result Assessment (AIRA).** The review follows the shape of IHE Radiology's AIRA
profile: an *Assessment Creator* stores, in the study of the AI result, an SR that names the
person who assessed, the AI result it assesses (Predecessor Documents Sequence) and, per AI
finding (by its Tracking UID), whether it was accepted, rejected or modified, with the reader's
own findings added. The coded values AIRA assigns for these verdicts are not in the DICOM
dictionaries PreRead ships (pydicom 3.0's copy of PS3.16 has no AI-assessment concepts), and
we could not verify them from the supplement; PreRead therefore codes the verdicts in its own
scheme below and says the same in standard terms next to them (present / absent, what the
finding is instead), so a consumer that knows neither AIRA nor 99PRERD still reads whether the
reader confirmed the nodule. Replacing the 99PRERD verdict codes by AIRA's, once verified, is a
change of this module only.

Standard codes (DICOM PS3.16 / SNOMED CT, checked against pydicom's dictionary where it has
them):

* observer: DCM 121006 "Person" (CID 270), the reviewer's role in the organization SCT
  309343006 "Physician" (CID 7452; the value set has no "Radiologist");
* per finding, standard: DCM 121052 "Presence of property" = SCT 52101004 "Present" /
  SCT 272519000 "Absent" (CID 241), the pattern of PreRead's AI SR without findings;
* why rejected, the finding is instead: SCT 59820001 "Blood vessel structure", SCT 112674009
  "Fibrosis" (CID 6335), SCT 59441001 "Lymph Node", SCT 272673000 "Bone structure",
  DCM 111207 "Image artifact(s)" (CID 7011), SCT 74964007 "Other";
* corrected sizes and type: the AI SR's own codes (:mod:`preread.reports.codes`: SCT 103339001
  "Long axis" and SCT 103340004 "Short axis" with method SCT 24422004 "Axial", RadLex
  RID46010 "solidness descriptor").

PreRead's private scheme 99PRERD (PS3.16 Section 8: a designator beginning with "99";
:data:`preread.reports.codes.PRIVATE_SCHEME`, FHIR system ``urn:preread:codes``):

=========================  ==================================================================
code                       meaning
=========================  ==================================================================
REVIEW-ASSESSMENT          concept name: the reader's assessment of an AI finding
ACCEPTED                   the AI finding is right as it is
REJECTED                   the AI finding is not a nodule (see the reason)
MODIFIED                   the AI finding is a nodule; the reader corrected type and/or size
ADDED                      a nodule the AI did not report, placed by the reader
REJECTION-REASON           concept name: what a rejected AI finding is instead
REVIEW                     the review as a whole (HL7 OBX-3 of its summary line, FHIR)
=========================  ==================================================================
"""

from __future__ import annotations

from highdicom.sr import CodedConcept
from pydicom.sr.codedict import codes as dicom
from pydicom.sr.coding import Code

from preread.reports.codes import PRIVATE_SCHEME

__all__ = [
    "ABSENT",
    "ASSESSMENT",
    "ASSESSMENTS",
    "CLICK_REFINEMENT_FAMILY",
    "PERSON",
    "PHYSICIAN",
    "PRESENCE",
    "PRESENT",
    "REJECTION_REASON",
    "REJECTION_REASONS",
    "REVIEW",
]

PERSON = CodedConcept.from_code(dicom.cid270.Person)
"""DCM 121006 "Person" (CID 270 "Observer Type"): the review's observer is a person."""
PHYSICIAN: Code = dicom.cid7452.Physician
"""SCT 309343006 "Physician" (CID 7452 "Organizational Roles"): the reviewer's role."""

PRESENCE: Code = dicom.DCM.PresenceOfProperty
"""DCM 121052 "Presence of property": whether the reader finds the nodule there."""
PRESENT: Code = dicom.cid241.Present
"""SCT 52101004 "Present" (CID 241): accepted, modified and added nodules."""
ABSENT: Code = dicom.cid241.Absent
"""SCT 272519000 "Absent" (CID 241): rejected AI findings."""

ASSESSMENT = Code("REVIEW-ASSESSMENT", PRIVATE_SCHEME, "Reader assessment of AI finding")
ASSESSMENTS: dict[str, Code] = {
    "accepted": Code("ACCEPTED", PRIVATE_SCHEME, "Accepted by reader"),
    "rejected": Code("REJECTED", PRIVATE_SCHEME, "Rejected by reader"),
    "modified": Code("MODIFIED", PRIVATE_SCHEME, "Modified by reader"),
    "added": Code("ADDED", PRIVATE_SCHEME, "Added by reader"),
}
"""The verdicts (:attr:`preread.reviews.domain.Assessment.kind`, and ``added``)."""

REJECTION_REASON = Code("REJECTION-REASON", PRIVATE_SCHEME, "Reason for rejection")
REJECTION_REASONS: dict[str, Code] = {
    "vessel": dicom.SCT.BloodVesselStructure,  # SCT 59820001
    "scar-fibrosis": dicom.SCT.Fibrosis,  # SCT 112674009 (CID 6335)
    "lymph-node": dicom.SCT.LymphNode,  # SCT 59441001
    "bone": dicom.SCT.BoneStructure,  # SCT 272673000
    "artefact": dicom.DCM.ImageArtifacts,  # DCM 111207 (CID 7011)
    "other": Code("74964007", "SCT", "Other"),
}
"""What a rejected finding is instead, by :class:`preread.reviews.domain.RejectReason` value."""

CLICK_REFINEMENT_FAMILY: Code = dicom.cid7162.MorphologicalOperations
"""DCM 123104 "Morphological Operations" (CID 7162): the family of the algorithm that draws a
reader-added nodule from the click (half-maximum threshold, opening, hole filling), in the
review SEG's Segmentation Algorithm Identification."""

REVIEW = Code("REVIEW", PRIVATE_SCHEME, "Reader review of AI result")
"""The review as a whole (who signed it, when, which version)."""
