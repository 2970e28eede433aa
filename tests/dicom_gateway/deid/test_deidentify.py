"""A whole study de-identified: CT series, truth SEG, PreRead SEG and Comprehensive 3D SR.

Source: phantom seed 9 (training.phantoms, 48 × 48, 8 slices) written by
training.phantom_dicom (CT + truth SEG), to which the test adds what real studies carry
(patient name, birth date, accession, institution, station, physicians, device serial,
descriptions, a request, other patient IDs, a private block). PreRead's SEG and SR are then
built from those CT files with preread.reports, as tests/reports/test_sr_seg.py does, so they
copy the patient and study attributes and reference the CT (and the SR the SEG).

Every file is de-identified, written and read back; the test checks that every reference
resolves within the de-identified set, that de-identifying twice gives identical files, that
dates keep their intervals, and that no original identifier is left anywhere (every element,
file meta included, and the raw bytes of every file).
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset

from dicom_gateway.deid import (
    BurnedInAnnotationError,
    DeidentifiedInstance,
    Deidentifier,
    MappingKind,
    ReidentificationVault,
)
from preread.domain import Finding, ModelRef, PreReadResult
from preread.reports import build_seg, build_sr
from training.phantom_dicom import write_phantom_study
from training.phantoms import generate_phantom

SECRET = b"study-test-secret-0123456789abcdef"
PATIENT_ID = "MRN-7741-XQ"
MODEL = ModelRef(
    id="lung-nodule-unet", version="1.4.2", name="PreRead Lung Nodule UNet", sha256="0f" * 32
)
IDENTIFYING = {  # attribute → value, set on every CT slice
    "PatientName": "Doeington^Janelle",
    "PatientBirthDate": "19560412",
    "PatientAddress": "12 Example Road, Exampleton",
    "OtherPatientIDs": "OTHER-5521",
    "AccessionNumber": "ACC-99812-X",
    "StudyID": "STD-4471",
    "InstitutionName": "Saint Example Hospital",
    "InstitutionAddress": "1 Hospital Square, Exampleton",
    "StationName": "CTSTATION77",
    "ReferringPhysicianName": "Referrer^Robertson",
    "PerformingPhysicianName": "Performer^Paulina",
    "OperatorsName": "Operator^Ottokar",
    "DeviceSerialNumber": "SN-55123-CT",
    "StudyDescription": "CT thorax Doeington follow-up",
    "SeriesDescription": "Lung 1.5 Doeington",
    "ProtocolName": "Doeington protocol",
    "ImageComments": "Janelle's scan",
}
EXTRA_IDENTIFIERS = (
    "Doeington",
    "Janelle",
    "RP-55231",
    "Doeington private note",
    "PHANTOM^4",  # the truth SEG's patient name
)
PROCEDURE = "CT chest without contrast"


@dataclass
class Study:
    """The original instances, by file name, and what must not survive de-identification."""

    originals: dict[str, Dataset]
    identifiers: list[str]


def _walk(ds: Dataset, path: str = "") -> Iterator[tuple[str, Any]]:
    """(path, element) for every element, depth first, file meta included at the top."""
    meta = getattr(ds, "file_meta", None)
    if not path and meta is not None:
        for elem in meta:
            yield f"file meta > {elem.keyword}", elem
    for elem in ds:
        here = f"{path}{elem.keyword or elem.tag}"
        yield here, elem
        if elem.VR == "SQ":
            for i, item in enumerate(elem.value):
                yield from _walk(item, f"{here}[{i}] > ")


def _uids(ds: Dataset) -> set[str]:
    return {
        str(v)
        for path, elem in _walk(ds)
        if elem.VR == "UI" and elem.keyword != "ImplementationClassUID"
        for v in (elem.value if elem.VM > 1 else [elem.value])
        if v and not str(v).startswith("1.2.840.10008.")
    }


def _add_identifiers(ds: Dataset) -> None:
    for keyword, value in IDENTIFYING.items():
        setattr(ds, keyword, value)
    request = Dataset()
    request.RequestedProcedureID = "RP-55231"
    request.AccessionNumber = IDENTIFYING["AccessionNumber"]
    request.RequestedProcedureDescription = "Doeington chest CT"
    ds.RequestAttributesSequence = [request]
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "CTCH", "99LOCAL", PROCEDURE
    ds.ProcedureCodeSequence = [code]
    ds.private_block(0x0009, "ACME CT 1.0", create=True).add_new(0x01, "LO", EXTRA_IDENTIFIERS[3])


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Study:
    root = tmp_path_factory.mktemp("deid-study")
    phantom = generate_phantom(9, matrix=48, max_slices=8)
    files = write_phantom_study(phantom, root, patient_id=PATIENT_ID)
    assert files.seg_path is not None
    originals: dict[str, Dataset] = {}
    for path in sorted(files.ct_dir.glob("CT*.dcm")):
        ds = pydicom.dcmread(path)
        _add_identifiers(ds)
        ds.save_as(path, enforce_file_format=True)
        originals[path.name] = pydicom.dcmread(path)
    cts = list(originals.values())
    labels = phantom.label.astype(np.int32)
    findings = tuple(
        Finding(
            label=n.label,
            center_lps_mm=n.center_lps_mm,
            long_axis_mm=n.long_axis_mm,
            volume_mm3=n.volume_mm3,
            probability=0.8,
            mean_hu=-30.0,
            voxel_count=int((labels == n.label).sum()),
            lung_side="left" if n.center_lps_mm[0] > 0 else "right",
        )
        for n in phantom.nodules
        if (labels == n.label).any()  # 8 slices hold only part of the phantom's nodules
    )
    assert findings
    first = cts[0]
    result = PreReadResult(
        study_instance_uid=str(first.StudyInstanceUID),
        series_instance_uid=str(first.SeriesInstanceUID),
        frame_of_reference_uid=str(first.FrameOfReferenceUID),
        model=MODEL,
        provider="CPUExecutionProvider",
        findings=findings,
        created=datetime.datetime(2024, 5, 1, 12, 30, 15),
    )
    seg = build_seg(result, cts, labels)
    assert seg is not None
    sr = build_sr(result, cts, seg)
    for name, encoded in (("seg.dcm", seg), ("sr.dcm", sr)):
        encoded.dataset.save_as(root / name, enforce_file_format=True)
        originals[name] = pydicom.dcmread(root / name)
    originals["truth-seg.dcm"] = pydicom.dcmread(files.seg_path)
    identifiers = [*IDENTIFYING.values(), *EXTRA_IDENTIFIERS, PATIENT_ID]
    for instance in originals.values():
        identifiers.extend(_uids(instance))
    return Study(originals, sorted(set(identifiers)))


def _deidentify(study: Study, out_dir: Path) -> dict[str, tuple[DeidentifiedInstance, Path]]:
    deid = Deidentifier(SECRET)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = {}
    for name, ds in study.originals.items():
        result = deid.deidentify_instance(ds)
        result.dataset.save_as(out_dir / name, enforce_file_format=True)
        results[name] = (result, out_dir / name)
    return results


@pytest.fixture(scope="module")
def outputs(study: Study, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Dataset]:
    results = _deidentify(study, tmp_path_factory.mktemp("deid-out"))
    return {name: pydicom.dcmread(path) for name, (_, path) in results.items()}


def test_no_original_identifier_survives(study: Study, outputs: dict[str, Dataset]) -> None:
    assert len(study.identifiers) > 40  # names, IDs, dates, places and every instance UID
    for name, ds in outputs.items():
        for path, elem in _walk(ds):
            values = elem.value if elem.VM > 1 and elem.VR != "SQ" else [elem.value]
            for value in values:
                if isinstance(value, bytes):
                    text = value.decode("latin-1")
                elif elem.VR == "SQ" or value is None:
                    continue
                else:
                    text = str(value)
                leaked = [i for i in study.identifiers if i in text]
                assert not leaked, f"{name}: {path} = {text[:80]!r} holds {leaked}"
        raw = Path(ds.filename).read_bytes()
        assert not [i for i in study.identifiers if i.encode() in raw], name


def test_references_resolve_within_the_deidentified_set(
    study: Study, outputs: dict[str, Dataset]
) -> None:
    sops = {str(ds.SOPInstanceUID) for ds in outputs.values()}
    series = {str(ds.SeriesInstanceUID) for ds in outputs.values()}
    studies = {str(ds.StudyInstanceUID) for ds in outputs.values()}
    frames = {str(ds.FrameOfReferenceUID) for ds in outputs.values() if "FrameOfReferenceUID" in ds}
    assert len(studies) == 1 and len(frames) == 1 and len(sops) == len(outputs)
    targets = {
        "ReferencedSOPInstanceUID": sops,
        "SeriesInstanceUID": series,
        "StudyInstanceUID": studies,
        "ReferencedFrameOfReferenceUID": frames,
        "FrameOfReferenceUID": frames,
    }

    def references(datasets: dict[str, Dataset]) -> list[tuple[str, str, str]]:
        return [
            (name, path, str(elem.value))
            for name, ds in datasets.items()
            for path, elem in _walk(ds)
            if elem.keyword in targets and ">" in path  # inside a sequence: a reference
        ]

    found = references(outputs)
    assert len(found) == len(references(study.originals)) > 50  # none was dropped
    for name, path, uid in found:
        keyword = path.rsplit(" > ", 1)[-1]
        assert uid in targets[keyword], f"{name}: {path} = {uid} resolves to nothing"
    seg_sources = [p for n, p, _ in found if n == "seg.dcm" and "SourceImageSequence" in p]
    assert seg_sources  # SEG frames still point at their CT slices
    sr = outputs["sr.dcm"]
    sr_uids = {str(e.value) for _, e in _walk(sr) if e.keyword == "UID"}
    tracking = {str(s.TrackingUID) for s in outputs["seg.dcm"].SegmentSequence}
    assert tracking <= sr_uids  # the SR's findings still name the SEG's segments


def test_outputs_remain_valid_seg_and_sr(outputs: dict[str, Dataset]) -> None:
    seg = hd.seg.Segmentation.from_dataset(outputs["seg.dcm"])
    sr = hd.sr.Comprehensive3DSR.from_dataset(outputs["sr.dcm"])
    assert seg.SOPInstanceUID == outputs["seg.dcm"].SOPInstanceUID
    assert sr.SOPInstanceUID == outputs["sr.dcm"].SOPInstanceUID


def test_same_input_same_output(study: Study, tmp_path: Path) -> None:
    first = _deidentify(study, tmp_path / "a")
    second = _deidentify(study, tmp_path / "b")
    for name in study.originals:
        (r1, p1), (r2, p2) = first[name], second[name]
        assert r1.dataset == r2.dataset
        assert p1.read_bytes() == p2.read_bytes(), name
        assert r1.mappings == r2.mappings


def _dates(ds: Dataset) -> dict[str, datetime.date]:
    return {
        path: datetime.date(int(v[:4]), int(v[4:6]), int(v[6:8]))
        for path, elem in _walk(ds)
        if elem.VR in ("DA", "DT") and (v := str(elem.value or ""))
    }


def test_dates_keep_their_intervals(study: Study, outputs: dict[str, Dataset]) -> None:
    offset = Deidentifier(SECRET).date_offset_days(PATIENT_ID)
    assert -365 <= offset <= -1
    compared = 0
    for name, original in study.originals.items():
        before, after = _dates(original), _dates(outputs[name])
        assert set(after) <= set(before)
        for path, day in after.items():
            assert (day - before[path]).days == offset, f"{name}: {path}"
            compared += 1
        assert str(outputs[name].StudyTime) == str(original.StudyTime)  # times are kept
    assert compared > 30
    assert "PatientBirthDate" not in _dates(outputs["CT000001.dcm"])  # Z: emptied


def test_deidentification_is_declared(outputs: dict[str, Dataset]) -> None:
    deid = Deidentifier(SECRET)
    for ds in outputs.values():
        assert ds.PatientIdentityRemoved == "YES"
        assert ds.LongitudinalTemporalInformationModified == "MODIFIED"
        assert ds.PatientID == ds.PatientName == deid.patient_pseudonym(PATIENT_ID)
        codes = [
            (c.CodingSchemeDesignator, c.CodeValue) for c in ds.DeidentificationMethodCodeSequence
        ]
        assert codes == [("DCM", "113100"), ("DCM", "113107"), ("DCM", "113105")]
        assert not [e for _, e in _walk(ds) if e.tag.is_private]


def test_clean_descriptors_derive_from_coded_content(outputs: dict[str, Dataset]) -> None:
    ct = outputs["CT000001.dcm"]
    assert ct.SeriesDescription == "CT CHEST"  # Modality + Body Part Examined
    assert ct.StudyDescription == PROCEDURE  # Procedure Code Sequence's Code Meaning
    assert "ProtocolName" not in ct and "ImageComments" not in ct  # nothing coded: removed
    request = ct.RequestAttributesSequence[0]
    assert "RequestedProcedureID" not in request and request.AccessionNumber == ""
    assert request.RequestedProcedureDescription == ""  # X/Z, Type 2 in SR requests: Z
    assert outputs["seg.dcm"].SeriesDescription == "SEG"


def test_mappings_cover_every_replaced_value(study: Study, tmp_path: Path) -> None:
    deid = Deidentifier(SECRET)
    ct = study.originals["CT000001.dcm"]
    result = deid.deidentify_instance(ct)
    kinds = {(m.kind, m.original): m.pseudonym for m in result.mappings}
    pseudonym = deid.patient_pseudonym(PATIENT_ID)
    assert kinds[(MappingKind.PATIENT_ID, PATIENT_ID)] == pseudonym
    assert kinds[(MappingKind.DATE_OFFSET, str(result.date_offset_days))] == pseudonym
    for uid in _uids(ct):
        assert kinds[(MappingKind.UID, uid)] == deid.remap_uid(uid)
    # the whole study goes into one vault (the truth SEG names the patient differently)
    with ReidentificationVault(tmp_path / "reid.sqlite", os.urandom(32)) as vault:
        for ds in study.originals.values():
            vault.record_all(deid.deidentify_instance(ds).mappings)
        assert vault.reidentify(MappingKind.PATIENT_ID, pseudonym) == PATIENT_ID
        sr_uid = deid.remap_uid(str(study.originals["sr.dcm"].SOPInstanceUID))
        assert vault.reidentify(MappingKind.UID, sr_uid) == study.originals["sr.dcm"].SOPInstanceUID


def test_burned_in_annotation_is_refused(study: Study) -> None:
    ct = study.originals["CT000001.dcm"].copy()
    ct.BurnedInAnnotation = "YES"
    deid = Deidentifier(SECRET)
    with pytest.raises(BurnedInAnnotationError, match=str(ct.SOPInstanceUID)) as caught:
        deid.deidentify(ct)
    assert caught.value.sop_instance_uid == ct.SOPInstanceUID
    cleaned = deid.deidentify(ct, pixels_cleaned=True)
    assert cleaned.BurnedInAnnotation == "NO"
    assert "113101" in [c.CodeValue for c in cleaned.DeidentificationMethodCodeSequence]
