"""Table E.1-1 (PS3.15) row by row: each attribute alone in a dataset, de-identified.

For every row of :data:`TABLE_E1_1` and :data:`SUPPLEMENT` a dataset holds the attribute with a
value valid for its VR (plus a Patient ID, from which the pseudonym and the date offset come),
and the test checks what the resolved action must do: D → a dummy of the same VR, Z → present
and empty, X → absent, U → the remapped UID, U* → the sequence kept with its items
de-identified, C (modified dates) → dates moved by the patient's offset, times kept,
C (clean descriptors) → no coded content to derive from here, so the Basic Profile action.
Then the rules outside the table: private attributes, curves and overlays, attributes the table
does not list, and what is refused.
"""

from __future__ import annotations

import copy
import datetime
from typing import Any

import pytest
from pydicom.datadict import dictionary_VR, get_entry, keyword_for_tag
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.tag import Tag

from dicom_gateway.deid import (
    SUPPLEMENT,
    TABLE_E1_1,
    Deidentifier,
    Effect,
    ProfileEntry,
    UnsafeAttributeError,
    profile_entry,
)
from dicom_gateway.errors import GatewayError

SECRET = b"profile-test-secret-0123456789"
PATIENT_ID = "PAT-PROFILE-0001"
DEID = Deidentifier(SECRET)
OFFSET = DEID.date_offset_days(PATIENT_ID)
PSEUDONYM = DEID.patient_pseudonym(PATIENT_ID)
UID = "1.2.826.0.1.3680043.10.999.1.2.3"
ITEM_SECRETS = ("Secret^Person", "Secret Institution", UID)

ENTRIES = [*TABLE_E1_1, *SUPPLEMENT]
#: A concrete tag for the repeating-group rows (group +2 to exercise the mask).
CONCRETE = {
    "CurveData": 0x50023000,
    "OverlayData": 0x60023000,
    "OverlayComments": 0x60024000,
    "OverlayPlane": 0x60020010,
}


def _tag(entry: ProfileEntry) -> int:
    return CONCRETE.get(entry.keyword, entry.tag) if entry.mask != 0xFFFFFFFF else entry.tag


def _item() -> Dataset:
    item = Dataset()
    item.PersonName = "Secret^Person"  # D
    item.InstitutionName = "Secret Institution"  # X
    item.ReferencedSOPInstanceUID = UID  # U
    return item


def _value(vr: str) -> Any:
    """A value valid for ``vr`` that no action leaves unchanged by chance."""
    samples: dict[str, Any] = {
        "AE": "SECRETAE",
        "AS": "045Y",
        "CS": "SECRET_CS",
        "DA": "20210315",
        "DS": "12.5",
        "DT": "20210315101112.25+0100",
        "FD": 1.5,
        "FL": 1.5,
        "IS": "12",
        "LO": "Secret long string",
        "LT": "Secret long text",
        "PN": "Secret^Person",
        "SH": "SECRET-SH",
        "SL": 7,
        "SS": 7,
        "ST": "Secret short text",
        "TM": "101112",
        "UC": "Secret unlimited",
        "UI": UID,
        "UL": 7,
        "UR": "http://example.org/secret",
        "US": 7,
        "UT": "Secret unlimited text",
    }
    if vr == "SQ":
        return Sequence([_item()])
    if vr in ("OB", "OW", "OF", "OD", "OL", "OV", "UN"):
        return b"SECRET\x01\x02"
    return samples[vr]


def _vr(tag: int) -> str:
    return dictionary_VR(tag).split(" or ")[0]


def _run(entry: ProfileEntry) -> tuple[int, str, Any, Dataset]:
    tag = _tag(entry)
    vr = _vr(tag)
    value = PATIENT_ID if entry.keyword == "PatientID" else _value(vr)
    ds = Dataset()
    ds.PatientID = PATIENT_ID
    if tag >> 16 == 0x0002:
        ds.file_meta = FileMetaDataset()
        ds.file_meta.add_new(tag, vr, value)
    else:
        ds.add_new(tag, vr, value)
    out = DEID.deidentify(ds)
    return tag, vr, value, (out.file_meta if tag >> 16 == 0x0002 else out)


def _days(da: str) -> datetime.date:
    return datetime.date(int(da[:4]), int(da[4:6]), int(da[6:8]))


def _check_items(elem: DataElement) -> None:
    assert elem.VR == "SQ" and len(elem.value) == 1
    item = elem.value[0]
    assert item.ReferencedSOPInstanceUID == DEID.remap_uid(UID)
    assert "InstitutionName" not in item
    assert str(item.PersonName) not in ("", "Secret^Person")
    assert not any(s in str(elem) for s in ITEM_SECRETS)


