"""SEG and SR of a PreRead result, validated with dciodvfy / dsrdump and read back with highdicom.

Source images: a small synthetic chest CT (training.phantom_dicom, 96×96, 32 slices, feet
first so that the slice normal points to the feet) with two spherical nodules placed with
known centres, one in each lung. The phantom writer stores slice ``k`` of the phantom grid as
instance ``k + 1``; the label map of the phantom is the label map of the "model". The files
are passed to the encoders in shuffled order, so the encoders must sort them themselves.
"""

from __future__ import annotations

import copy
import json
import random
from dataclasses import replace
from datetime import date, datetime
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
import numpy.typing as npt
import pydicom
import pytest
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.tag import Tag

from dicom_gateway.source import dataset_bytes
from dicom_gateway.volume import assemble_volume
from preread.domain import (
    Comparison,
    Finding,
    ModelRef,
    NoduleComparison,
    PreReadResult,
    PriorStudy,
)
from preread.followup.lungrads import MANAGEMENT, assess
from preread.reports import (
    EncodedSeries,
    InstanceRef,
    OrderedSources,
    PreReadOut,
    ReportError,
    build_seg,
    build_sr,
    to_json,
    tracking_uid,
)
from preread.reports.series import AI_NOTICE
from preread.reports.sr import no_finding_text
from tests.dicom_tools import dciodvfy, dsrdump
from tests.reports.truth import truth_findings
from training.phantom_dicom import write_phantom_study
from training.phantoms import NoduleSpec, generate_phantom

MODEL = ModelRef(
    id="lung-nodule-unet",
    version="1.4.2",
    name="PreRead Lung Nodule UNet",
    sha256="0123456789abcdef" * 4,
)
CREATED = datetime(2024, 5, 1, 12, 30, 15)
NODULES = [  # LPS centres inside the lungs of phantom seed 4 (x > 0: patient's left)
    NoduleSpec(center_lps_mm=(99.7, -15.5, -145.6), diameter_mm=14.0),
    NoduleSpec(center_lps_mm=(-108.4, 46.2, -136.7), diameter_mm=10.0),
]


LUNG_RADS: dict[
    int, dict[str, Any]
] = {  # what a 2.0.0-like model adds to the phantom's two nodules, by label
    1: {  # part-solid, with its solid component
        "nodule_type": "part-solid",
        "axial_long_axis_mm": 13.456,
        "short_axis_mm": 12.1,
        "solid_component_long_axis_mm": 5.25,
    },
    2: {"nodule_type": "ground-glass", "axial_long_axis_mm": 9.8, "short_axis_mm": 9.1},
}
SOLID: dict[str, Any] = {"nodule_type": "solid", "axial_long_axis_mm": 13.0, "short_axis_mm": 11.95}


class Study:
    """The phantom CT, its label map and the results: with and without findings (a 1.0.0-like
    model: no nodule type, no Lung-RADS sizes), ``typed`` (part-solid and ground-glass), and
    ``mixed`` (nodule 1 solid, nodule 2 untyped: a typed model may leave one untyped).
    """

    def __init__(self, root: Path) -> None:
        phantom = generate_phantom(4, matrix=96, max_slices=32, nodules=NODULES)
        files = write_phantom_study(phantom, root)
        paths = sorted(files.ct_dir.glob("CT*.dcm"))
        self.by_k: list[Dataset] = [pydicom.dcmread(p) for p in paths]  # instance k+1 = k
        self.shuffled = self.by_k[:]
        random.Random(0).shuffle(self.shuffled)
        volume = assemble_volume(self.shuffled)
        g, p = volume.geometry, phantom.volume.geometry
        assert g.shape == p.shape
        assert np.allclose(g.affine, p.affine, atol=1e-4)  # so phantom.label is on the source grid
        self.labels: npt.NDArray[np.int32] = phantom.label.astype(np.int32)
        first = self.by_k[0]
        findings = truth_findings(phantom.nodules, self.labels)
        assert len(findings) == 2 and all(f.voxel_count > 0 for f in findings)
        self.result = PreReadResult(
            study_instance_uid=str(first.StudyInstanceUID),
            series_instance_uid=str(first.SeriesInstanceUID),
            frame_of_reference_uid=str(first.FrameOfReferenceUID),
            model=MODEL,
            provider="CPUExecutionProvider",
            findings=findings,
            created=CREATED,
        )
        self.empty = replace(self.result, findings=(), created=datetime(2024, 5, 2, 8, 0, 0))
        seg = build_seg(self.result, self.shuffled, self.labels)
        assert seg is not None
        self.seg: EncodedSeries = seg
        self.sr = build_sr(self.result, self.shuffled, self.seg)
        self.empty_sr = build_sr(self.empty, self.shuffled, None)
        self.typed = replace(
            self.result,
            findings=tuple(replace(f, **LUNG_RADS[f.label]) for f in findings),
        )
        self.mixed = replace(
            self.result,
            findings=tuple(replace(f, **SOLID) if f.label == 1 else f for f in findings),
        )
        typed_seg, mixed_seg = (
            build_seg(r, self.shuffled, self.labels) for r in (self.typed, self.mixed)
        )
        assert typed_seg is not None and mixed_seg is not None
        self.typed_seg: EncodedSeries = typed_seg
        self.mixed_seg: EncodedSeries = mixed_seg
        self.typed_sr = build_sr(self.typed, self.shuffled, typed_seg)
        self.mixed_sr = build_sr(self.mixed, self.shuffled, mixed_seg)
        # Lung-RADS v2022 (a screening exam): part-solid 12.8 mm with a 5.3 mm solid
        # component → 3, ground-glass 9.4 mm → 2, exam 3; mixed: solid 12.5 mm → 4A beside an
        # untyped nodule → the exam is not determinable
        self.rads = replace(self.typed, lung_rads=assess(self.typed.findings, None))
        self.rads_mixed = replace(self.mixed, lung_rads=assess(self.mixed.findings, None))
        self.rads_sr = build_sr(self.rads, self.shuffled, typed_seg)
        # compared with a prior: nodule 1 persistent (keeps the prior's tracking UID), 2 new
        prior = PriorStudy("1.2.826.0.1.3680043.8.498.77", date(2023, 11, 2), "previous")
        self.compared = replace(
            self.typed,
            comparison=Comparison(
                "compared",
                prior=prior,
                nodules=(
                    NoduleComparison(
                        "persistent",
                        "2.25.4242",
                        1,
                        3,
                        prior_study_uid=prior.study_instance_uid,
                        days_between=181,
                        prior_volume_mm3=700.0,
                        current_volume_mm3=1436.8,
                        volume_change_pct=105.3,
                        vdt_days=174.4,
                        vdt_band="<400",
                    ),
                    NoduleComparison("new", "2.25.77", 2, None),
                ),
            ),
        )
        compared_seg = build_seg(self.compared, self.shuffled, self.labels)
        assert compared_seg is not None
        self.compared_seg: EncodedSeries = compared_seg
        self.compared_sr = build_sr(self.compared, self.shuffled, compared_seg)
        self.rads_mixed_sr = build_sr(self.rads_mixed, self.shuffled, mixed_seg)
        self.root = root

    def write(self, encoded: EncodedSeries, name: str) -> Path:
        path = self.root / f"{name}.dcm"
        encoded.dataset.save_as(path, enforce_file_format=True)
        return path


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Study:
    return Study(tmp_path_factory.mktemp("reports"))


