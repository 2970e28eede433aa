"""Every coded concept the report encoders use, in one place, with the reason for each.

Codes come from pydicom's copy of the DICOM PS3.16 dictionaries (``pydicom.sr.codedict``)
wherever it has them, so that a typo cannot slip in; the few it lacks are spelled out with
their source. Value sets are named as in PS3.16 (``CID nnnn``).
"""

from __future__ import annotations

from highdicom.sr import CodedConcept
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

__all__ = [
    "ABSENT",
    "ALGORITHM_FAMILY",
    "CENTER_OF_MASS",
    "COMMENT",
    "CT_CHEST",
    "CT_UNSPECIFIED_BODY_REGION",
    "CUBIC_MILLIMETER",
    "DEVICE",
    "FINDING_CATEGORY",
    "HOUNSFIELD_UNIT",
    "LANGUAGE",
    "LATERALITY",
    "LONG_AXIS",
    "LUNG",
    "MEAN",
    "MEAN_ATTENUATION",
    "MILLIMETER",
    "NODULE",
    "PERCENT",
    "PRESENCE",
    "PROBABILITY",
    "REPORT_TITLE",
    "VOLUME",
]

# --- What was found (SEG segment and SR finding) -------------------------------------------
FINDING_CATEGORY: Code = codes.SCT.MorphologicallyAbnormalStructure
"""SCT 49755003; CID 7150 "Segmentation Property Categories", also the TID 1501 finding
category. The same pair the phantom truth SEG and the training annotations use."""
NODULE: Code = codes.SCT.Nodule
"""SCT 27925004 "Nodule"; segmented property type and TID 1411 "Finding"."""
LUNG: Code = codes.SCT.Lung
"""SCT 39607008 "Lung"; the SEG anatomic region and the SR finding site."""
LATERALITY: dict[str, Code] = {"right": codes.SCT.Right, "left": codes.SCT.Left}
"""SCT 24028007 "Right" / 7771000 "Left" (CID 244 "Laterality"), a modifier of the finding
site "Lung" (TID 1411 row 8 → :class:`highdicom.sr.FindingSite`)."""

# --- Who found it --------------------------------------------------------------------------
ALGORITHM_FAMILY: Code = codes.cid7162.ArtificialIntelligence
"""DCM 123110 "Artificial Intelligence" (CID 7162 "Surface Processing Algorithm Families",
the value set the SEG Algorithm Family Code Sequence and TID 4019 draw from)."""

DEVICE = CodedConcept.from_code(codes.cid270.Device)
"""DCM 121007 "Device" (CID 270 "Observer Type"): the SR's observer is the model, not a person."""

# --- The report ----------------------------------------------------------------------------
REPORT_TITLE: Code = codes.cid7021.ImagingMeasurementReport
"""DCM 126000 "Imaging Measurement Report" (CID 7021), the generic TID 1500 title."""
LANGUAGE = CodedConcept("en-US", "RFC5646", "English (United States)")
"""TID 1204 language; the value highdicom uses by default, stated explicitly."""
CT_UNSPECIFIED_BODY_REGION: Code = codes.cid100.CTUnspecifiedBodyRegion
"""LN 25045-6 "CT unspecified body region": the CT member of CID 100 "Quantitative Diagnostic
Imaging Procedures", which TID 1500 row 4 (Procedure reported) draws from; generic TID 1500
consumers (OHIF, dcmqi) know it."""
CT_CHEST = CodedConcept("24627-2", "LN", "CT Chest")
"""LN 24627-2 "CT Chest" (LOINC/RSNA Radiology Playbook): the specific procedure. CID 100
is extensible, so it is reported as a second Procedure reported (TID 1500 row 4 is 1-n)."""

# --- Measurements (TID 300, names from CID 7469 / CID 6048) ---------------------------------
LONG_AXIS: Code = codes.SCT.LongAxis
"""SCT 103339001 "Long axis" (CID 7469): the largest 3-D diameter, as the model measures it."""
VOLUME: Code = codes.SCT.Volume
"""SCT 118565006 "Volume" (CID 7469)."""
MEAN_ATTENUATION: Code = codes.DCM.AttenuationCoefficient
"""DCM 112031 "Attenuation Coefficient" (CID 7469) with derivation :data:`MEAN` (CID 7464):
the TID 1500 idiom for a mean CT value inside an ROI (dcmqi and highdicom's examples)."""
MEAN: Code = codes.SCT.Mean
"""SCT 373098007 "Mean" (CID 7464 "General Region of Interest Measurement Modifiers")."""
PROBABILITY: Code = codes.DCM.CertaintyOfFinding
"""DCM 111012 "Certainty of Finding": the likelihood that a CAD finding is a true finding
(CID 6048; the CAD SR templates, e.g. Chest CAD SR TID 4104, report it as NUM in percent).
That is what the model's detection probability means. Not DCM 111047 "Probability of cancer"
(a malignancy estimate the model does not make) nor DCM 122157 "Probability" (no defined
subject)."""

# --- Units (UCUM, CID 7181 / 7464) -----------------------------------------------------------
MILLIMETER: Code = codes.UCUM.Millimeter
CUBIC_MILLIMETER: Code = codes.UCUM.CubicMillimeter
HOUNSFIELD_UNIT: Code = codes.UCUM.HounsfieldUnit
PERCENT: Code = codes.UCUM.Percent

# --- Geometry and qualitative evaluations -----------------------------------------------------
CENTER_OF_MASS: Code = codes.DCM.CenterOfMass
"""DCM 128138 "Center of Mass" (CID 219 "Geometry Graphical Representation"): the geometric
purpose of the SCOORD3D point; the model's centre is the centroid of the finding's voxels."""
PRESENCE: Code = codes.DCM.PresenceOfProperty
"""DCM 121052 "Presence of property" names the qualitative evaluation of a study without
findings; its value is :data:`ABSENT`."""
ABSENT: Code = codes.cid241.Absent
"""SCT 272519000 "Absent" (CID 241 "Present/Absent Only")."""
COMMENT: Code = codes.DCM.Comment
"""DCM 121106 "Comment": the free-text statement that the content is AI-generated."""