def _check(
    effect: Effect, entry: ProfileEntry, tag: int, vr: str, value: Any, out: Dataset
) -> None:
    if effect is Effect.CLEAN_DESCRIPTOR and vr != "SQ":
        # nothing coded to derive a neutral value from here: the Basic Profile action
        _check(entry.basic_effect, entry, tag, vr, value, out)
        return
    if effect is Effect.REMOVE:
        assert tag not in out
        return
    assert tag in out, f"{entry.keyword} was removed"
    elem = out[tag]
    assert vr == elem.VR
    if effect is Effect.EMPTY:
        if entry.keyword in ("PatientID", "PatientName"):
            assert str(elem.value) == PSEUDONYM  # Z's "dummy value": the pseudonym
        else:
            assert elem.is_empty
    elif effect is Effect.DUMMY:
        assert not elem.is_empty
        if vr == "SQ" and entry.keyword.endswith("CodeSequence"):
            assert elem.value[0].CodingSchemeDesignator == "99DEID"
            assert not any(s in str(elem) for s in ITEM_SECRETS)
        elif vr == "SQ":
            _check_items(elem)
        elif vr == "UI":
            assert elem.value == DEID.remap_uid(value)
        else:
            assert elem.value != value
    elif effect is Effect.REMAP_UID:
        assert elem.value == DEID.remap_uid(value) != value
        assert elem.value.startswith("2.25.")
    elif effect in (Effect.DEIDENTIFY_ITEMS, Effect.KEEP) and vr == "SQ":
        _check_items(elem)
    elif effect is Effect.SHIFT_DATES:
        if vr == "DA":
            assert _days(elem.value) - _days(value) == datetime.timedelta(days=OFFSET)
        elif vr == "DT":
            assert _days(elem.value) - _days(value) == datetime.timedelta(days=OFFSET)
            assert elem.value[8:] == value[8:]  # time and UTC offset kept
        else:
            assert elem.value == value  # times (and the UTC offset) are kept
    elif effect is Effect.CLEAN_DESCRIPTOR:  # a sequence: kept, items de-identified
        _check_items(elem)
    else:
        raise AssertionError(f"unexpected effect {effect}")


@pytest.mark.parametrize("entry", ENTRIES, ids=[f"{e.source}:{e.keyword}" for e in ENTRIES])
def test_row_action(entry: ProfileEntry) -> None:
    tag, vr, value, out = _run(entry)
    _check(entry.effect, entry, tag, vr, value, out)


def test_table_is_complete_and_consistent() -> None:
    assert len(TABLE_E1_1) >= 450
    assert len({(e.tag, e.mask) for e in ENTRIES}) == len(ENTRIES)
    for e in ENTRIES:
        tag = _tag(e)
        assert get_entry(tag)[4] == e.keyword or e.keyword == "OverlayPlane", e
        assert profile_entry(tag) is e, e
        if e.mask == 0xFFFFFFFF:
            assert keyword_for_tag(e.tag) == e.keyword
    # one row per attribute class of the standard that matters most here
    for keyword in ("PatientName", "StudyInstanceUID", "InstitutionName", "ContentSequence"):
        assert any(e.keyword == keyword for e in TABLE_E1_1)