def _code(concept: Any) -> str:
    """The code value of a coded concept read back by highdicom (typed loosely there)."""
    return str(concept.value)


def _scheme(concept: Any) -> str:
    """The coding scheme designator of a coded concept read back by highdicom."""
    return str(concept.scheme_designator)


# --- validators ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "which",
    [
        "seg",
        "sr",
        "empty_sr",
        "superseding_sr",
        "typed_seg",
        "typed_sr",
        "mixed_sr",
        "rads_sr",
        "rads_mixed_sr",
        "compared_sr",
    ],
)
def test_dciodvfy_reports_no_error_and_no_warning(study: Study, which: str) -> None:
    encoded = {
        "seg": study.seg,
        "sr": study.sr,
        "empty_sr": study.empty_sr,
        "typed_seg": study.typed_seg,
        "typed_sr": study.typed_sr,
        "mixed_sr": study.mixed_sr,
        "rads_sr": study.rads_sr,
        "rads_mixed_sr": study.rads_mixed_sr,
        "compared_sr": study.compared_sr,
        "superseding_sr": build_sr(
            study.result, study.by_k, study.seg, supersedes=study.empty_sr.ref
        ),
    }[which]
    lines = dciodvfy(study.write(encoded, which))
    assert not [line for line in lines if "Error" in line], lines
    assert not [line for line in lines if "Warning" in line], lines


def test_dsrdump_reads_the_sr(study: Study) -> None:
    for encoded, expected in (
        (study.sr, "Certainty of Finding"),
        (study.empty_sr, "No lung nodule was found"),
        (study.typed_sr, "part-solid pulmonary nodule"),
        (study.mixed_sr, '"Axial"'),
        (study.rads_sr, '"Lung-RADS v2022 3"'),
        (study.rads_mixed_sr, '"Lung-RADS v2022: not determ..."'),
    ):
        path = study.write(encoded, "dump")
        run = dsrdump(path)
        assert run.returncode == 0, run.stderr
        assert not run.stderr.strip(), run.stderr  # no warning about content or constraints
        assert "Imaging Measurement Report" in run.stdout
        assert MODEL.name in run.stdout
        assert expected in run.stdout
        assert "PRELIMINARY" in run.stdout and "UNVERIFIED" in run.stdout


def _text_items(items: Any, name: str) -> list[str]:
    return [
        str(i.TextValue)
        for i in items
        if i.ValueType == "TEXT" and i.ConceptNameCodeSequence[0].CodeMeaning == name
    ]


