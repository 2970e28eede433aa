"""Every coded concept the report encoders use, in one place, with the reason for each.

Codes come from pydicom's copy of the DICOM PS3.16 dictionaries (``pydicom.sr.codedict``)
wherever it has them, so that a typo cannot slip in; the few it lacks are spelled out with
their source. Value sets are named as in PS3.16 (``CID nnnn``). What a model finds (finding
type, category and site) is the exception: its card declares it and the result carries it
(``PreReadResult.concept``); :data:`NODULE`, :data:`FINDING_CATEGORY` and :data:`LUNG` are the
lung-nodule model's.
"""

from __future__ import annotations

from highdicom.sr import CodedConcept
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from preread.domain import CodedTerm, LungRadsCategory, NoduleType

__all__ = [
    "ABSENT",
    "ALGORITHM_FAMILY",
    "ASSESSMENT_CATEGORY",
    "AXIAL",
    "AXIAL_LONG_AXIS",
    "CENTER_OF_MASS",
    "COMMENT",
    "CT_CHEST",
    "CT_UNSPECIFIED_BODY_REGION",
    "CUBIC_MILLIMETER",
    "DAY",
    "DEVICE",
    "FINDING_CATEGORY",
    "FOLLOW_UP",
    "FOLLOW_UP_STATUS",
    "HOUNSFIELD_UNIT",
    "IMAGE_LIBRARY",
    "IMAGE_LIBRARY_GROUP",
    "IMAGING_MEASUREMENTS",
    "LANGUAGE",
    "LATERALITY",
    "LONG_AXIS",
    "LUNG",
    "LUNG_RADS",
    "LUNG_RADS_CATEGORIES",
    "MEAN",
    "MEAN_ATTENUATION",
    "MEAN_DIAMETER",
    "MILLIMETER",
    "NODULE",
    "NODULE_TYPE",
    "NODULE_TYPES",
    "PERCENT",
    "PRESENCE",
    "PRIOR_VOLUME",
    "PRIVATE_SCHEME",
    "PROBABILITY",
    "QUALITATIVE_EVALUATIONS",
    "RADLEX",
    "RECOMMENDATION",
    "REPORT_TITLE",
    "SHORT_AXIS",
    "SOLID_COMPONENT",
    "SOLID_COMPONENT_LONG_AXIS",
    "SOURCE",
    "VDT",
    "VOLUME",
    "VOLUME_CHANGE",
    "code",
]


# --- What was found (SEG segment and SR finding) -------------------------------------------
def code(term: CodedTerm) -> Code:
    """A concept of the result as pydicom's :class:`~pydicom.sr.coding.Code` (for highdicom)."""
    return Code(term.value, term.scheme_designator, term.meaning)


# The encoders code the result's concept (``PreReadResult.concept``, the model card's label);
# these three are the lung-nodule model's (:data:`preread.domain.LUNG_NODULE`, which the tests
# check against them).
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
IMAGING_MEASUREMENTS: Code = codes.DCM.ImagingMeasurements
"""DCM 126010 "Imaging Measurements": TID 1500's container of the measurement groups."""
IMAGE_LIBRARY: Code = codes.DCM.ImageLibrary
"""DCM 111028 "Image Library" (TID 1600), before the Imaging Measurements (TID 1500 row 5)."""
IMAGE_LIBRARY_GROUP: Code = codes.DCM.ImageLibraryGroup
"""DCM 126200 "Image Library Group" (TID 1600 row 2)."""
SOURCE = CodedConcept("260753009", "SCT", "Source")
"""SCT 260753009 "Source": the concept name of an Image Library entry (TID 1601), as
highdicom's own Image Library and Key Object Selection write it."""

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

# --- Lung-RADS: what kind of nodule, and its size as Lung-RADS measures it ------------------
# DICOM PS3.16 has no value set for the composition of a lung nodule (CID 6104 "Abnormal
# Opacity" has DCM 112120 "Ground glass opacity", but no solid or part-solid nodule), and the
# SNOMED CT subset of PS3.16 has no part-solid nodule either. RadLex has the Lung-RADS terms
# (RID50134 onwards); it is a coding scheme DICOM knows (PS3.16 Table 8-1, designator RADLEX;
# pydicom's dictionary holds few RadLex codes, hence spelled out here). RID50151-3 are also the
# values of the DICOM SRs of the LIDC-IDRI nodules (Fedorov et al., Med. Phys. 2020,
# doi:10.1002/mp.14445; QIICR/lidc2dicom).
RADLEX = "RADLEX"
"""PS3.16 Table 8-1 designator of RadLex (HL7 OID 2.16.840.1.113883.6.256)."""
NODULE_TYPE: Code = Code("RID46010", RADLEX, "solidness descriptor")
"""RadLex RID46010 "solidness descriptor": the concept name of the finding's type, a TID 1411
qualitative evaluation (CODE; the template leaves its concept name to the application) with a
:data:`NODULE_TYPES` value."""
NODULE_TYPES: dict[NoduleType, Code] = {
    "solid": Code("RID50151", RADLEX, "solid pulmonary nodule"),
    "part-solid": Code("RID50152", RADLEX, "part-solid pulmonary nodule"),
    "ground-glass": Code("RID50153", RADLEX, "non-solid pulmonary nodule"),
}
"""The Lung-RADS nodule types in RadLex; Lung-RADS calls a ground-glass nodule "nonsolid"."""
SHORT_AXIS: Code = codes.SCT.ShortAxis
"""SCT 103340004 "Short axis" (CID 7470): the largest diameter perpendicular to the axial long
axis, in the same slice."""
MEAN_DIAMETER: Code = Code("RID50155", RADLEX, "average diameter")
"""RadLex RID50155 "average diameter": Lung-RADS' mean diameter, (axial long + short axis) / 2
to 0.1 mm. Not SCT 81827009 "Diameter", which says nothing of how it is derived."""