@pytest.mark.parametrize(
    ("keyword", "effect", "basic"),
    [
        ("PatientName", Effect.EMPTY, Effect.EMPTY),
        ("PatientID", Effect.EMPTY, Effect.EMPTY),
        ("PatientBirthDate", Effect.EMPTY, Effect.EMPTY),
        ("AccessionNumber", Effect.EMPTY, Effect.EMPTY),
        ("StudyID", Effect.EMPTY, Effect.EMPTY),
        ("ReferringPhysicianName", Effect.EMPTY, Effect.EMPTY),
        ("StudyDate", Effect.SHIFT_DATES, Effect.EMPTY),
        ("ContentDate", Effect.SHIFT_DATES, Effect.EMPTY),  # Z/D, Type 2 in CT
        ("SeriesTime", Effect.SHIFT_DATES, Effect.REMOVE),  # X/D, Type 3
        ("AcquisitionDateTime", Effect.SHIFT_DATES, Effect.REMOVE),
        ("DeviceSerialNumber", Effect.DUMMY, Effect.DUMMY),  # X/Z/D, Type 1 in SEG/SR
        ("InstitutionName", Effect.REMOVE, Effect.REMOVE),  # X/Z/D, Type 3
        ("StationName", Effect.REMOVE, Effect.REMOVE),
        ("OperatorsName", Effect.REMOVE, Effect.REMOVE),
        ("ReferencedPerformedProcedureStepSequence", Effect.EMPTY, Effect.EMPTY),  # SR: 2
        ("ReferencedStudySequence", Effect.REMOVE, Effect.REMOVE),
        ("SourceImageSequence", Effect.DEIDENTIFY_ITEMS, Effect.DEIDENTIFY_ITEMS),
        ("ReferencedImageSequence", Effect.DEIDENTIFY_ITEMS, Effect.DEIDENTIFY_ITEMS),
        ("ContentCreatorName", Effect.EMPTY, Effect.EMPTY),  # Z/D, Type 2 in SEG
        ("PatientSexNeutered", Effect.EMPTY, Effect.EMPTY),  # X/Z, Type 2C
        ("AcquisitionContextSequence", Effect.REMOVE, Effect.REMOVE),
        ("StudyDescription", Effect.CLEAN_DESCRIPTOR, Effect.REMOVE),
        ("ProtocolName", Effect.CLEAN_DESCRIPTOR, Effect.REMOVE),  # X/D, Type 3
        ("ContrastBolusAgent", Effect.CLEAN_DESCRIPTOR, Effect.EMPTY),  # Z/D, Type 2
        ("RequestedProcedureDescription", Effect.CLEAN_DESCRIPTOR, Effect.EMPTY),
        ("ContentSequence", Effect.DUMMY, Effect.DUMMY),
        ("SOPInstanceUID", Effect.REMAP_UID, Effect.REMAP_UID),
    ],
)
def test_compound_actions_resolved(keyword: str, effect: Effect, basic: Effect) -> None:
    (entry,) = [e for e in TABLE_E1_1 if e.keyword == keyword]
    assert (entry.effect, entry.basic_effect) == (effect, basic)


def _patient() -> Dataset:
    ds = Dataset()
    ds.PatientID = PATIENT_ID
    ds.PatientName = "Secret^Patient"
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.SOPInstanceUID = UID
    return ds


def _tags(ds: Dataset) -> list[Any]:
    found = []
    for elem in ds:
        found.append(elem.tag)
        if elem.VR == "SQ":
            for item in elem.value:
                found.extend(_tags(item))
    return found


def test_private_attributes_are_removed_everywhere() -> None:
    ds = _patient()
    block = ds.private_block(0x0009, "ACME 1.0", create=True)
    block.add_new(0x01, "LO", "Secret^Patient private note")
    item = Dataset()
    item.SeriesInstanceUID = UID
    item.private_block(0x0011, "ACME 1.0", create=True).add_new(0x02, "LO", "nested secret")
    ds.ReferencedSeriesSequence = [item]
    out = DEID.deidentify(ds)
    assert not [t for t in _tags(out) if t.group % 2]
    assert "secret" not in str(out).lower()
    assert out.ReferencedSeriesSequence[0].SeriesInstanceUID == DEID.remap_uid(UID)


def test_curves_and_overlays_are_removed() -> None:
    ds = _patient()
    for group in (0x6000, 0x6002):
        ds.add_new((group, 0x0010), "US", 48)  # Overlay Rows
        ds.add_new((group, 0x0011), "US", 48)
        ds.add_new((group, 0x0040), "CS", "G")
        ds.add_new((group, 0x0050), "SS", [1, 1])
        ds.add_new((group, 0x0100), "US", 1)
        ds.add_new((group, 0x0102), "US", 0)
        ds.add_new((group, 0x3000), "OW", b"\xff" * 288)
        ds.add_new((group, 0x4000), "LT", "Secret overlay comment")
    ds.add_new((0x5000, 0x0005), "US", 1)  # Curve Dimensions
    ds.add_new((0x5000, 0x3000), "OB", b"curve")
    out = DEID.deidentify(ds)
    assert not [t for t in _tags(out) if t.group >> 8 in (0x50, 0x60)]