def test_sr_carries_lung_rads_per_finding_and_for_the_exam(study: Study) -> None:
    ds = pydicom.dcmread(study.write(study.rads_sr, "rads"))
    root = ds.ContentSequence
    evaluations = [
        i for i in root if i.ConceptNameCodeSequence[0].CodeMeaning == "Qualitative Evaluations"
    ]
    assert len(evaluations) == 1
    exam = evaluations[0].ContentSequence
    assert _text_items(exam, "Assessment Category") == ["Lung-RADS v2022 3"]
    assert _text_items(exam, "Recommendation") == ["6-month LDCT."]
    measurements = next(
        i for i in root if i.ConceptNameCodeSequence[0].CodeMeaning == "Imaging Measurements"
    )
    per_group = [
        _text_items(g.ContentSequence, "Assessment Category")
        for g in measurements.ContentSequence
        if g.ValueType == "CONTAINER"
    ]
    # the volumetric group of each finding carries it (the drawn group does not repeat it)
    assert sorted(v for values in per_group for v in values) == [
        "Lung-RADS v2022 2",
        "Lung-RADS v2022 3",
    ]
    mixed = pydicom.dcmread(study.write(study.rads_mixed_sr, "rads-mixed")).ContentSequence
    exam = next(
        i for i in mixed if i.ConceptNameCodeSequence[0].CodeMeaning == "Qualitative Evaluations"
    ).ContentSequence
    (text,) = _text_items(exam, "Assessment Category")
    assert text.startswith("Lung-RADS v2022: not determinable") and "type" in text
    assert _text_items(exam, "Recommendation") == []
    # every management text survives the SR's character set (no replacement characters)
    solid = replace(study.mixed, findings=study.mixed.findings[:1])
    solid = replace(solid, lung_rads=assess(solid.findings, None))
    assert solid.lung_rads is not None and solid.lung_rads.category == "4A"
    seg = build_seg(solid, study.shuffled, np.where(study.labels == 1, 1, 0))
    four_a = pydicom.dcmread(study.write(build_sr(solid, study.shuffled, seg), "rads-4a"))
    exam = next(
        i
        for i in four_a.ContentSequence
        if i.ConceptNameCodeSequence[0].CodeMeaning == "Qualitative Evaluations"
    ).ContentSequence
    assert _text_items(exam, "Recommendation") == [MANAGEMENT["4A"]]
    # a result without Lung-RADS (not a screening exam) has no such container
    assert not [
        i
        for i in pydicom.dcmread(study.write(study.typed_sr, "typed-no-rads")).ContentSequence
        if i.ConceptNameCodeSequence[0].CodeMeaning == "Qualitative Evaluations"
    ]


def test_sr_carries_the_comparison_and_the_kept_tracking_uid(study: Study) -> None:
    ds = pydicom.dcmread(study.write(study.compared_sr, "compared"))
    exam = next(
        i
        for i in ds.ContentSequence
        if i.ConceptNameCodeSequence[0].CodeMeaning == "Qualitative Evaluations"
    ).ContentSequence
    assert _text_items(exam, "Comment") == [
        "Compared with the prior CT of 2023-11-02: 1 persistent, 1 new, 0 resolved nodule(s)."
    ]
    groups = _report(
        study, study.compared_sr, "compared-hd"
    ).get_volumetric_roi_measurement_groups()
    uids = sorted(str(g.tracking_uid) for g in groups)
    assert "2.25.4242" in uids  # the persistent nodule keeps the prior's tracking UID
    texts = [
        _text_items(g.ContentSequence, "Comment")
        for g in (
            next(
                i
                for i in ds.ContentSequence
                if i.ConceptNameCodeSequence[0].CodeMeaning == "Imaging Measurements"
            ).ContentSequence
        )
        if g.ValueType == "CONTAINER"
    ]
    follow = sorted(t for items in texts for t in items if t.startswith("Follow-up:"))
    assert follow == [
        "Follow-up: New since 2023-11-02.",
        "Follow-up: Persistent since 2023-11-02 (181 days); volume 700 -> 1437 mm3 (+105.3 %); "
        "volume doubling time 174 days (<400 d).",
    ]
    # the SEG names the same tracking UID for that segment
    seg = pydicom.dcmread(study.write(study.compared_seg, "compared-seg"))
    assert "2.25.4242" in {str(s.TrackingUID) for s in seg.SegmentSequence}


# --- SEG -------------------------------------------------------------------------------------


def test_seg_frames_land_on_their_source_slices(study: Study) -> None:
    seg = hd.seg.segread(study.write(study.seg, "seg-read"))
    k_of_sop = {str(ds.SOPInstanceUID): k for k, ds in enumerate(study.by_k)}
    label_of_segment = {n: f.label for n, f in enumerate(study.result.findings, start=1)}
    pixels = seg.pixel_array.reshape(int(seg.NumberOfFrames), int(seg.Rows), int(seg.Columns))
    seen = set()
    for frame, item in zip(pixels, seg.PerFrameFunctionalGroupsSequence, strict=True):
        source = item.DerivationImageSequence[0].SourceImageSequence[0]
        k = k_of_sop[str(source.ReferencedSOPInstanceUID)]
        number = int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        expected = study.labels[k] == label_of_segment[number]
        assert np.array_equal(frame.astype(bool), expected), (k, number)
        position = [float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient]
        assert np.allclose(position, [float(v) for v in study.by_k[k].ImagePositionPatient])
        seen.add((k, number))
    # no empty frame, and no slice of a nodule left out
    expected_pairs = {
        (int(k), n)
        for n, label in label_of_segment.items()
        for k in np.flatnonzero((study.labels == label).any(axis=(1, 2)))
    }
    assert seen == expected_pairs


