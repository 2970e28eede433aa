"""DICOM PS3.15 Annex E, Table E.1-1 "Application Level Confidentiality Profile Attributes".

Edition: PS3.15 2023 and later (:data:`EDITION`; Table E.1-1 as in the recent editions, which name
e.g. Acquisition Field Of View Label and Comments on Radiation Dose), transcribed row by row and
checked against a machine-readable parse of the published table (innolitics/dicom-standard,
``confidentiality_profile_attributes.json``). Each row keeps three columns of the standard: the
Basic Profile action, "Rtn. Long. Modif. Dates Opt." and "Clean Desc. Opt." (the only options
:mod:`dicom_gateway.deid` claims besides the Basic Profile).

Actions (PS3.15 E.1.1, Table E.1-1 legend):

* ``D`` replace with a non-zero length dummy value consistent with the VR;
* ``Z`` replace with a zero length value (or a dummy value consistent with the VR);
* ``X`` remove; ``K`` keep; ``C`` clean (keep similar meaning, no identifying information);
* ``U`` replace the UID with a non-zero length UID that is internally consistent within a set
  of instances;
* compound actions keep the standard's notation: ``X/Z``, ``X/D``, ``Z/D``, ``X/Z/D``,
  ``X/Z/U*`` (``U*``: keep the sequence and replace the instance UIDs inside it).

Compound actions depend on the attribute's Type in the IOD of the instance ("X unless Z is
required to maintain IOD conformance (Type 2) …"). Without the IOD tables we resolve them once
per attribute, from its strictest Type in the IODs PreRead handles (CT Image PS3.3 A.3,
Segmentation A.51, Comprehensive 3D SR A.35.13), recorded in :attr:`ProfileEntry.iod_type`:

* Type 1 or 1C: the last alternative (``D``; for ``X/Z/U*`` the ``U*``);
* Type 2 or 2C: ``Z`` (``D`` where ``Z`` is not an alternative);
* Type 3 or absent from those IODs (``""``): the first alternative (``X``; ``Z`` for ``Z/D``).

So DeviceSerialNumber (Type 1 in the Enhanced General Equipment Module of SEG and SR) becomes
``D``; ReferencedPerformedProcedureStepSequence (Type 2 in the SR Document General Module) and
ContentCreatorName (Type 2 in SEG) ``Z``; InstitutionName, StationName, OperatorsName, ProtocolName
``X``; SourceImageSequence (Type 1 in the Derivation Image Functional Group of SEG) ``U*``, and by
choice ReferencedImageSequence too: both are kept wherever they appear, with remapped UIDs, so that
the references of a de-identified study still resolve. Where an option column says ``C`` the option
decides instead (:attr:`ProfileEntry.effect`).

Rows whose tag has a mask stand for repeating groups: Curve Data ``(50xx,xxxx)``, Overlay Data
``(60xx,3000)`` and Overlay Comments ``(60xx,4000)``. Private attributes ("(gggg,eeee) where
gggg is odd", ``X``) are a rule of the de-identifier, not a row.

:data:`SUPPLEMENT` lists the few attributes that Table E.1-1 does not name and that we remove
all the same, each with its reason (e.g. the rest of an Overlay Plane whose Type 1 Overlay
Data is gone; a birth date in an alternative calendar).

Legend of the rows below: ``_e(tag, keyword, basic action, MD, CD, t=Type)``, where ``MD`` marks
``C`` in "Rtn. Long. Modif. Dates Opt." and ``CD`` marks ``C`` in "Clean Desc. Opt.".
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = [
    "EDITION",
    "SUPPLEMENT",
    "TABLE_E1_1",
    "Action",
    "Effect",
    "Option",
    "ProfileEntry",
    "profile_entry",
]

EDITION = "PS3.15 2023+"
_FULL_MASK = 0xFFFFFFFF


class Action(enum.StrEnum):
    """An action of the Basic Profile column, in the standard's notation."""

    D = "D"
    Z = "Z"
    X = "X"
    K = "K"
    C = "C"
    U = "U"
    X_Z = "X/Z"
    X_D = "X/D"
    Z_D = "Z/D"
    X_Z_D = "X/Z/D"
    X_Z_U = "X/Z/U*"


class Option(enum.Enum):
    """An option column of Table E.1-1 whose ``C`` the row carries."""

    MODIFIED_DATES = "Rtn. Long. Modif. Dates Opt."
    CLEAN_DESCRIPTORS = "Clean Desc. Opt."


class Effect(enum.Enum):
    """What the de-identifier does with an attribute once the row is resolved."""

    REMOVE = "X"
    EMPTY = "Z"
    DUMMY = "D"
    KEEP = "K"
    REMAP_UID = "U"
    DEIDENTIFY_ITEMS = "U*"  # keep the sequence, de-identify its items (UIDs remapped)
    SHIFT_DATES = "C (modified dates)"
    CLEAN_DESCRIPTOR = "C (clean descriptors)"


_LETTER = {
    "C": Effect.CLEAN_DESCRIPTOR,
    "X": Effect.REMOVE,
    "Z": Effect.EMPTY,
    "D": Effect.DUMMY,
    "K": Effect.KEEP,
    "U": Effect.REMAP_UID,
    "U*": Effect.DEIDENTIFY_ITEMS,
}