def test_unlisted_public_attributes() -> None:
    """Kept, with their dates shifted, names replaced and instance UIDs remapped."""
    ds = _patient()
    ds.Manufacturer = "ACME"
    ds.SliceThickness = "1.25"
    ds.InstanceCreationDate = "20210315"
    ds.EvaluatorName = "Secret^Evaluator"
    ds.SOPInstanceUIDOfConcatenationSource = UID
    ds.CodingSchemeUID = "1.2.3.4.5"  # names a scheme: kept
    ds.FrameOfReferenceUID = "1.2.840.10008.1.4.1.1"  # U, but well-known (Talairach): kept
    ds.SecondaryReviewerName = ""  # an empty name stays empty
    equipment = Dataset()
    equipment.ContributionDateTime = "20210315101112"
    equipment.Manufacturer = "ACME"
    ds.ContributingEquipmentSequence = [equipment]
    out = DEID.deidentify(ds)
    assert (out.Manufacturer, out.SliceThickness) == ("ACME", "1.25")
    assert out.SOPClassUID == ds.SOPClassUID
    assert out.CodingSchemeUID == "1.2.3.4.5"
    assert out.FrameOfReferenceUID == "1.2.840.10008.1.4.1.1"
    assert out["SecondaryReviewerName"].is_empty
    assert out.SOPInstanceUIDOfConcatenationSource == DEID.remap_uid(UID) == out.SOPInstanceUID
    assert _days(out.InstanceCreationDate) - _days("20210315") == datetime.timedelta(OFFSET)
    shifted = out.ContributingEquipmentSequence[0].ContributionDateTime
    assert _days(shifted) - _days("20210315") == datetime.timedelta(OFFSET)
    assert shifted.endswith("101112")
    assert "Secret" not in str(out.EvaluatorName) and not out["EvaluatorName"].is_empty


def test_input_is_left_untouched() -> None:
    ds = _patient()
    ds.StudyDate = "20210315"
    ds.OtherPatientIDsSequence = [Dataset()]
    ds.OtherPatientIDsSequence[0].PatientID = "OTHER-1"
    ds.private_block(0x0009, "ACME 1.0", create=True).add_new(0x01, "LO", "private")
    before = copy.deepcopy(ds)
    DEID.deidentify(ds)
    assert ds == before


def test_unknown_public_attribute_is_refused() -> None:
    ds = _patient()
    ds.add(DataElement(0x0018EEEE, "LO", "who knows"))
    with pytest.raises(UnsafeAttributeError, match=r"\(0018,EEEE\)") as caught:
        DEID.deidentify(ds)
    assert isinstance(caught.value, GatewayError)
    assert caught.value.sop_instance_uid == UID
    ds[0x0018EEEE].value = ""  # empty: nothing to leak, dropped
    assert Tag(0x0018EEEE) not in DEID.deidentify(ds)


def test_values_of_unknown_vr() -> None:
    """UN values of known attributes are read with their dictionary VR; unknown ones refused."""
    ds = _patient()
    ds.add(DataElement(0x00080080, "UN", b"Secret Institution"))  # X
    ds.add(DataElement(0x00080020, "UN", b"20210315"))  # DA: shifted
    out = DEID.deidentify(ds)
    assert "InstitutionName" not in out
    assert _days(out.StudyDate) - _days("20210315") == datetime.timedelta(OFFSET)
    ds.add(DataElement(0x0018EEEE, "UN", b"\x01\x02"))
    with pytest.raises(UnsafeAttributeError, match=r"\(0018,EEEE\): value of unknown VR"):
        DEID.deidentify(ds)


def test_malformed_date_is_refused_naming_the_attribute() -> None:
    ds = _patient()
    item = Dataset()
    with pytest.warns(UserWarning, match="Invalid value for VR DT"):
        item.ContributionDateTime = "2021-03-15 10:11"
    ds.ContributingEquipmentSequence = [item]
    with pytest.raises(UnsafeAttributeError, match=r"ContributingEquipmentSequence\[0\]"):
        DEID.deidentify(ds)


def test_patient_id_is_required() -> None:
    ds = _patient()
    ds.PatientID = ""
    with pytest.raises(UnsafeAttributeError, match="PatientID"):
        DEID.deidentify(ds)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2021", "2020"),  # year only: shifted from 1 January, written back as a year
        ("202103", "202102"),
        ("20210315", "20210215"),
        ("20210315101112.123456+0100", "20210215101112.123456+0100"),
    ],
)
def test_datetime_precision_is_kept(value: str, expected: str) -> None:
    deid = Deidentifier(SECRET, date_shift_range_days=(-28, -28))
    ds = _patient()
    ds.AcquisitionDateTime = value
    assert deid.deidentify(ds).AcquisitionDateTime == expected


@pytest.mark.parametrize("bad", [(-5, 5), (0, 0), (3, 1)])
def test_date_shift_range_must_exclude_zero(bad: tuple[int, int]) -> None:
    with pytest.raises(ValueError, match="date_shift_range_days"):
        Deidentifier(SECRET, date_shift_range_days=bad)