def test_seg_segments_describe_the_findings(study: Study) -> None:
    seg = hd.seg.segread(study.write(study.seg, "seg-read"))
    assert seg.get_segment_numbers() == [1, 2]
    for number, finding in enumerate(study.result.findings, start=1):
        description = seg.get_segment_description(number)
        assert description.segment_label == f"Nodule {finding.label}"
        assert description.tracking_uid == tracking_uid(study.result, finding)
        assert description.tracking_id == f"AI nodule {finding.label}"
        assert description.segmented_property_category.value == "49755003"
        assert description.segmented_property_type.value == "27925004"
        assert [r.value for r in description.anatomic_regions] == ["39607008"]
        assert description.algorithm_type.value == "AUTOMATIC"
        assert description.algorithm_identification is not None
        algorithm = description.algorithm_identification[0]
        assert algorithm.AlgorithmName == MODEL.name
        assert algorithm.AlgorithmVersion == MODEL.version
        assert algorithm.AlgorithmFamilyCodeSequence[0].CodeValue == "123110"
        assert "provider=CPUExecutionProvider" in algorithm.AlgorithmParameters
    # highdicom's own lookup by source instance agrees with the label map
    k = int(np.flatnonzero((study.labels == 1).any(axis=(1, 2)))[0])
    pixels = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=[str(study.by_k[k].SOPInstanceUID)], segment_numbers=[1]
    )
    assert np.array_equal(pixels[0, :, :, 0].astype(bool), study.labels[k] == 1)


def test_seg_segments_name_the_nodule_type_when_given(study: Study) -> None:
    for encoded, labels in (
        (study.typed_seg, ["Nodule 1 (part-solid)", "Nodule 2 (ground-glass)"]),
        (study.mixed_seg, ["Nodule 1 (solid)", "Nodule 2"]),
        (study.seg, ["Nodule 1", "Nodule 2"]),
    ):
        seg = hd.seg.segread(study.write(encoded, "seg-typed-read"))
        descriptions = [seg.get_segment_description(n) for n in seg.get_segment_numbers()]
        assert [d.segment_label for d in descriptions] == labels
        assert {d.segmented_property_type.value for d in descriptions} == {"27925004"}
        texts = [str(d.SegmentDescription) for d in descriptions]
        assert all(t.endswith(AI_NOTICE) for t in texts)
        for label, text in zip(labels, texts, strict=True):
            kind = label.partition("(")[2].rstrip(")")
            assert text == (f"{kind.capitalize()} nodule. {AI_NOTICE}" if kind else AI_NOTICE)


def test_seg_without_findings_is_none(study: Study) -> None:
    assert build_seg(study.empty, study.shuffled, np.zeros_like(study.labels)) is None


# --- series, study and labelling ---------------------------------------------------------------


@pytest.mark.parametrize("which", ["seg", "sr"])
def test_new_series_in_the_original_study_labelled_ai_preliminary(study: Study, which: str) -> None:
    encoded = study.seg if which == "seg" else study.sr
    ds = pydicom.dcmread(study.write(encoded, f"{which}-header"))
    source = study.by_k[0]
    for keyword in ("StudyInstanceUID", "PatientID", "PatientName", "StudyID", "StudyDate"):
        assert ds[keyword].value == source[keyword].value, keyword
    assert ds.SeriesInstanceUID == encoded.series_instance_uid != source.SeriesInstanceUID
    assert ds.SOPInstanceUID == encoded.sop_instance_uid
    assert ds.Manufacturer == "PreRead"
    assert ds.ManufacturerModelName == MODEL.name
    assert ds.SoftwareVersions == MODEL.version
    assert ds.SeriesDescription == f"AI pre-read (preliminary) - {MODEL.id} {MODEL.version}"
    assert ds.ContentDate == "20240501" and ds.ContentTime.startswith("123015")
    if which == "seg":
        assert ds.FrameOfReferenceUID == source.FrameOfReferenceUID
        assert ds.SeriesNumber == 9001
        assert ds.ContentLabel == "AI_PRELIMINARY"
        assert ds.ContentDescription.startswith("AI-generated, preliminary")
        assert "PreliminaryFlag" not in ds  # not part of the Segmentation IOD
    else:
        assert ds.SeriesNumber == 9002
        assert (ds.CompletionFlag, ds.VerificationFlag, ds.PreliminaryFlag) == (
            "PARTIAL",
            "UNVERIFIED",
            "PRELIMINARY",
        )


# --- SR ------------------------------------------------------------------------------------


def _read_sr(study: Study, encoded: EncodedSeries, name: str) -> hd.sr.Comprehensive3DSR:
    sr = hd.sr.srread(study.write(encoded, name))
    assert isinstance(sr, hd.sr.Comprehensive3DSR)
    return sr


def _report(study: Study, encoded: EncodedSeries, name: str) -> hd.sr.MeasurementReport:
    content = _read_sr(study, encoded, name).content
    assert isinstance(content, hd.sr.MeasurementReport)
    return content