@dataclass(frozen=True, slots=True)
class ProfileEntry:
    """One row of Table E.1-1 (or of :data:`SUPPLEMENT`).

    ``tag`` and ``mask``: the row applies to every tag ``t`` with ``t & mask == tag`` (the
    mask is all ones except for the repeating groups 50xx and 60xx). ``keyword``: the PS3.6
    keyword (pydicom's). ``basic``: the Basic Profile action. ``options``: the option columns
    that hold ``C``. ``iod_type``: the attribute's strictest Type in CT Image, Segmentation and
    Comprehensive 3D SR, recorded only for compound actions (see the module docstring).
    ``source``: ``"E.1-1"`` or ``"supplement"``.
    """

    tag: int
    keyword: str
    basic: Action
    options: frozenset[Option] = frozenset()
    iod_type: str = ""
    mask: int = _FULL_MASK
    source: str = "E.1-1"

    @property
    def modified_dates(self) -> bool:
        """``C`` in "Rtn. Long. Modif. Dates Opt.": dates are shifted, times kept."""
        return Option.MODIFIED_DATES in self.options

    @property
    def clean_descriptors(self) -> bool:
        """``C`` in "Clean Desc. Opt.": the descriptor is cleaned."""
        return Option.CLEAN_DESCRIPTORS in self.options

    def matches(self, tag: int) -> bool:
        """Whether the row applies to ``tag``."""
        return tag & self.mask == self.tag

    @property
    def basic_effect(self) -> Effect:
        """The Basic Profile action with a compound action resolved by :attr:`iod_type`."""
        alternatives = self.basic.value.split("/")
        if len(alternatives) == 1:
            return _LETTER[alternatives[0]]
        if self.iod_type.startswith("1"):
            return _LETTER[alternatives[-1]]
        if self.iod_type.startswith("2"):
            return _LETTER["Z" if "Z" in alternatives else alternatives[-1]]
        return _LETTER[alternatives[0]]

    @property
    def effect(self) -> Effect:
        """What the de-identifier does: the options' ``C`` first, else :attr:`basic_effect`."""
        if self.modified_dates:
            return Effect.SHIFT_DATES
        if self.clean_descriptors:
            return Effect.CLEAN_DESCRIPTOR
        return self.basic_effect


D, Z, X, U = Action.D, Action.Z, Action.X, Action.U
X_Z, X_D, Z_D, X_Z_D, X_Z_U = Action.X_Z, Action.X_D, Action.Z_D, Action.X_Z_D, Action.X_Z_U
MD, CD = Option.MODIFIED_DATES, Option.CLEAN_DESCRIPTORS


def _e(
    tag: int,
    keyword: str,
    basic: Action,
    *options: Option,
    t: str = "",
    mask: int = _FULL_MASK,
    source: str = "E.1-1",
) -> ProfileEntry:
    return ProfileEntry(tag, keyword, basic, frozenset(options), t, mask, source)