AXIAL: Code = codes.SCT.Axial
"""SCT 24422004 "Axial" (CID 2), the TID 300 Measurement Method of the SR's axial long and
short axis: what tells them from the 3-D long axis, which is "Long axis" without a method."""
SOLID_COMPONENT: Code = Code("RID50154", RADLEX, "solid component of part-solid pulmonary nodule")
"""RadLex RID50154, the TID 300 Finding Site of the SR's "Long axis" of the solid component."""

PRIVATE_SCHEME = "99PRERD"
"""PreRead's private coding scheme (a designator beginning with "99": PS3.16 Section 8, and
HL7 v2's local ``99zzz``), used in the HL7 v2 and FHIR reports only. There each value needs a
name of its own (an OBX-3 per OBX-4 sub-id, a component code per Observation), and SCT
103339001 "Long axis" already names the 3-D maximal diameter in every PreRead report since
1.0.0. The SR says the same with standard codes, by modifiers of "Long axis" (TID 300
Measurement Method :data:`AXIAL`, Finding Site :data:`SOLID_COMPONENT`), and dciodvfy warns
about any designator it does not know, 99PRERD included."""
AXIAL_LONG_AXIS: Code = Code("AXIAL-LONG-AXIS", PRIVATE_SCHEME, "Axial long axis")
"""99PRERD: the longest in-slice diameter over the finding's axial slices (Lung-RADS' long axis;
the short axis is measured perpendicular to it in the same slice). In the SR: SCT 103339001
"Long axis", method :data:`AXIAL`."""
SOLID_COMPONENT_LONG_AXIS: Code = Code(
    "SOLID-LONG-AXIS", PRIVATE_SCHEME, "Solid component long axis"
)
"""99PRERD: the long axis of the solid component of a part-solid nodule (what Lung-RADS sizes a
part-solid nodule's category by). In the SR: SCT 103339001 "Long axis", finding site
:data:`SOLID_COMPONENT`."""

LUNG_RADS: Code = Code("LUNG-RADS", PRIVATE_SCHEME, "Lung-RADS v2022 assessment category")
"""99PRERD: the Lung-RADS v2022 category of a nodule or of the exam (per nodule, the category
its size, type and growth give; for the exam, the most suspicious nodule's). Neither DICOM
PS3.16 nor the SNOMED CT subset DICOM uses has Lung-RADS categories, and PreRead does not
guess at codes from other lexicons it cannot check; the text says the category too."""
_CATEGORIES: tuple[LungRadsCategory, ...] = ("0", "1", "2", "3", "4A", "4B", "4X")
LUNG_RADS_CATEGORIES: dict[LungRadsCategory, Code] = {
    c: Code(f"LUNG-RADS-{c}", PRIVATE_SCHEME, f"Lung-RADS {c}") for c in _CATEGORIES
}
"""99PRERD values of :data:`LUNG_RADS`: ``LUNG-RADS-0`` … ``LUNG-RADS-4X``."""

# --- Follow-up: the nodule against the patient's prior CT (99PRERD, HL7 v2 and FHIR) ----------
FOLLOW_UP: Code = Code("FOLLOW-UP", PRIVATE_SCHEME, "Comparison with prior CT")
"""99PRERD: the comparison with the priors in words (the exam's, or one nodule's)."""
FOLLOW_UP_STATUS: Code = Code("FOLLOW-UP-STATUS", PRIVATE_SCHEME, "Status against prior CT")
"""99PRERD: new / persistent / resolved (the value as text)."""
PRIOR_VOLUME: Code = Code("PRIOR-VOLUME", PRIVATE_SCHEME, "Volume on prior CT")
"""99PRERD: the nodule's volume on the prior CT (mm3)."""
VOLUME_CHANGE: Code = Code("VOLUME-CHANGE", PRIVATE_SCHEME, "Volume change since prior CT")
"""99PRERD: (V2 - V1) / V1 in percent."""
VDT: Code = Code("VDT", PRIVATE_SCHEME, "Volume doubling time")
"""99PRERD: Δt·ln 2 / ln(V2/V1) in days, given for a volume change of at least 25 %."""
QUALITATIVE_EVALUATIONS: Code = Code("C0034375", "UMLS", "Qualitative Evaluations")
"""UMLS C0034375, TID 1500 row 12: the root's container of evaluations of the whole exam
(the exam's Lung-RADS category and its management); not in pydicom's dictionary."""
ASSESSMENT_CATEGORY: Code = codes.DCM.AssessmentCategory
"""DCM 111005 "Assessment Category" (the name BI-RADS categories go by in the mammography
CAD SR): in the SR, a TEXT item "Lung-RADS v2022 4A" under it says a Lung-RADS category with
standard codes only (the 99PRERD :data:`LUNG_RADS` codes are for HL7 v2 and FHIR)."""
RECOMMENDATION: Code = codes.DCM.Recommendation
"""DCM 121075 "Recommendation": the Lung-RADS management text."""


# --- Units (UCUM, CID 7181 / 7464) -----------------------------------------------------------
MILLIMETER: Code = codes.UCUM.Millimeter
CUBIC_MILLIMETER: Code = codes.UCUM.CubicMillimeter
HOUNSFIELD_UNIT: Code = codes.UCUM.HounsfieldUnit
PERCENT: Code = codes.UCUM.Percent
DAY: Code = codes.UCUM.Day

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