def test_sr_groups_reference_the_seg_segments_with_the_same_tracking_uids(study: Study) -> None:
    report = _report(study, study.sr, "sr-read")
    seg_uids = {
        str(item.TrackingUID): int(item.SegmentNumber) for item in study.seg.dataset.SegmentSequence
    }
    groups = report.get_volumetric_roi_measurement_groups()
    assert len(groups) == len(study.result.findings)
    json_uids = {f["label"]: f["tracking_uid"] for f in to_json(study.result)["findings"]}
    for group, finding in zip(groups, study.result.findings, strict=True):
        uid = str(group.tracking_uid)
        assert uid == tracking_uid(study.result, finding) == json_uids[finding.label]
        segment = group.referenced_segment
        assert segment is not None
        item = segment[0]
        assert item.referenced_sop_instance_uid == study.seg.sop_instance_uid
        assert item.referenced_segment_numbers == [seg_uids[uid]]
        assert str(segment[1].value) == study.result.series_instance_uid
        assert _code(group.finding_type) == "27925004"
        (site,) = group.finding_sites
        assert _code(site.value) == "39607008"
        side = {"left": "7771000", "right": "24028007"}[str(finding.lung_side)]
        assert _code(site.laterality) == side
        values = {m.name.meaning: (m.value, _code(m.unit)) for m in group.get_measurements()}
        expected = {
            "Long axis": (finding.long_axis_mm, "mm", 0.01),
            "Volume": (finding.volume_mm3, "mm3", 0.1),
            "Attenuation Coefficient": (-35.5, "[hnsf'U]", 0.01),
            "Certainty of Finding": (100 * finding.probability, "%", 0.01),
        }
        assert set(values) == set(expected)
        for name, (value, unit, tolerance) in expected.items():
            assert values[name][0] == pytest.approx(value, abs=tolerance), name
            assert values[name][1] == unit, name
        for measurement in group.get_measurements():
            names = [c.name.meaning for c in measurement[0].ContentSequence]
            assert "Algorithm Name" in names and "Algorithm Version" in names


_TYPE_CODES = {"solid": "RID50151", "part-solid": "RID50152", "ground-glass": "RID50153"}


_Key = tuple[str, str, str | None, str | None]  # code, scheme, method, finding site


def _expected_measurements(finding: Finding) -> dict[_Key, tuple[float, str]]:
    """(code, scheme, method, site) → (value as the SR rounds it, UCUM unit): exactly what the
    finding has. The three "Long axis" differ by method (axial) or site (solid component)."""
    given: list[tuple[_Key, float | None]] = [
        (("103339001", "SCT", None, None), finding.long_axis_mm),
        (("103339001", "SCT", "24422004", None), finding.axial_long_axis_mm),
        (("103340004", "SCT", "24422004", None), finding.short_axis_mm),
        (("RID50155", "RADLEX", None, None), finding.mean_diameter_mm),
        (("103339001", "SCT", None, "RID50154"), finding.solid_component_long_axis_mm),
    ]
    expected = {key: (round(value, 2), "mm") for key, value in given if value is not None}
    return expected | {
        ("118565006", "SCT", None, None): (round(finding.volume_mm3, 1), "mm3"),
        ("112031", "DCM", None, None): (round(finding.mean_hu, 1), "[hnsf'U]"),
        ("111012", "DCM", None, None): (round(100 * finding.probability, 2), "%"),
    }


def _key(measurement: hd.sr.Measurement) -> _Key:
    method = measurement.method
    sites = measurement.finding_sites
    return (
        _code(measurement.name),
        str(measurement.name.scheme_designator),
        None if method is None else _code(method),
        _code(sites[0].value) if sites else None,
    )


@pytest.mark.parametrize("which", ["result", "typed", "mixed"])
def test_sr_carries_exactly_the_type_and_sizes_each_finding_has(study: Study, which: str) -> None:
    result, encoded = {
        "result": (study.result, study.sr),
        "typed": (study.typed, study.typed_sr),
        "mixed": (study.mixed, study.mixed_sr),
    }[which]
    groups = _report(study, encoded, f"sr-{which}").get_volumetric_roi_measurement_groups()
    assert len(groups) == len(result.findings) == 2
    for group, finding in zip(groups, result.findings, strict=True):
        assert str(group.tracking_uid) == tracking_uid(result, finding)
        measurements = group.get_measurements()
        measured = {_key(m): (m.value, _code(m.unit)) for m in measurements}
        assert len(measured) == len(measurements)  # no two alike
        expected = _expected_measurements(finding)
        assert set(measured) == set(expected)
        for key, (value, unit) in expected.items():
            assert measured[key][0] == pytest.approx(value, abs=1e-6), key
            assert measured[key][1] == unit, key
        evaluations = {
            (_code(e.name), _scheme(e.name)): (_code(e.value), _scheme(e.value))
            for e in group.get_qualitative_evaluations()
        }
        always = {  # highdicom also lists these CODE items of every group
            ("276214006", "SCT"): ("49755003", "SCT"),  # Finding category
            ("111000", "DCM"): ("123110", "DCM"),  # Algorithm Family
        }
        if finding.nodule_type is None:
            assert evaluations == always
        else:
            code = _TYPE_CODES[finding.nodule_type]
            assert evaluations == always | {("RID46010", "RADLEX"): (code, "RADLEX")}


def _value_types(items: Any) -> set[str]:
    """Every content item's value type in the tree under ``items``."""
    types: set[str] = set()
    for item in items:
        types.add(str(item.ValueType))
        types |= _value_types(item.get("ContentSequence", []))
    return types


def _polyline_mm(coordinates: Any, image: Dataset) -> npt.NDArray[np.float64]:
    """A SCOORD's two points as in-plane (x, y) millimetres of ``image``."""
    assert coordinates.graphic_type.value == "POLYLINE"
    (source,) = coordinates.ContentSequence
    assert source.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == image.SOPInstanceUID
    row_mm, column_mm = (float(v) for v in image.PixelSpacing)
    points = np.asarray(coordinates.value, dtype=np.float64)
    assert points.shape == (2, 2)
    return points * [column_mm, row_mm]