#: Table E.1-1, one record per row, in tag order; the repeating-group rows come last.
TABLE_E1_1: tuple[ProfileEntry, ...] = (
    _e(0x00001000, "AffectedSOPInstanceUID", X),
    _e(0x00001001, "RequestedSOPInstanceUID", U),
    _e(0x00020003, "MediaStorageSOPInstanceUID", U),
    _e(0x00041511, "ReferencedSOPInstanceUIDInFile", U),
    _e(0x00080014, "InstanceCreatorUID", U),
    _e(0x00080015, "InstanceCoercionDateTime", X, MD),
    _e(0x00080018, "SOPInstanceUID", U),
    _e(0x00080020, "StudyDate", Z, MD),
    _e(0x00080021, "SeriesDate", X_D, MD),
    _e(0x00080022, "AcquisitionDate", X_Z, MD),
    _e(0x00080023, "ContentDate", Z_D, MD),
    _e(0x00080024, "OverlayDate", X, MD),
    _e(0x00080025, "CurveDate", X, MD),
    _e(0x0008002A, "AcquisitionDateTime", X_Z_D, MD),
    _e(0x00080030, "StudyTime", Z, MD),
    _e(0x00080031, "SeriesTime", X_D, MD),
    _e(0x00080032, "AcquisitionTime", X_Z, MD),
    _e(0x00080033, "ContentTime", Z_D, MD),
    _e(0x00080034, "OverlayTime", X, MD),
    _e(0x00080035, "CurveTime", X, MD),
    _e(0x00080050, "AccessionNumber", Z),
    _e(0x00080058, "FailedSOPInstanceUIDList", U),
    _e(0x00080080, "InstitutionName", X_Z_D, t="3"),
    _e(0x00080081, "InstitutionAddress", X),
    _e(0x00080082, "InstitutionCodeSequence", X_Z_D, t="3"),
    _e(0x00080090, "ReferringPhysicianName", Z),
    _e(0x00080092, "ReferringPhysicianAddress", X),
    _e(0x00080094, "ReferringPhysicianTelephoneNumbers", X),
    _e(0x00080096, "ReferringPhysicianIdentificationSequence", X),
    _e(0x0008009C, "ConsultingPhysicianName", Z),
    _e(0x0008009D, "ConsultingPhysicianIdentificationSequence", X),
    _e(0x00080201, "TimezoneOffsetFromUTC", X, MD),
    _e(0x00081010, "StationName", X_Z_D, t="3"),
    _e(0x00081030, "StudyDescription", X, CD),
    _e(0x0008103E, "SeriesDescription", X, CD),
    _e(0x00081040, "InstitutionalDepartmentName", X),
    _e(0x00081041, "InstitutionalDepartmentTypeCodeSequence", X),
    _e(0x00081048, "PhysiciansOfRecord", X),
    _e(0x00081049, "PhysiciansOfRecordIdentificationSequence", X),
    _e(0x00081050, "PerformingPhysicianName", X),
    _e(0x00081052, "PerformingPhysicianIdentificationSequence", X),
    _e(0x00081060, "NameOfPhysiciansReadingStudy", X),
    _e(0x00081062, "PhysiciansReadingStudyIdentificationSequence", X),
    _e(0x00081070, "OperatorsName", X_Z_D, t="3"),
    _e(0x00081072, "OperatorIdentificationSequence", X_D, t="3"),
    _e(0x00081080, "AdmittingDiagnosesDescription", X, CD),
    _e(0x00081084, "AdmittingDiagnosesCodeSequence", X, CD),
    _e(0x00081110, "ReferencedStudySequence", X_Z, t="3"),
    _e(0x00081111, "ReferencedPerformedProcedureStepSequence", X_Z_D, t="2"),
    _e(0x00081120, "ReferencedPatientSequence", X),
    _e(0x00081140, "ReferencedImageSequence", X_Z_U, t="1C"),  # U* by choice: see above
    _e(0x00081155, "ReferencedSOPInstanceUID", U),
    _e(0x00081195, "TransactionUID", U),
    _e(0x00082111, "DerivationDescription", X, CD),
    _e(0x00082112, "SourceImageSequence", X_Z_U, t="1C"),  # 1 in SEG Derivation Image
    _e(0x00083010, "IrradiationEventUID", U),
    _e(0x00084000, "IdentifyingComments", X, CD),
    _e(0x00100010, "PatientName", Z),
    _e(0x00100020, "PatientID", Z),
    _e(0x00100021, "IssuerOfPatientID", X),
    _e(0x00100030, "PatientBirthDate", Z),
    _e(0x00100032, "PatientBirthTime", X),
    _e(0x00100040, "PatientSex", Z),
    _e(0x00100050, "PatientInsurancePlanCodeSequence", X),
    _e(0x00100101, "PatientPrimaryLanguageCodeSequence", X),
    _e(0x00100102, "PatientPrimaryLanguageModifierCodeSequence", X),
    _e(0x00101000, "OtherPatientIDs", X),
    _e(0x00101001, "OtherPatientNames", X),
    _e(0x00101002, "OtherPatientIDsSequence", X),
    _e(0x00101005, "PatientBirthName", X),
    _e(0x00101010, "PatientAge", X),
    _e(0x00101020, "PatientSize", X),
    _e(0x00101030, "PatientWeight", X),
    _e(0x00101040, "PatientAddress", X),
    _e(0x00101050, "InsurancePlanIdentification", X),
    _e(0x00101060, "PatientMotherBirthName", X),
    _e(0x00101080, "MilitaryRank", X),
    _e(0x00101081, "BranchOfService", X),
    _e(0x00101090, "MedicalRecordLocator", X),
    _e(0x00101100, "ReferencedPatientPhotoSequence", X),
    _e(0x00102000, "MedicalAlerts", X, CD),
    _e(0x00102110, "Allergies", X, CD),
    _e(0x00102150, "CountryOfResidence", X),
    _e(0x00102152, "RegionOfResidence", X),
    _e(0x00102154, "PatientTelephoneNumbers", X),
    _e(0x00102155, "PatientTelecomInformation", X),
    _e(0x00102160, "EthnicGroup", X),
    _e(0x00102180, "Occupation", X, CD),
    _e(0x001021A0, "SmokingStatus", X),
    _e(0x001021B0, "AdditionalPatientHistory", X, CD),
    _e(0x001021C0, "PregnancyStatus", X),
    _e(0x001021D0, "LastMenstrualDate", X, MD),
    _e(0x001021F0, "PatientReligiousPreference", X),
    _e(0x00102203, "PatientSexNeutered", X_Z, t="2C"),
    _e(0x00102297, "ResponsiblePerson", X),
    _e(0x00102299, "ResponsibleOrganization", X),
    _e(0x00104000, "PatientComments", X, CD),
    _e(0x00120010, "ClinicalTrialSponsorName", D),
    _e(0x00120020, "ClinicalTrialProtocolID", D),
    _e(0x00120021, "ClinicalTrialProtocolName", Z),
    _e(0x00120030, "ClinicalTrialSiteID", Z),
    _e(0x00120031, "ClinicalTrialSiteName", Z),
    _e(0x00120040, "ClinicalTrialSubjectID", D),
    _e(0x00120042, "ClinicalTrialSubjectReadingID", D),
    _e(0x00120050, "ClinicalTrialTimePointID", Z),
    _e(0x00120051, "ClinicalTrialTimePointDescription", X, CD),
    _e(0x00120060, "ClinicalTrialCoordinatingCenterName", Z),
    _e(0x00120071, "ClinicalTrialSeriesID", X),
    _e(0x00120072, "ClinicalTrialSeriesDescription", X, CD),
    _e(0x00120081, "ClinicalTrialProtocolEthicsCommitteeName", D),
    _e(0x00120082, "ClinicalTrialProtocolEthicsCommitteeApprovalNumber", X),
    _e(0x0016002B, "MakerNote", X, CD),
    _e(0x0016004B, "DeviceSettingDescription", X, CD),
    _e(0x0016004D, "CameraOwnerName", X),
    _e(0x0016004E, "LensSpecification", X),
    _e(0x0016004F, "LensMake", X),
    _e(0x00160050, "LensModel", X),
    _e(0x00160051, "LensSerialNumber", X),
    _e(0x00160070, "GPSVersionID", X),
    _e(0x00160071, "GPSLatitudeRef", X),
    _e(0x00160072, "GPSLatitude", X),
    _e(0x00160073, "GPSLongitudeRef", X),
    _e(0x00160074, "GPSLongitude", X),
    _e(0x00160075, "GPSAltitudeRef", X),
    _e(0x00160076, "GPSAltitude", X),
    _e(0x00160077, "GPSTimeStamp", X),
    _e(0x00160078, "GPSSatellites", X),
    _e(0x00160079, "GPSStatus", X),
    _e(0x0016007A, "GPSMeasureMode", X),
    _e(0x0016007B, "GPSDOP", X),
    _e(0x0016007C, "GPSSpeedRef", X),
    _e(0x0016007D, "GPSSpeed", X),
    _e(0x0016007E, "GPSTrackRef", X),
    _e(0x0016007F, "GPSTrack", X),
    _e(0x00160080, "GPSImgDirectionRef", X),
    _e(0x00160081, "GPSImgDirection", X),
    _e(0x00160082, "GPSMapDatum", X),
    _e(0x00160083, "GPSDestLatitudeRef", X),
    _e(0x00160084, "GPSDestLatitude", X),
    _e(0x00160085, "GPSDestLongitudeRef", X),
    _e(0x00160086, "GPSDestLongitude", X),
    _e(0x00160087, "GPSDestBearingRef", X),
    _e(0x00160088, "GPSDestBearing", X),
    _e(0x00160089, "GPSDestDistanceRef", X),
    _e(0x0016008A, "GPSDestDistance", X),
    _e(0x0016008B, "GPSProcessingMethod", X),
    _e(0x0016008C, "GPSAreaInformation", X),
    _e(0x0016008D, "GPSDateStamp", X, MD),
    _e(0x0016008E, "GPSDifferential", X),
    _e(0x00180010, "ContrastBolusAgent", Z_D, CD, t="2"),
    _e(0x00181000, "DeviceSerialNumber", X_Z_D, t="1"),
    _e(0x00181002, "DeviceUID", U),
    _e(0x00181004, "PlateID", X),
    _e(0x00181005, "GeneratorID", X),
    _e(0x00181007, "CassetteID", X),
    _e(0x00181008, "GantryID", X),
    _e(0x00181009, "UniqueDeviceIdentifier", X),
    _e(0x0018100A, "UDISequence", X),
    _e(0x0018100B, "ManufacturerDeviceClassUID", U),
    _e(0x00181030, "ProtocolName", X_D, CD, t="3"),
    _e(0x001811BB, "AcquisitionFieldOfViewLabel", D, CD),
    _e(0x00181400, "AcquisitionDeviceProcessingDescription", X_D, CD, t="3"),
    _e(0x00182042, "TargetUID", U),
    _e(0x00184000, "AcquisitionComments", X, CD),
    _e(0x00185011, "TransducerIdentificationSequence", X),
    _e(0x0018700A, "DetectorID", X_D, t=""),
    _e(0x00189185, "RespiratoryMotionCompensationTechniqueDescription", X, CD),
    _e(0x00189367, "XRaySourceID", D),
    _e(0x00189369, "SourceStartDateTime", D, MD),
    _e(0x0018936A, "SourceEndDateTime", D, MD),
    _e(0x00189371, "XRayDetectorID", D),
    _e(0x00189373, "XRayDetectorLabel", X),
    _e(0x0018937B, "MultienergyAcquisitionDescription", X, CD),
    _e(0x0018937F, "DecompositionDescription", X, CD),
    _e(0x00189424, "AcquisitionProtocolDescription", X, CD),
    _e(0x00189516, "StartAcquisitionDateTime", X_D, MD),
    _e(0x00189517, "EndAcquisitionDateTime", X_D, MD),
    _e(0x00189937, "RequestedSeriesDescription", X, CD),
    _e(0x0018A003, "ContributionDescription", X, CD),
    _e(0x0020000D, "StudyInstanceUID", U),
    _e(0x0020000E, "SeriesInstanceUID", U),
    _e(0x00200010, "StudyID", Z),
    _e(0x00200052, "FrameOfReferenceUID", U),
    _e(0x00200200, "SynchronizationFrameOfReferenceUID", U),
    _e(0x00203401, "ModifyingDeviceID", X),
    _e(0x00203406, "ModifiedImageDescription", X),
    _e(0x00204000, "ImageComments", X, CD),
    _e(0x00209158, "FrameComments", X, CD),
    _e(0x00209161, "ConcatenationUID", U),
    _e(0x00209164, "DimensionOrganizationUID", U),
    _e(0x00281199, "PaletteColorLookupTableUID", U),
    _e(0x00281214, "LargePaletteColorLookupTableUID", U),
    _e(0x00284000, "ImagePresentationComments", X),
    _e(0x00320012, "StudyIDIssuer", X),
    _e(0x00321020, "ScheduledStudyLocation", X),
    _e(0x00321021, "ScheduledStudyLocationAETitle", X),
    _e(0x00321030, "ReasonForStudy", X, CD),
    _e(0x00321032, "RequestingPhysician", X),
    _e(0x00321033, "RequestingService", X),
    _e(0x00321060, "RequestedProcedureDescription", X_Z, CD, t="2"),
    _e(0x00321066, "ReasonForVisit", X, CD),
    _e(0x00321067, "ReasonForVisitCodeSequence", X, CD),
    _e(0x00321070, "RequestedContrastAgent", X, CD),
    _e(0x00324000, "StudyComments", X, CD),
    _e(0x00340001, "FlowIdentifierSequence", D),
    _e(0x00340002, "FlowIdentifier", D),
    _e(0x00340005, "SourceIdentifier", D),
    _e(0x00340007, "FrameOriginTimestamp", D, MD),
    _e(0x00380004, "ReferencedPatientAliasSequence", X),
    _e(0x00380010, "AdmissionID", X),
    _e(0x00380011, "IssuerOfAdmissionID", X),
    _e(0x00380014, "IssuerOfAdmissionIDSequence", X),
    _e(0x0038001E, "ScheduledPatientInstitutionResidence", X),
    _e(0x00380020, "AdmittingDate", X, MD),
    _e(0x00380021, "AdmittingTime", X, MD),
    _e(0x00380040, "DischargeDiagnosisDescription", X, CD),
    _e(0x00380050, "SpecialNeeds", X),
    _e(0x00380060, "ServiceEpisodeID", X),
    _e(0x00380061, "IssuerOfServiceEpisodeID", X),
    _e(0x00380062, "ServiceEpisodeDescription", X, CD),
    _e(0x00380064, "IssuerOfServiceEpisodeIDSequence", X),
    _e(0x00380300, "CurrentPatientLocation", X),
    _e(0x00380400, "PatientInstitutionResidence", X),
    _e(0x00380500, "PatientState", X, CD),
    _e(0x00384000, "VisitComments", X, CD),
    _e(0x003A0310, "MultiplexGroupUID", U),
    _e(0x003A0314, "ImpedanceMeasurementDateTime", D, MD),
    _e(0x00400001, "ScheduledStationAETitle", X),
    _e(0x00400002, "ScheduledProcedureStepStartDate", X, MD),
    _e(0x00400003, "ScheduledProcedureStepStartTime", X, MD),
    _e(0x00400004, "ScheduledProcedureStepEndDate", X, MD),
    _e(0x00400005, "ScheduledProcedureStepEndTime", X, MD),
    _e(0x00400006, "ScheduledPerformingPhysicianName", X),
    _e(0x00400007, "ScheduledProcedureStepDescription", X, CD),
    _e(0x00400009, "ScheduledProcedureStepID", X),
    _e(0x0040000B, "ScheduledPerformingPhysicianIdentificationSequence", X),
    _e(0x00400010, "ScheduledStationName", X),
    _e(0x00400011, "ScheduledProcedureStepLocation", X),
    _e(0x00400012, "PreMedication", X),
    _e(0x00400241, "PerformedStationAETitle", X),
    _e(0x00400242, "PerformedStationName", X),
    _e(0x00400243, "PerformedLocation", X),
    _e(0x00400244, "PerformedProcedureStepStartDate", X, MD),
    _e(0x00400245, "PerformedProcedureStepStartTime", X, MD),
    _e(0x00400250, "PerformedProcedureStepEndDate", X, MD),
    _e(0x00400251, "PerformedProcedureStepEndTime", X, MD),
    _e(0x00400253, "PerformedProcedureStepID", X),
    _e(0x00400254, "PerformedProcedureStepDescription", X, CD),
    _e(0x00400275, "RequestAttributesSequence", X, CD),
    _e(0x00400280, "CommentsOnThePerformedProcedureStep", X, CD),
    _e(0x00400310, "CommentsOnRadiationDose", X, CD),
    _e(0x0040050A, "SpecimenAccessionNumber", X),
    _e(0x00400512, "ContainerIdentifier", D),
    _e(0x00400513, "IssuerOfTheContainerIdentifierSequence", Z),
    _e(0x0040051A, "ContainerDescription", X, CD),
    _e(0x00400551, "SpecimenIdentifier", D),
    _e(0x00400554, "SpecimenUID", U),
    _e(0x00400555, "AcquisitionContextSequence", X_Z, t=""),
    _e(0x00400562, "IssuerOfTheSpecimenIdentifierSequence", Z),
    _e(0x00400600, "SpecimenShortDescription", X, CD),
    _e(0x00400602, "SpecimenDetailedDescription", X, CD),
    _e(0x00400610, "SpecimenPreparationSequence", Z),
    _e(0x004006FA, "SlideIdentifier", X),
    _e(0x00401001, "RequestedProcedureID", X),
    _e(0x00401002, "ReasonForTheRequestedProcedure", X, CD),
    _e(0x00401004, "PatientTransportArrangements", X),
    _e(0x00401005, "RequestedProcedureLocation", X),
    _e(0x0040100A, "ReasonForRequestedProcedureCodeSequence", X, CD),
    _e(0x00401010, "NamesOfIntendedRecipientsOfResults", X),
    _e(0x00401011, "IntendedRecipientsOfResultsIdentificationSequence", X),
    _e(0x00401101, "PersonIdentificationCodeSequence", D),
    _e(0x00401102, "PersonAddress", X),
    _e(0x00401103, "PersonTelephoneNumbers", X),
    _e(0x00401104, "PersonTelecomInformation", X),
    _e(0x00401400, "RequestedProcedureComments", X, CD),
    _e(0x00402001, "ReasonForTheImagingServiceRequest", X, CD),
    _e(0x00402008, "OrderEnteredBy", X),
    _e(0x00402009, "OrderEntererLocation", X),
    _e(0x00402010, "OrderCallbackPhoneNumber", X),
    _e(0x00402011, "OrderCallbackTelecomInformation", X),
    _e(0x00402016, "PlacerOrderNumberImagingServiceRequest", Z),
    _e(0x00402017, "FillerOrderNumberImagingServiceRequest", Z),
    _e(0x00402400, "ImagingServiceRequestComments", X, CD),
    _e(0x00403001, "ConfidentialityConstraintOnPatientDataDescription", X),
    _e(0x00404005, "ScheduledProcedureStepStartDateTime", X, MD),
    _e(0x00404008, "ScheduledProcedureStepExpirationDateTime", X, MD),
    _e(0x00404010, "ScheduledProcedureStepModificationDateTime", X, MD),
    _e(0x00404011, "ExpectedCompletionDateTime", X, MD),
    _e(0x00404023, "ReferencedGeneralPurposeScheduledProcedureStepTransactionUID", U),
    _e(0x00404025, "ScheduledStationNameCodeSequence", X),
    _e(0x00404027, "ScheduledStationGeographicLocationCodeSequence", X),
    _e(0x00404028, "PerformedStationNameCodeSequence", X),
    _e(0x00404030, "PerformedStationGeographicLocationCodeSequence", X),
    _e(0x00404034, "ScheduledHumanPerformersSequence", X),
    _e(0x00404035, "ActualHumanPerformersSequence", X),
    _e(0x00404036, "HumanPerformerOrganization", X),
    _e(0x00404037, "HumanPerformerName", X),
    _e(0x00404050, "PerformedProcedureStepStartDateTime", X, MD),
    _e(0x00404051, "PerformedProcedureStepEndDateTime", X, MD),
    _e(0x00404052, "ProcedureStepCancellationDateTime", X, MD),
    _e(0x0040A027, "VerifyingOrganization", D),
    _e(0x0040A073, "VerifyingObserverSequence", D),
    _e(0x0040A075, "VerifyingObserverName", D),
    _e(0x0040A078, "AuthorObserverSequence", X),
    _e(0x0040A07A, "ParticipantSequence", X),
    _e(0x0040A07C, "CustodialOrganizationSequence", X),
    _e(0x0040A088, "VerifyingObserverIdentificationCodeSequence", Z),
    _e(0x0040A123, "PersonName", D),
    _e(0x0040A124, "UID", U),
    _e(0x0040A171, "ObservationUID", U),
    _e(0x0040A172, "ReferencedObservationUIDTrial", U),
    _e(0x0040A192, "ObservationDateTrial", X, MD),
    _e(0x0040A193, "ObservationTimeTrial", X, MD),
    _e(0x0040A307, "CurrentObserverTrial", X),
    _e(0x0040A352, "VerbalSourceTrial", X),
    _e(0x0040A353, "AddressTrial", X),
    _e(0x0040A354, "TelephoneNumberTrial", X),
    _e(0x0040A358, "VerbalSourceIdentifierCodeSequenceTrial", X),
    _e(0x0040A402, "ObservationSubjectUIDTrial", U),
    _e(0x0040A730, "ContentSequence", D),
    _e(0x0040DB0C, "TemplateExtensionOrganizationUID", U),
    _e(0x0040DB0D, "TemplateExtensionCreatorUID", U),
    _e(0x0050001B, "ContainerComponentID", X),
    _e(0x00500020, "DeviceDescription", X),
    _e(0x00500021, "LongDeviceDescription", X, CD),
    _e(0x00620021, "TrackingUID", U),
    _e(0x00700001, "GraphicAnnotationSequence", D),
    _e(0x00700084, "ContentCreatorName", Z_D, t="2"),
    _e(0x00700086, "ContentCreatorIdentificationCodeSequence", X),
    _e(0x0070031A, "FiducialUID", U),
    _e(0x00701101, "PresentationDisplayCollectionUID", U),
    _e(0x00701102, "PresentationSequenceCollectionUID", U),
    _e(0x00880140, "StorageMediaFileSetUID", U),
    _e(0x00880200, "IconImageSequence", X),
    _e(0x00880904, "TopicTitle", X),
    _e(0x00880906, "TopicSubject", X),
    _e(0x00880910, "TopicAuthor", X),
    _e(0x00880912, "TopicKeywords", X),
    _e(0x04000100, "DigitalSignatureUID", U),
    _e(0x04000402, "ReferencedDigitalSignatureSequence", X),
    _e(0x04000403, "ReferencedSOPInstanceMACSequence", X),
    _e(0x04000404, "MAC", X),
    _e(0x04000550, "ModifiedAttributesSequence", X),
    _e(0x04000551, "NonconformingModifiedAttributesSequence", X),
    _e(0x04000552, "NonconformingDataElementValue", X),
    _e(0x04000561, "OriginalAttributesSequence", X),
    _e(0x04000600, "InstanceOriginStatus", X),
    _e(0x20300020, "TextString", X),
    _e(0x22000002, "LabelText", X_Z, CD, t=""),
    _e(0x22000005, "BarcodeValue", X_Z, t=""),
    _e(0x30060002, "StructureSetLabel", D, CD),
    _e(0x30060004, "StructureSetName", X, CD),
    _e(0x30060006, "StructureSetDescription", X, CD),
    _e(0x30060008, "StructureSetDate", Z, MD),
    _e(0x30060009, "StructureSetTime", X_D, MD),
    _e(0x30060024, "ReferencedFrameOfReferenceUID", U),
    _e(0x30060026, "ROIName", Z, CD),
    _e(0x30060028, "ROIDescription", X, CD),
    _e(0x30060038, "ROIGenerationDescription", X, CD),
    _e(0x30060085, "ROIObservationLabel", X, CD),
    _e(0x30060088, "ROIObservationDescription", X, CD),
    _e(0x300600A6, "ROIInterpreter", Z),
    _e(0x300600C2, "RelatedFrameOfReferenceUID", U),
    _e(0x30080054, "FirstTreatmentDate", X_D, MD),
    _e(0x30080056, "MostRecentTreatmentDate", X_D, MD),
    _e(0x30080105, "SourceSerialNumber", X_Z, t=""),
    _e(0x30080250, "TreatmentDate", X_D, MD),
    _e(0x30080251, "TreatmentTime", X_D, MD),
    _e(0x300A0002, "RTPlanLabel", D, CD),
    _e(0x300A0003, "RTPlanName", X, CD),
    _e(0x300A0004, "RTPlanDescription", X, CD),
    _e(0x300A0006, "RTPlanDate", X_D, MD),
    _e(0x300A0007, "RTPlanTime", X_D, MD),
    _e(0x300A000E, "PrescriptionDescription", X, CD),
    _e(0x300A0013, "DoseReferenceUID", U),
    _e(0x300A0016, "DoseReferenceDescription", X, CD),
    _e(0x300A0072, "FractionGroupDescription", X, CD),
    _e(0x300A0083, "ReferencedDoseReferenceUID", U),
    _e(0x300A00B2, "TreatmentMachineName", X),
    _e(0x300A00C3, "BeamDescription", X, CD),
    _e(0x300A00DD, "BolusDescription", X, CD),
    _e(0x300A0196, "FixationDeviceDescription", X, CD),
    _e(0x300A01A6, "ShieldingDeviceDescription", X, CD),
    _e(0x300A01B2, "SetupTechniqueDescription", X, CD),
    _e(0x300A0216, "SourceManufacturer", X),
    _e(0x300A02EB, "CompensatorDescription", X, CD),
    _e(0x300A0608, "TreatmentPositionGroupLabel", D, CD),
    _e(0x300A0609, "TreatmentPositionGroupUID", U),
    _e(0x300A0611, "RTAccessoryHolderSlotID", Z),
    _e(0x300A0615, "RTAccessoryDeviceSlotID", Z),
    _e(0x300A0619, "RadiationDoseIdentificationLabel", D, CD),
    _e(0x300A0623, "RadiationDoseInVivoMeasurementLabel", D, CD),
    _e(0x300A062A, "RTToleranceSetLabel", D, CD),
    _e(0x300A0650, "PatientSetupUID", U),
    _e(0x300A0676, "EquipmentFrameOfReferenceDescription", X, CD),
    _e(0x300A067C, "RadiationGenerationModeLabel", D, CD),
    _e(0x300A067D, "RadiationGenerationModeDescription", Z, CD),
    _e(0x300A0700, "TreatmentSessionUID", U),
    _e(0x300A0734, "TreatmentToleranceViolationDescription", D, CD),
    _e(0x300A0736, "TreatmentToleranceViolationDateTime", D, MD),
    _e(0x300A073A, "RecordedRTControlPointDateTime", D, MD),
    _e(0x300A0741, "InterlockDateTime", D, MD),
    _e(0x300A0742, "InterlockDescription", D, CD),
    _e(0x300A0760, "OverrideDateTime", D, MD),
    _e(0x300A0783, "InterlockOriginDescription", D, CD),
    _e(0x300C0113, "ReasonForOmissionDescription", X, CD),
    _e(0x300E0008, "ReviewerName", X_Z, t=""),
    _e(0x30100006, "ConceptualVolumeUID", U),
    _e(0x3010000B, "ReferencedConceptualVolumeUID", U),
    _e(0x3010000F, "ConceptualVolumeCombinationDescription", Z, CD),
    _e(0x30100013, "ConstituentConceptualVolumeUID", U),
    _e(0x30100015, "SourceConceptualVolumeUID", U),
    _e(0x30100017, "ConceptualVolumeDescription", Z, CD),
    _e(0x3010001B, "DeviceAlternateIdentifier", Z),
    _e(0x3010002D, "DeviceLabel", D),
    _e(0x30100031, "ReferencedFiducialsUID", U),
    _e(0x30100033, "UserContentLabel", D, CD),
    _e(0x30100034, "UserContentLongLabel", D, CD),
    _e(0x30100035, "EntityLabel", D, CD),
    _e(0x30100036, "EntityName", X, CD),
    _e(0x30100037, "EntityDescription", X, CD),
    _e(0x30100038, "EntityLongLabel", D, CD),
    _e(0x3010003B, "RTTreatmentPhaseUID", U),
    _e(0x30100043, "ManufacturerDeviceIdentifier", Z),
    _e(0x3010004C, "IntendedPhaseStartDate", X_D, MD),
    _e(0x3010004D, "IntendedPhaseEndDate", X_D, MD),
    _e(0x30100054, "RTPrescriptionLabel", D, CD),
    _e(0x30100056, "RTTreatmentApproachLabel", X_D, CD, t=""),
    _e(0x3010005A, "RTPhysicianIntentNarrative", Z, CD),
    _e(0x3010005C, "ReasonForSuperseding", Z, CD),
    _e(0x30100061, "PriorTreatmentDoseDescription", X, CD),
    _e(0x3010006E, "DosimetricObjectiveUID", U),
    _e(0x3010006F, "ReferencedDosimetricObjectiveUID", U),
    _e(0x30100077, "TreatmentSite", D, CD),
    _e(0x3010007A, "TreatmentTechniqueNotes", Z, CD),
    _e(0x3010007B, "PrescriptionNotes", Z, CD),
    _e(0x3010007F, "FractionationNotes", Z, CD),
    _e(0x30100081, "PrescriptionNotesSequence", Z, CD),
    _e(0x40000010, "Arbitrary", X),
    _e(0x40004000, "TextComments", X),
    _e(0x40080042, "ResultsIDIssuer", X),
    _e(0x40080102, "InterpretationRecorder", X),
    _e(0x4008010A, "InterpretationTranscriber", X),
    _e(0x4008010B, "InterpretationText", X, CD),
    _e(0x4008010C, "InterpretationAuthor", X),
    _e(0x40080111, "InterpretationApproverSequence", X),
    _e(0x40080114, "PhysicianApprovingInterpretation", X),
    _e(0x40080115, "InterpretationDiagnosisDescription", X, CD),
    _e(0x40080118, "ResultsDistributionListSequence", X),
    _e(0x40080119, "DistributionName", X),
    _e(0x4008011A, "DistributionAddress", X),
    _e(0x40080202, "InterpretationIDIssuer", X),
    _e(0x40080300, "Impressions", X, CD),
    _e(0x40084000, "ResultsComments", X, CD),
    _e(0xFFFAFFFA, "DigitalSignaturesSequence", X),
    _e(0xFFFCFFFC, "DataSetTrailingPadding", X),
    # repeating groups
    _e(0x50000000, "CurveData", X, mask=0xFF000000),  # (50xx,xxxx): every element of the group
    _e(0x60003000, "OverlayData", X, mask=0xFF00FFFF),  # (60xx,3000)
    _e(0x60004000, "OverlayComments", X, mask=0xFF00FFFF),  # (60xx,4000)
)

