"""The lost-to-follow-up worklist as JSON, CSV and a FHIR R4 Bundle (preread.backfill.exports)."""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
import json

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.flag import Flag
from fhir.resources.R4B.patient import Patient

from preread.backfill.exports import (
    FIELDS,
    ExportError,
    LostCase,
    ordered,
    to_csv,
    to_fhir,
    to_json,
)

CHECKED = dt.datetime(2025, 6, 1, 8, 30, tzinfo=dt.UTC)
GENERATED = dt.datetime(2025, 6, 1, 9, 0, 5, tzinfo=dt.UTC)


def _case(**changes: object) -> LostCase:
    base = LostCase(
        tenant="default",
        patient_id="P-1",
        issuer_of_patient_id="",
        study_instance_uid="1.2.826.0.1.1",
        accession_number="ACC-1",
        study_date=dt.date(2021, 3, 4),
        largest_mean_diameter_mm=7.5,
        largest_type="solid",
        nodules_ge_6mm=1,
        lung_rads="3",
        model="lung-nodule 2.4.0",
        checked_at=CHECKED,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


# a 4B case, a larger category-3 case, an older category-3 case of the same size, no category
SMALL_4B = _case(
    patient_id="P-4B",
    study_instance_uid="1.2.826.0.1.2",
    largest_mean_diameter_mm=9.0,
    lung_rads="4B",
    largest_type="part-solid",
)
LARGE_3 = _case(
    patient_id="P-3-large", study_instance_uid="1.2.826.0.1.3", largest_mean_diameter_mm=25.4
)
OLD_3 = _case(
    patient_id="P-3-old",
    study_instance_uid="1.2.826.0.1.4",
    largest_mean_diameter_mm=25.4,
    study_date=dt.date(2019, 1, 2),
)
NONE = _case(
    patient_id="P-none",
    study_instance_uid="1.2.826.0.1.5",
    largest_mean_diameter_mm=40.0,
    lung_rads=None,
    largest_type=None,
    nodules_ge_6mm=3,
)
ZERO = _case(patient_id="P-0", study_instance_uid="1.2.826.0.1.6", lung_rads="0")
X = _case(patient_id="P-4X", study_instance_uid="1.2.826.0.1.7", lung_rads="4X")
ALL = [NONE, LARGE_3, ZERO, SMALL_4B, OLD_3, X]
EXPECTED_ORDER = ["P-4X", "P-4B", "P-3-old", "P-3-large", "P-0", "P-none"]


def test_field_names_are_the_rows_columns() -> None:
    assert FIELDS == (
        "tenant",
        "patient_id",
        "issuer_of_patient_id",
        "study_instance_uid",
        "accession_number",
        "study_date",
        "largest_mean_diameter_mm",
        "largest_type",
        "nodules_ge_6mm",
        "lung_rads",
        "model",
        "checked_at",
    )


def test_order_is_category_then_size_then_oldest_first() -> None:
    assert [c.patient_id for c in ordered(ALL)] == EXPECTED_ORDER
    assert [c.patient_id for c in ordered(list(reversed(ALL)))] == EXPECTED_ORDER


def test_json_round_trip() -> None:
    doc = json.loads(to_json(ALL))
    assert doc["kind"] == "preread.lost-to-follow-up"
    assert doc["version"] == 1
    assert doc["count"] == 6
    assert [c["patient_id"] for c in doc["cases"]] == EXPECTED_ORDER
    first_4b = doc["cases"][1]
    assert first_4b == {
        "tenant": "default",
        "patient_id": "P-4B",
        "issuer_of_patient_id": "",
        "study_instance_uid": "1.2.826.0.1.2",
        "accession_number": "ACC-1",
        "study_date": "2021-03-04",
        "largest_mean_diameter_mm": 9.0,
        "largest_type": "part-solid",
        "nodules_ge_6mm": 1,
        "lung_rads": "4B",
        "model": "lung-nodule 2.4.0",
        "checked_at": "2025-06-01T08:30:00+00:00",
    }
    last = doc["cases"][-1]
    assert last["lung_rads"] is None and last["largest_type"] is None
    assert dt.date.fromisoformat(doc["cases"][2]["study_date"]) == dt.date(2019, 1, 2)
    assert dt.datetime.fromisoformat(last["checked_at"]) == CHECKED


def test_json_keeps_non_ascii_text() -> None:
    text = to_json([_case(patient_id="患者-001")])
    assert "患者-001" in text
    assert json.loads(text)["cases"][0]["patient_id"] == "患者-001"


def test_json_of_no_cases() -> None:
    assert json.loads(to_json([])) == {
        "kind": "preread.lost-to-follow-up",
        "version": 1,
        "count": 0,
        "cases": [],
    }


def test_csv_round_trip() -> None:
    text = to_csv([NONE, SMALL_4B])
    assert text.startswith("tenant,patient_id,issuer_of_patient_id,") and "\r\n" in text
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert rows[0] == list(FIELDS)
    assert rows[1] == [
        "default",
        "P-4B",
        "",
        "1.2.826.0.1.2",
        "ACC-1",
        "2021-03-04",
        "9.0",
        "part-solid",
        "1",
        "4B",
        "lung-nodule 2.4.0",
        "2025-06-01T08:30:00+00:00",
    ]
    assert rows[2][1] == "P-none" and rows[2][7] == "" and rows[2][9] == ""
    assert len(rows) == 3


def test_csv_guards_against_formula_injection() -> None:
    cases = [
        _case(patient_id='=HYPERLINK("x")', study_instance_uid="1.2.3.1"),
        _case(patient_id="+1", accession_number="-2", study_instance_uid="1.2.3.2"),
        _case(patient_id="@SUM(A1)", accession_number="\tx", study_instance_uid="1.2.3.3"),
        _case(patient_id="\r=1", accession_number="＝1+1", study_instance_uid="1.2.3.4"),
        _case(patient_id="A=1", accession_number="x-2", study_instance_uid="1.2.3.5"),
    ]
    rows = list(csv.reader(io.StringIO(to_csv(cases), newline="")))[1:]
    got = {(r[1], r[4]) for r in rows}
    assert got == {
        ('\'=HYPERLINK("x")', "ACC-1"),
        ("'+1", "'-2"),
        ("'@SUM(A1)", "'\tx"),
        ("'\r=1", "'＝1+1"),
        ("A=1", "x-2"),  # only a leading character makes a formula
    }


def test_csv_keeps_chinese_text() -> None:
    case = _case(patient_id="患者-001", accession_number="检查号-7")
    rows = list(csv.reader(io.StringIO(to_csv([case]), newline="")))
    assert rows[1][1] == "患者-001" and rows[1][4] == "检查号-7"


def test_csv_of_no_cases_is_the_header() -> None:
    assert to_csv([]) == ",".join(FIELDS) + "\r\n"


def test_fhir_bundle() -> None:
    with_issuer = _case(
        patient_id="患者-001",
        issuer_of_patient_id="1.2.840.99",
        study_instance_uid="1.2.826.0.1.9",
        lung_rads="4A",
        largest_mean_diameter_mm=12.34,
    )
    local_issuer = _case(patient_id="P-7", issuer_of_patient_id="HOSP-A", study_instance_uid="1.9")
    raw = to_fhir([NONE, with_issuer, local_issuer], generated_at=GENERATED)
    bundle = Bundle.model_validate_json(raw)
    assert bundle.type == "collection"
    assert raw.count('"timestamp":"2025-06-01T09:00:05Z"') == 1
    entries = bundle.entry or []
    assert len(entries) == 6
    urls = [str(e.fullUrl) for e in entries]
    assert all(u.startswith("urn:uuid:") for u in urls) and len(set(urls)) == 6
    patients = {str(e.fullUrl): e.resource for e in entries if isinstance(e.resource, Patient)}
    flags = [e.resource for e in entries if isinstance(e.resource, Flag)]
    assert len(patients) == 3 and len(flags) == 3
    subjects = [_subject(f) for f in flags]
    assert all(s in patients for s in subjects)
    for flag in flags:
        assert flag.status == "active"
        assert flag.category is not None and flag.category[0].coding is not None
        assert flag.category[0].coding[0].code == "clinical"
    # in worklist order: the 4A case first
    flag = flags[0]
    assert flag.code.text == (
        "Lung nodule 12.3 mm (Lung-RADS 4A) on CT of 2021-03-04; no later CT in the PACS"
    )
    assert flag.period is not None and str(flag.period.start) == "2021-03-04"
    assert '"period":{"start":"2021-03-04"}' in raw
    assert flag.identifier is not None
    assert (flag.identifier[0].system, flag.identifier[0].value) == (
        "urn:dicom:uid",
        "urn:oid:1.2.826.0.1.9",
    )
    patient = patients[subjects[0]]
    assert patient.name is None and patient.birthDate is None
    assert patient.identifier is not None
    assert [(i.system, i.value) for i in patient.identifier] == [("urn:oid:1.2.840.99", "患者-001")]
    assert flags[2].code.text == "Lung nodule 40.0 mm on CT of 2021-03-04; no later CT in the PACS"
    local_ids = patients[subjects[1]].identifier
    assert local_ids is not None and local_ids[0].assigner is not None
    assert (local_ids[0].system, local_ids[0].value, local_ids[0].assigner.display) == (
        "urn:preread:tenant:default:patient-id",
        "P-7",
        "HOSP-A",
    )


def _subject(flag: Flag) -> str:
    assert flag.subject.reference is not None
    return str(flag.subject.reference)


def test_fhir_is_deterministic() -> None:
    first = to_fhir(ALL, generated_at=GENERATED)
    assert to_fhir(list(reversed(ALL)), generated_at=GENERATED) == first
    assert (
        to_fhir(ALL, generated_at=GENERATED.astimezone(dt.timezone(dt.timedelta(hours=8)))) == first
    )
    other = to_fhir([_case(patient_id="P-other")], generated_at=GENERATED)
    assert json.loads(other)["entry"][0]["fullUrl"] not in first


def test_fhir_of_no_cases() -> None:
    raw = to_fhir([], generated_at=GENERATED)
    bundle = Bundle.model_validate_json(raw)
    assert bundle.entry is None
    assert json.loads(raw) == {
        "resourceType": "Bundle",
        "type": "collection",
        "timestamp": "2025-06-01T09:00:05Z",
    }


def test_fhir_refuses_what_it_cannot_write() -> None:
    with pytest.raises(ValueError, match="timezone"):
        to_fhir([], generated_at=dt.datetime(2025, 6, 1))
    with pytest.raises(ExportError, match="twice"):
        to_fhir([LARGE_3, LARGE_3], generated_at=GENERATED)


def test_fhir_patient_without_id_has_no_identifier() -> None:
    raw = to_fhir([_case(patient_id="  ")], generated_at=GENERATED)
    entries = Bundle.model_validate_json(raw).entry or []
    patient = entries[0].resource
    assert isinstance(patient, Patient) and patient.identifier is None