@pytest.mark.parametrize("which", ["result", "typed", "mixed"])
def test_sr_draws_each_finding_on_its_centre_slice(study: Study, which: str) -> None:
    """Per finding a TID 1501 group (same tracking UID) whose first measurement is the long axis
    PreRead reports (the axial one when the model gives it), INFERRED FROM a two-point POLYLINE
    on the source slice through the finding's centre, exactly as long; the short axis, when
    given, perpendicular to it; and no SCOORD3D anywhere (what kept OHIF to a 3-D view)."""
    result, encoded = {
        "result": (study.result, study.sr),
        "typed": (study.typed, study.typed_sr),
        "mixed": (study.mixed, study.mixed_sr),
    }[which]
    sr = _read_sr(study, encoded, f"sr-drawn-{which}")
    report = _report(study, encoded, f"sr-drawn-{which}")
    assert report.get_planar_roi_measurement_groups() == []
    assert "SCOORD3D" not in _value_types(sr.ContentSequence)
    drawn = report.get_image_measurement_groups()
    assert len(drawn) == len(result.findings)
    z = np.array([float(ds.ImagePositionPatient[2]) for ds in study.by_k])  # axial: normal ∥ z
    for group, finding in zip(drawn, result.findings, strict=True):
        assert str(group.tracking_uid) == tracking_uid(result, finding)
        identifier = f"Cornerstone3DTools@^0.1.0:Length:AI nodule {finding.label}"
        assert str(group.tracking_identifier) == identifier
        image = study.by_k[int(np.argmin(np.abs(z - finding.center_lps_mm[2])))]
        first, *rest = group.get_measurements()
        axial = finding.axial_long_axis_mm is not None
        assert _code(first.name) == "103339001"
        assert (first.method is not None and _code(first.method) == "24422004") == axial
        figure = finding.axial_long_axis_mm if axial else finding.long_axis_mm
        assert figure is not None and first.value == pytest.approx(round(figure, 2))
        (coordinates,) = first.referenced_coordinates
        long_axis = _polyline_mm(coordinates, image)
        assert float(np.linalg.norm(long_axis[1] - long_axis[0])) == pytest.approx(figure, abs=1e-3)
        if finding.short_axis_mm is None:
            assert rest == []
        else:
            (short,) = rest
            assert _code(short.name) == "103340004"
            assert short.value == pytest.approx(finding.short_axis_mm)
            (coordinates,) = short.referenced_coordinates
            short_axis = _polyline_mm(coordinates, image)
            across = short_axis[1] - short_axis[0]
            assert float(np.linalg.norm(across)) == pytest.approx(finding.short_axis_mm, abs=1e-3)
            along = long_axis[1] - long_axis[0]
            cosine = float(across @ along) / float(np.linalg.norm(across) * np.linalg.norm(along))
            assert abs(cosine) < 1e-5  # perpendicular (GraphicData is float32)
        comments = [i.value for i in group[0].ContentSequence if i.name.meaning == "Comment"]
        assert comments == [f"AI nodule {finding.label}: {AI_NOTICE}"]


def test_sr_draws_a_finding_off_its_centre_slice_on_the_nearest_slice_it_covers(
    study: Study,
) -> None:
    """A centre off the segment's slices (a resampled sliver can leave a gap): the axes go on
    the nearest slice the segment covers, and that image joins the Image Library."""
    z = np.array([float(ds.ImagePositionPatient[2]) for ds in study.by_k])
    first = study.result.findings[0]
    covered = np.flatnonzero((study.labels == first.label).any(axis=(1, 2)))
    outside = int(covered.max()) + 3 if covered.max() + 3 < len(z) else int(covered.min()) - 3
    assert 0 <= outside < len(z)
    x, y, _ = first.center_lps_mm
    moved = replace(first, center_lps_mm=(x, y, float(z[outside])))
    result = replace(study.result, findings=(moved, *study.result.findings[1:]))
    seg = build_seg(result, study.by_k, study.labels)
    assert seg is not None
    encoded = build_sr(result, study.by_k, seg)
    nearest = int(covered[np.argmin(np.abs(covered - outside))])
    report = _report(study, encoded, "sr-gap")
    group = report.get_image_measurement_groups()[0]
    (coordinates,) = group.get_measurements()[0].referenced_coordinates
    _polyline_mm(coordinates, study.by_k[nearest])  # on that image
    listed = set(_image_library(_read_sr(study, encoded, "sr-gap")))
    drawn_on, centred_on = study.by_k[nearest], study.by_k[outside]
    assert {str(drawn_on.SOPInstanceUID), str(centred_on.SOPInstanceUID)} <= listed