#: Attributes Table E.1-1 does not name that are removed all the same (``source="supplement"``).
SUPPLEMENT: tuple[ProfileEntry, ...] = (
    # File Meta Information (PS3.10 7.1): who sent the file, and private data of the writer.
    _e(0x00020016, "SourceApplicationEntityTitle", X, source="supplement"),
    _e(0x00020017, "SendingApplicationEntityTitle", X, source="supplement"),
    _e(0x00020018, "ReceivingApplicationEntityTitle", X, source="supplement"),
    _e(0x00020100, "PrivateInformationCreatorUID", X, source="supplement"),
    _e(0x00020102, "PrivateInformation", X, source="supplement"),
    # names the organisation that issued the Accession Number (Z in the table)
    _e(0x00080051, "IssuerOfAccessionNumberSequence", X, source="supplement"),
    # the issuer of the Patient ID (which the table removes: Issuer of Patient ID, X)
    _e(0x00100024, "IssuerOfPatientIDQualifiersSequence", X, source="supplement"),
    # the birth and death dates of the patient, in another calendar
    _e(0x00100033, "PatientBirthDateInAlternativeCalendar", X, source="supplement"),
    _e(0x00100034, "PatientDeathDateInAlternativeCalendar", X, source="supplement"),
    # original values encrypted for some recipient: nothing we can check or re-key
    _e(0x04000500, "EncryptedAttributesSequence", X, source="supplement"),
    # the rest of an Overlay Plane (its Type 1 Overlay Data is removed by the table)
    _e(0x60000000, "OverlayPlane", X, mask=0xFF000000, source="supplement"),
)

_BY_TAG: dict[int, ProfileEntry] = {
    e.tag: e for e in (*TABLE_E1_1, *SUPPLEMENT) if e.mask == _FULL_MASK
}
_GROUP_RULES: tuple[ProfileEntry, ...] = tuple(
    e for e in (*TABLE_E1_1, *SUPPLEMENT) if e.mask != _FULL_MASK
)  # the table's rows before the supplement's wider overlay rule


def profile_entry(tag: int) -> ProfileEntry | None:
    """The row that applies to a public ``tag``, or None when neither table names it."""
    entry = _BY_TAG.get(tag)
    if entry is not None:
        return entry
    return next((e for e in _GROUP_RULES if e.matches(tag)), None)
