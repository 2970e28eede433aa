"""A second model kind, end to end: kidney masses found as bright spots.

Adding a kind is a package whose card declares the finding (here SNOMED CT 4147007 "Mass" in
64033007 "Kidney", not a lung nodule) plus at most one post-processing function. The function
(``bright-spots``) is registered from this module: :data:`inference.postprocessors.
POSTPROCESSORS` is the registry, and no production code names the kind. The tiny ONNX network
(the 1×1×1-conv threshold of :mod:`tests.inference.tiny_model`, at 300 HU) reads a synthetic
CT series with two dense spots; its result is encoded as SEG, SR, JSON, HTML, FHIR and HL7 v2,
each of which must carry the card's codes and none of the lung nodule's. The SEG and SR pass
dciodvfy and dsrdump as in ``tests/reports/test_sr_seg.py``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import highdicom as hd
import numpy as np
import pytest
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from inference.card import InputSpec, IntensityWindow, Label, PipelineSpec, SeriesRules
from inference.package import ModelPackage, sha256_file
from inference.postprocess import Detections, find_nodules
from inference.postprocessors import POSTPROCESSORS, StageOutputs
from inference.predict import Predictor
from preread.domain import LUNG_NODULE, PreReadResult
from preread.pipeline import Analysis, Encoded, analyze, encode
from preread.reports import PreReadOut, build_sr, to_json
from preread.reports import codes as report_codes
from preread.reports.context import ReportInput, ReportStudy
from preread.reports.fhir import to_fhir_bundle
from preread.reports.hl7 import to_oru
from preread.reports.html import to_html
from preread.reports.json import to_model
from tests.dicom_gateway.synthetic import ct_datasets, geometry
from tests.dicom_tools import dciodvfy, dsrdump
from tests.inference.tiny_model import tiny_card, write_tiny_onnx

MASS, KIDNEY = codes.SCT.Mass, codes.SCT.Kidney  # SCT 4147007, 64033007
CATEGORY = codes.SCT.MorphologicallyAbnormalStructure  # SCT 49755003
#: The lung nodule's codes (finding, site, left / right lung, laterality): in no report here.
LUNG_CODES = {"27925004", "39607008", "44029006", "3341006", "7771000", "24028007"}
WINDOW = (-200.0, 800.0)  # the network's threshold t = 0.5 is 300 HU
SPOTS = ((slice(4, 8), slice(8, 14), slice(8, 14)), (slice(11, 15), slice(24, 30), slice(25, 31)))
SEED = "job-kidney-1"


def bright_spots(out: StageOutputs) -> Detections:
    """The second kind's post-processing: components at the card's threshold; no lung mask,
    no side (``lung_side`` is a lung's)."""
    t = out.card.thresholds
    return find_nodules(
        out.probability,
        out.hu,
        out.geometry,
        threshold=t.probability,
        min_volume_mm3=t.min_volume_mm3,
    )


def write_kidney_package(folder: Path) -> Path:
    """A package of the second kind: the tiny threshold network, a card declaring kidney masses."""
    folder.mkdir(parents=True, exist_ok=True)
    write_tiny_onnx(folder / "model.onnx", t=0.5)
    card = tiny_card(sha256_file(folder / "model.onnx"), model_id="tiny-kidney-mass")
    card = card.model_copy(
        update={
            "name": "Tiny kidney mass model (tests)",
            "series_rules": SeriesRules(min_slices=10, max_slice_thickness_mm=3.0),
            "input": InputSpec(
                spacing_mm=(1.0, 1.0, 1.0),
                intensity=IntensityWindow(window_min_hu=WINDOW[0], window_max_hu=WINDOW[1]),
            ),
            "labels": [
                Label(
                    value=1,
                    name="Kidney mass",
                    snomed_code=MASS.value,
                    snomed_meaning=MASS.meaning,
                    category_code=CATEGORY.value,
                    category_meaning=CATEGORY.meaning,
                    finding_site_code=KIDNEY.value,
                    finding_site_meaning=KIDNEY.meaning,
                )
            ],
            "pipeline": PipelineSpec(postprocess="bright-spots"),
        }
    )
    card.to_yaml(folder / "model.yaml")
    (folder / "evaluation.json").write_text(json.dumps({"cases": 0}))
    return folder


@dataclass(frozen=True)
class Run:
    datasets: list[Dataset]
    analysis: Analysis
    encoded: Encoded
    root: Path

    @property
    def result(self) -> PreReadResult:
        return self.analysis.result

    def write(self, ds: Dataset, name: str) -> Path:
        path = self.root / f"{name}.dcm"
        ds.save_as(path, enforce_file_format=True)
        return path


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    root = tmp_path_factory.mktemp("second-kind")
    package = ModelPackage.load(write_kidney_package(root / "tiny-kidney-mass" / "1.0.0"))
    grid = geometry((20, 40, 40), spacing=(2.0, 1.0, 1.0), origin=(-20.0, -20.0, -20.0))
    hu = np.full(grid.shape, 40.0, dtype=np.float32)  # soft tissue
    for spot in SPOTS:
        hu[spot] = 700.0
    datasets = ct_datasets(hu, grid)
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(POSTPROCESSORS, "bright-spots", bright_spots)
        predictor = Predictor(package)
    analysis = analyze(datasets, predictor, created=datetime(2024, 5, 1, 12, 30, 15))
    encoded = encode(analysis, datasets, uid_seed=SEED)
    yield Run(datasets, analysis, encoded, root)


def _codes(ds: Dataset) -> set[str]:
    """Every CodeValue anywhere in ``ds``."""
    return {str(e.value) for e in ds.iterall() if e.keyword == "CodeValue"}


def _report(run: Run) -> ReportInput:
    preread = to_model(run.result, uid_seed=SEED)
    # a side on every finding: a kidney's findings must still not be coded as a lung's side
    sided = [f.model_copy(update={"lung_side": "left"}) for f in preread.findings]
    study = ReportStudy(
        tenant="t",
        study_instance_uid=run.result.study_instance_uid,
        patient_id="P1",
        issuer_of_patient_id="",
        patient_name="Doe^Jane",
        patient_birth_date="19600101",
        patient_sex="F",
        accession_number="A1",
        study_date="20240501",
        study_time="101500",
        study_description="CT Abdomen",
    )
    return ReportInput(
        study=study,
        preread=preread.model_copy(update={"findings": sided}),
        job_id=SEED,
        finished_at=datetime(2024, 5, 1, 12, 31, 5, tzinfo=UTC),
        sr_sop_instance_uid=run.encoded.sr.sop_instance_uid,
        seg_sop_instance_uid=None if run.encoded.seg is None else run.encoded.seg.sop_instance_uid,
    )


def test_the_lung_nodule_concept_is_that_of_the_codes_module() -> None:
    concept = LUNG_NODULE
    for term, code in (
        (concept.finding, report_codes.NODULE),
        (concept.category, report_codes.FINDING_CATEGORY),
        (concept.site, report_codes.LUNG),
    ):
        assert report_codes.code(term) == code and term.meaning == code.meaning
    assert concept.in_lung and concept.name() == "lung nodule" and concept.name(2) == "lung nodules"


def test_the_card_declares_the_concept_and_the_registry_the_postprocessing(run: Run) -> None:
    concept = run.result.concept
    assert (concept.finding.value, concept.category.value, concept.site.value) == (
        "4147007",
        "49755003",
        "64033007",
    )
    assert not concept.in_lung and concept.name(2) == "kidney masses"
    assert "bright-spots" not in POSTPROCESSORS  # registered for this module's run only
    findings = sorted(run.result.findings, key=lambda f: f.center_lps_mm[2])
    assert len(findings) == 2
    for finding, spot in zip(findings, SPOTS, strict=True):
        assert finding.lung_side is None and finding.nodule_type is None
        source_mm3 = np.prod([s.stop - s.start for s in spot]) * 2.0  # 2 mm³ voxels
        assert finding.volume_mm3 == pytest.approx(source_mm3, rel=0.35)


def test_seg_codes_the_kidney_mass_and_passes_dciodvfy(run: Run) -> None:
    seg = run.encoded.seg
    assert seg is not None
    path = run.write(seg.dataset, "seg")
    lines = dciodvfy(path)
    assert not [line for line in lines if "Error" in line or "Warning" in line], lines
    read = hd.seg.segread(path)
    for number in read.get_segment_numbers():
        description = read.get_segment_description(number)
        assert description.segment_label == f"Mass {number}"
        assert description.tracking_id == f"AI mass {number}"
        assert description.segmented_property_type.value == MASS.value
        assert description.segmented_property_category.value == CATEGORY.value
        assert [r.value for r in description.anatomic_regions] == [KIDNEY.value]
    found = _codes(seg.dataset)
    assert {MASS.value, KIDNEY.value} <= found and not found & LUNG_CODES
    assert "kidney masses" in str(seg.dataset.ContentDescription)


def test_sr_codes_the_kidney_mass_and_passes_dciodvfy_and_dsrdump(run: Run) -> None:
    # the findings given a side: the SR must not qualify a kidney by a lung's laterality
    sided = replace(
        run.result, findings=tuple(replace(f, lung_side="left") for f in run.result.findings)
    )
    sr = build_sr(sided, run.datasets, run.encoded.seg, uid_seed=SEED)
    assert _codes(sr.dataset) == _codes(run.encoded.sr.dataset)
    path = run.write(sr.dataset, "sr")
    lines = dciodvfy(path)
    assert not [line for line in lines if "Error" in line or "Warning" in line], lines
    dump = dsrdump(path)
    assert dump.returncode == 0 and not dump.stderr.strip(), dump.stderr
    assert '"Mass"' in dump.stdout and '"Kidney"' in dump.stdout
    assert "Nodule" not in dump.stdout and "Lung" not in dump.stdout
    found = _codes(sr.dataset)
    assert {MASS.value, KIDNEY.value, CATEGORY.value} <= found and not found & LUNG_CODES
    report = hd.sr.srread(path).content
    assert isinstance(report, hd.sr.MeasurementReport)
    groups = report.get_volumetric_roi_measurement_groups()
    assert len(groups) == 2
    for group in groups:
        assert group.finding_type is not None and group.finding_type.value == MASS.value
        (site,) = group.finding_sites
        assert site.value.value == KIDNEY.value and site.laterality is None


def test_an_empty_sr_says_no_kidney_mass(run: Run) -> None:
    empty = replace(run.result, findings=())
    sr = build_sr(empty, run.datasets, None, uid_seed=SEED)
    found = _codes(sr.dataset)
    assert {MASS.value, KIDNEY.value} <= found and not found & LUNG_CODES
    texts = {str(e.value) for e in sr.dataset.iterall() if e.keyword == "TextValue"}
    assert any(t.startswith("No kidney mass was found by Tiny kidney mass model") for t in texts)


def test_json_carries_the_concept(run: Run) -> None:
    data = to_json(run.result, uid_seed=SEED)
    assert data["concept"] == {
        "finding": {"code": "4147007", "scheme": "SCT", "meaning": "Mass"},
        "category": {
            "code": "49755003",
            "scheme": "SCT",
            "meaning": "Morphologically Abnormal Structure",
        },
        "site": {"code": "64033007", "scheme": "SCT", "meaning": "Kidney"},
    }
    assert [f["tracking_id"] for f in data["findings"]] == ["AI mass 1", "AI mass 2"]
    read = PreReadOut.model_validate(json.loads(json.dumps(data)))
    assert read.concept.finding_concept() == run.result.concept
    # a result stored before results named their concept reads back as lung nodules
    del data["concept"]
    assert PreReadOut.model_validate(data).concept.finding_concept() == LUNG_NODULE


def test_fhir_codes_the_kidney_mass(run: Run) -> None:
    bundle = json.loads(to_fhir_bundle(_report(run)).model_dump_json())
    resources = [e["resource"] for e in bundle["entry"]]
    report = next(r for r in resources if r["resourceType"] == "DiagnosticReport")
    assert [c["coding"][0]["code"] for c in report["conclusionCode"]] == [MASS.value]
    assert report["code"]["text"] == "AI pre-read: kidney masses"
    assert ": 2 kidney masses found by Tiny kidney mass model" in report["conclusion"]
    observations = [r for r in resources if r["resourceType"] == "Observation"]
    assert len(observations) == 2
    for observation in observations:
        assert observation["code"]["coding"][0]["code"] == MASS.value
        site = observation["bodySite"]
        assert [c["code"] for c in site["coding"]] == [KIDNEY.value] and site["text"] == "kidney"
    text = json.dumps(bundle)
    assert not [code for code in LUNG_CODES if f'"{code}"' in text]
    assert "nodule" not in text.lower() and "lung" not in text.lower()


def test_hl7_codes_the_kidney_mass(run: Run) -> None:
    text = to_oru(_report(run))
    message = parse_message(text, validation_level=VALIDATION_LEVEL.STRICT, find_groups=True)
    assert message.validate() is True
    obx = [segment for segment in text.split("\r") if segment.startswith("OBX|")]
    assert "|2 kidney masses found|" in obx[1]
    for label in ("1", "2"):
        for name, value in (
            ("121071^Finding^DCM", "4147007^Mass^SCT"),
            ("363698007^Finding Site^SCT", "64033007^Kidney^SCT"),
        ):
            assert any(f"|CWE|{name}|{label}|{value}|" in s for s in obx), (name, label, obx)
    assert not [code for code in LUNG_CODES if code in text]
    assert "nodule" not in text.lower() and "lung" not in text.lower()


def test_html_names_the_kidney_mass(run: Run) -> None:
    page = to_html(_report(run))
    assert "<h1>AI pre-read: kidney masses (preliminary)</h1>" in page
    assert "<p>2 kidney masses found by Tiny kidney mass model (tests) 1.0.0.</p>" in page
    assert "<td>AI mass 1</td><td>kidney</td>" in page
    assert "nodule" not in page.lower() and "lung" not in page.lower()