def test_sr_observer_is_the_model_and_algorithm_names_the_provider(study: Study) -> None:
    sr = _read_sr(study, study.sr, "sr-read")
    report = _report(study, study.sr, "sr-read")
    (observer,) = report.get_observer_contexts()
    attributes = observer.observer_identifying_attributes
    assert isinstance(attributes, hd.sr.DeviceObserverIdentifyingAttributes)
    assert attributes.name is not None
    assert attributes.name.startswith(MODEL.name)
    assert "AI-generated, preliminary" in attributes.name
    assert attributes.manufacturer_name == "PreRead"
    assert attributes.model_name == f"{MODEL.name} {MODEL.version}"
    group = report.get_volumetric_roi_measurement_groups()[0]
    parameters = [
        item.value
        for item in group[0].ContentSequence
        if item.name.meaning == "Algorithm Parameters"
    ]
    assert parameters == [
        f"model_id={MODEL.id}",
        f"model_sha256={MODEL.sha256}",
        "provider=CPUExecutionProvider",
    ]
    # every source image read is evidence, and so is the SEG, of the same study
    evidence = {uid[2] for uid in sr.get_evidence()}
    assert {str(ds.SOPInstanceUID) for ds in study.by_k} | {study.seg.sop_instance_uid} == evidence


def _image_library(sr: Dataset) -> list[str]:
    """The SOP Instance UIDs the SR's Image Library (TID 1600) lists, in order."""
    (library,) = [
        item for item in sr.ContentSequence if item.ConceptNameCodeSequence[0].CodeValue == "111028"
    ]
    return [
        str(entry.ReferencedSOPSequence[0].ReferencedSOPInstanceUID)
        for group in library.ContentSequence
        for entry in group.ContentSequence
        if entry.ValueType == "IMAGE"
    ]


def test_sr_image_library_lists_the_slice_through_each_finding(study: Study) -> None:
    z = np.array([float(ds.ImagePositionPatient[2]) for ds in study.by_k])  # axial: normal ∥ z
    centres = [f.center_lps_mm[2] for f in study.result.findings]
    nearest = sorted({int(np.argmin(np.abs(z - c))) for c in centres})
    assert len(nearest) == 2
    sr = _read_sr(study, study.sr, "sr-library")
    listed = _image_library(sr)
    expected = [str(study.by_k[k].SOPInstanceUID) for k in nearest]
    assert sorted(listed) == sorted(expected)
    # without findings: the extent of the series read, its first and last slice
    empty = _read_sr(study, study.empty_sr, "empty-library")
    ends = {str(study.by_k[0].SOPInstanceUID), str(study.by_k[-1].SOPInstanceUID)}
    assert set(_image_library(empty)) == ends
    evidence = {uid[2] for uid in empty.get_evidence()}
    assert evidence == {str(ds.SOPInstanceUID) for ds in study.by_k}


def test_sr_without_findings_says_so(study: Study) -> None:
    report = _report(study, study.empty_sr, "empty-read")
    assert report.get_volumetric_roi_measurement_groups() == []
    (group,) = report.get_image_measurement_groups()
    assert _code(group.finding_type) == "27925004"
    evaluations = {_code(e.name): _code(e.value) for e in group.get_qualitative_evaluations()}
    assert evaluations["121052"] == "272519000"  # Presence of property: Absent
    comments = [item.value for item in group[0].ContentSequence if item.name.meaning == "Comment"]
    assert comments == [no_finding_text(study.empty)]
    assert MODEL.name in comments[0] and MODEL.version in comments[0]


def test_superseding_sr_lists_its_predecessor(study: Study) -> None:
    new = build_sr(study.result, study.by_k, study.seg, supersedes=study.empty_sr.ref)
    (item,) = new.dataset.PredecessorDocumentsSequence
    assert item.StudyInstanceUID == study.result.study_instance_uid
    (series,) = item.ReferencedSeriesSequence
    assert series.SeriesInstanceUID == study.empty_sr.series_instance_uid
    (instance,) = series.ReferencedSOPSequence
    assert instance.ReferencedSOPInstanceUID == study.empty_sr.sop_instance_uid
    assert instance.ReferencedSOPClassUID == study.empty_sr.dataset.SOPClassUID
    assert "PredecessorDocumentsSequence" not in study.sr.dataset
    with pytest.raises(ReportError, match="supersede itself"):
        build_sr(study.result, study.by_k, study.seg, supersedes=study.sr.ref)
    other = InstanceRef("1.2.3", "1.2.3.4", "1.2.3.4.5", str(study.sr.dataset.SOPClassUID))
    with pytest.raises(ReportError, match="study"):
        build_sr(study.result, study.by_k, study.seg, supersedes=other)


# --- UIDs ------------------------------------------------------------------------------------


def _uids(seg: EncodedSeries, sr: EncodedSeries) -> list[str]:
    return [
        seg.series_instance_uid,
        seg.sop_instance_uid,
        sr.series_instance_uid,
        sr.sop_instance_uid,
        str(seg.dataset.DimensionOrganizationSequence[0].DimensionOrganizationUID),
        *(str(item.TrackingUID) for item in seg.dataset.SegmentSequence),
    ]


def test_uids_are_deterministic(study: Study) -> None:
    first = _uids(study.seg, study.sr)
    seg = build_seg(study.result, study.by_k, study.labels)  # other input order, same result
    assert seg is not None
    assert _uids(seg, build_sr(study.result, study.by_k, seg)) == first
    assert len(set(first)) == len(first)
    assert study.empty_sr.sop_instance_uid != study.sr.sop_instance_uid

    later = replace(study.result, created=datetime(2024, 5, 1, 12, 30, 16))
    other_version = replace(study.result, model=replace(MODEL, version="1.5.0"))
    for changed in (later, other_version):
        seg2 = build_seg(changed, study.by_k, study.labels)
        assert seg2 is not None
        assert not set(_uids(seg2, build_sr(changed, study.by_k, seg2))) & set(first)

    seeded = build_seg(study.result, study.by_k, study.labels, uid_seed="job-17")
    assert seeded is not None
    assert seeded.sop_instance_uid != study.seg.sop_instance_uid
    assert build_sr(study.result, study.by_k, seeded, uid_seed="job-17").sop_instance_uid == (
        build_sr(
            later,
            study.by_k,
            build_seg(later, study.by_k, study.labels, uid_seed="job-17"),
            uid_seed="job-17",
        ).sop_instance_uid
    )
    with pytest.raises(ReportError, match="uid_seed"):  # SEG and SR from different seeds
        build_sr(study.result, study.by_k, seeded)


def test_sources_ordered_once_encode_the_same_instances(study: Study) -> None:
    """What ``preread.pipeline.encode`` does (the series ordered once for the SEG, the SR, the
    key images and the KOS) writes byte for byte what each encoder ordering it again writes."""
    sources = OrderedSources.of(study.result, study.shuffled)
    seg = build_seg(study.result, sources, study.labels)
    assert seg is not None
    sr = build_sr(study.result, sources, seg)
    for once, again in ((seg, study.seg), (sr, study.sr)):
        assert _without_clock(once.dataset) == _without_clock(again.dataset)


#: what highdicom stamps from the wall clock on every instance it makes
_CLOCK = {Tag(k) for k in ("InstanceCreationDate", "InstanceCreationTime", "ContributionDateTime")}


def _without_clock(dataset: Dataset) -> bytes:
    copied = copy.deepcopy(dataset)

    def drop(ds: Dataset, element: DataElement) -> None:
        if element.tag in _CLOCK:
            del ds[element.tag]

    copied.walk(drop)
    return dataset_bytes(copied)


# --- refusals --------------------------------------------------------------------------------


def test_inputs_that_do_not_fit_are_refused(study: Study) -> None:
    r, sources, labels = study.result, study.by_k, study.labels
    with pytest.raises(ReportError, match="shape"):
        build_seg(r, sources, labels[:-1])
    with pytest.raises(ReportError, match="integers"):
        build_seg(r, sources, labels.astype(np.float32))
    with pytest.raises(ReportError, match=r"\[2\] have no voxel"):
        build_seg(r, sources, np.where(labels == 2, 0, labels))
    with pytest.raises(ReportError, match="distinct"):
        build_seg(replace(r, findings=(r.findings[0], r.findings[0])), sources, labels)
    with pytest.raises(ReportError, match="SeriesInstanceUID"):
        build_seg(replace(r, series_instance_uid="1.2.3"), sources, labels)
    with pytest.raises(ReportError, match="no source images"):
        build_sr(r, [], study.seg)
    with pytest.raises(ReportError, match="need their SEG"):
        build_sr(r, sources, None)
    with pytest.raises(ReportError, match="without findings"):
        build_sr(study.empty, sources, study.seg)
    ordered = OrderedSources.of(r, sources)  # ordered for r: not for a result of another series
    elsewhere = replace(r, series_instance_uid="1.2.3")
    with pytest.raises(ReportError, match="ordered for study, series and frame of reference"):
        build_seg(elsewhere, ordered, labels)
    with pytest.raises(ReportError, match="ordered for study, series and frame of reference"):
        build_sr(elsewhere, ordered, study.seg)


def test_label_values_of_no_finding_are_ignored(study: Study) -> None:
    noisy = study.labels.copy()
    noisy[0, 0, 0] = 9  # a component the post-processing dropped
    seg = build_seg(study.result, study.by_k, noisy)
    assert seg is not None
    assert np.array_equal(seg.dataset.pixel_array, study.seg.dataset.pixel_array)


@pytest.mark.filterwarnings("error::UserWarning")  # pydicom warns about over-long values
def test_long_names_are_cut_to_long_string_length(study: Study) -> None:
    model = replace(MODEL, id="x" * 80, name="n" * 80)
    result = replace(study.result, model=model)
    seg = build_seg(result, study.by_k, study.labels)
    assert seg is not None
    build_sr(result, study.by_k, seg)
    description = str(seg.dataset.SeriesDescription)
    assert len(description) == 64 and description.startswith("AI pre-read (preliminary) - x")
    assert len(str(seg.dataset.ManufacturerModelName)) == 64
    assert str(seg.dataset.ContentDescription).startswith("AI-generated, preliminary")


# --- JSON ------------------------------------------------------------------------------------


def test_json(study: Study) -> None:
    data = to_json(study.result)
    assert json.loads(json.dumps(data)) == data
    assert data["ai_generated"] is True and data["status"] == "preliminary"
    assert data["created"] == "2024-05-01T12:30:15"
    assert data["model"] == {
        "id": MODEL.id,
        "version": MODEL.version,
        "name": MODEL.name,
        "sha256": MODEL.sha256,
    }
    assert data["provider"] == "CPUExecutionProvider"
    first = data["findings"][0]
    finding = study.result.findings[0]
    assert first["label"] == finding.label
    assert first["center_lps_mm"] == list(finding.center_lps_mm)
    assert first["lung_side"] == finding.lung_side
    assert first["tracking_uid"] == tracking_uid(study.result, finding)
    assert PreReadOut.model_validate(data).findings[0].tracking_uid == first["tracking_uid"]
    assert to_json(study.empty)["findings"] == []
