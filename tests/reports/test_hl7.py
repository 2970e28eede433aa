"""The HL7 v2.5.1 ORU^R01 encoder, read back and validated by hl7apy's parser (STRICT).

Input: a hand-made :class:`ReportInput` (two findings, one per lung, given out of label order;
and a variant without findings). Escape sequences are undone by :func:`_unescape` (HL7 v2.5.1
ch. 2.7.4), since hl7apy 1.3.5 keeps them in parsed values.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message

from preread.reports.context import ReportInput, ReportStudy
from preread.reports.errors import ReportError
from preread.reports.hl7 import HL7_MEDIA_TYPE, Hl7Options, to_oru
from preread.reports.json import FindingOut, ModelOut, PreReadOut
from preread.reports.series import AI_NOTICE
from tests.reports.typed import typed_findings

MODEL = ModelOut(
    id="lung-nodule-unet",
    version="1.4.2",
    name="PreRead Lung Nodule UNet",
    sha256="0123456789abcdef" * 4,
)
LEFT = FindingOut(
    label=1,
    tracking_id="AI nodule 1",
    tracking_uid="1.2.826.0.1.3680043.8.498.1",
    center_lps_mm=(99.7, -15.5, -145.6),
    long_axis_mm=14.016,
    volume_mm3=1436.7549,
    probability=0.77512,
    mean_hu=-35.54,
    lung_side="left",
)
RIGHT = FindingOut(
    label=2,
    tracking_id="AI nodule 2",
    tracking_uid="1.2.826.0.1.3680043.8.498.2",
    center_lps_mm=(-108.4, 46.2, -136.7),
    long_axis_mm=10.0,
    volume_mm3=523.6,
    probability=0.675,
    mean_hu=-12.0,
    lung_side="right",
)
# the same nodules typed by a 2.0.0-like model, and a third, ground-glass one
SOLID, PART_SOLID, GROUND_GLASS = typed_findings(LEFT, RIGHT, "1.2.826.0.1.3680043.8.498.3")
TYPED = (GROUND_GLASS, PART_SOLID, SOLID)  # out of order on purpose
STUDY = ReportStudy(
    tenant="hospital-a",
    study_instance_uid="1.2.826.0.1.3680043.8.498.100",
    patient_id="PAT-001",
    issuer_of_patient_id="HOSP-A",
    patient_name="Müller^Zoë^Anna^Dr.^Jr.",
    patient_birth_date="19500131",
    patient_sex="F",
    accession_number="ACC-123",
    study_date="20240501",
    study_time="101500.123456",
    study_description="CT THORAX",
)
FINISHED = datetime(2024, 5, 1, 12, 31, 5, tzinfo=UTC)


def _report(
    findings: tuple[FindingOut, ...] = (RIGHT, LEFT),  # out of order on purpose
    model: ModelOut = MODEL,
    job_id: str = "job-42",
    finished_at: datetime = FINISHED,
    **study: str,
) -> ReportInput:
    preread = PreReadOut(
        study_instance_uid=STUDY.study_instance_uid,
        series_instance_uid="1.2.826.0.1.3680043.8.498.101",
        frame_of_reference_uid="1.2.826.0.1.3680043.8.498.102",
        model=model,
        provider="CPUExecutionProvider",
        created=datetime(2024, 5, 1, 12, 30, 15, tzinfo=UTC),
        findings=list(findings),
    )
    return ReportInput(
        study=replace(STUDY, **study),
        preread=preread,
        job_id=job_id,
        finished_at=finished_at,
        sr_sop_instance_uid="1.2.826.0.1.3680043.8.498.103",
        seg_sop_instance_uid="1.2.826.0.1.3680043.8.498.104" if findings else None,
    )


# --- reading the message back with hl7apy -----------------------------------------------------

_ESCAPES = {"F": "|", "S": "^", "T": "&", "R": "~", "E": "\\"}


def _unescape(text: str) -> str:
    return re.sub(r"\\([FSTRE])\\", lambda m: _ESCAPES[m.group(1)], text)


def _parse(text: str) -> Any:
    return parse_message(text, validation_level=VALIDATION_LEVEL.STRICT, find_groups=True)


def _get(element: Any, name: str) -> str:
    """ER7 of a field (repetitions joined by ``~``) or component, still escaped."""
    return "~".join(str(e.to_er7()) for e in getattr(element, name))


def _pid(message: Any) -> Any:
    return message.oru_r01_patient_result.oru_r01_patient.pid


def _obr(message: Any) -> Any:
    return message.oru_r01_patient_result.oru_r01_order_observation.obr


def _obxs(message: Any) -> list[Any]:
    order = message.oru_r01_patient_result.oru_r01_order_observation
    return [group.obx for group in order.oru_r01_observation]


def _by_finding(message: Any) -> dict[str, dict[str, Any]]:
    """Finding OBXs by OBX-4 (sub-id), then by the OBX-3 identifier."""
    grouped: dict[str, dict[str, Any]] = {}
    for obx in _obxs(message)[2:]:
        grouped.setdefault(_get(obx, "obx_4"), {})[_get(obx.obx_3, "ce_1")] = obx
    return grouped


def _obx_count(findings: tuple[FindingOut, ...]) -> int:
    """Notice and conclusion, then seven OBXs per finding, one per Lung-RADS size given and one
    for the type when given."""
    sizes = (
        "axial_long_axis_mm",
        "short_axis_mm",
        "mean_diameter_mm",
        "solid_component_long_axis_mm",
    )
    return 2 + sum(
        7 + sum(getattr(f, size) is not None for size in sizes) + (f.nodule_type is not None)
        for f in findings
    )


# --- tests ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "findings", [(RIGHT, LEFT), TYPED, ()], ids=["two-findings", "typed-findings", "no-finding"]
)
def test_strict_parse_and_validate(findings: tuple[FindingOut, ...]) -> None:
    text = to_oru(_report(findings))
    assert "\n" not in text
    segments = [s[:3] for s in text.split("\r")]
    assert segments == ["MSH", "PID", "OBR"] + ["OBX"] * _obx_count(findings)
    message = _parse(text)
    assert message.validate() is True
    assert message.to_er7() == text


def test_header() -> None:
    message = _parse(to_oru(_report()))
    msh = message.msh
    assert _get(msh, "msh_2") == "^~\\&"
    assert _get(msh, "msh_3") == "PREREAD"
    assert _get(msh, "msh_4") == "PREREAD"
    assert _get(msh, "msh_5") == _get(msh, "msh_6") == ""
    assert _get(msh, "msh_7") == "20240501123105+0000"
    assert _get(msh, "msh_9") == "ORU^R01^ORU_R01"
    assert _get(msh, "msh_10") == hashlib.sha1(b"job-42").hexdigest()[:20]
    assert _get(msh, "msh_11") == "P"
    assert _get(msh, "msh_12") == "2.5.1"
    assert _get(msh, "msh_18") == "UNICODE UTF-8"
    assert HL7_MEDIA_TYPE == "x-application/hl7-v2+er7"


def test_options_and_message_time() -> None:
    options = Hl7Options(
        sending_application="PR-APP",
        sending_facility="PR-FAC",
        receiving_application="RIS",
        receiving_facility="HOSP-A",
        processing_id="T",
    )
    sent = datetime(2024, 5, 1, 14, 0, 0, tzinfo=timezone(timedelta(hours=2)))
    message = _parse(to_oru(_report(), options, message_time=sent))
    msh = message.msh
    assert [_get(msh, f"msh_{i}") for i in (3, 4, 5, 6, 11)] == [
        "PR-APP",
        "PR-FAC",
        "RIS",
        "HOSP-A",
        "T",
    ]
    assert _get(msh, "msh_7") == "20240501120000+0000"  # converted to UTC
    assert _get(_obr(message), "obr_3") == "job-42^PR-APP"
    assert _get(_obr(message), "obr_22") == "20240501123105+0000"  # finished_at, not sent


def test_patient() -> None:
    pid = _pid(_parse(to_oru(_report())))
    assert _get(pid, "pid_3") == "PAT-001^^^HOSP-A^MR"
    # DICOM family^given^middle^prefix^suffix → XPN family^given^middle^suffix^prefix
    assert _get(pid, "pid_5") == "Müller^Zoë^Anna^Jr.^Dr."
    assert _get(pid, "pid_7") == "19500131"
    assert _get(pid, "pid_8") == "F"


def test_patient_without_issuer_name_birth_date() -> None:
    report = _report(issuer_of_patient_id="", patient_name="", patient_birth_date="")
    message = _parse(to_oru(report))
    assert message.validate() is True
    pid = _pid(message)
    assert _get(pid, "pid_3") == "PAT-001^^^^MR"
    assert _get(pid, "pid_5") == "^^^^^^U"  # PID-5 is required: name type "Unspecified"
    assert _get(pid, "pid_7") == ""


@pytest.mark.parametrize(
    ("dicom", "hl7"), [("M", "M"), ("F", "F"), ("O", "O"), ("", "U"), ("X", "U"), ("m ", "M")]
)
def test_sex(dicom: str, hl7: str) -> None:
    assert _get(_pid(_parse(to_oru(_report(patient_sex=dicom)))), "pid_8") == hl7


def test_order() -> None:
    obr = _obr(_parse(to_oru(_report())))
    assert _get(obr, "obr_1") == "1"
    assert _get(obr, "obr_2") == ""
    assert _get(obr, "obr_3") == "job-42^PREREAD"
    assert _get(obr, "obr_4") == "24627-2^CT Chest^LN"
    assert _get(obr, "obr_7") == "20240501101500.1234"  # DICOM local time, no offset
    assert _get(obr, "obr_18") == "ACC-123"
    assert _get(obr, "obr_22") == "20240501123105+0000"
    assert _get(obr, "obr_24") == "CT"
    assert _get(obr, "obr_25") == "P"


def test_order_without_study_time_and_accession() -> None:
    obr = _obr(_parse(to_oru(_report(study_time="", accession_number=""))))
    assert _get(obr, "obr_7") == "20240501"
    assert _get(obr, "obr_18") == ""
    obr = _obr(_parse(to_oru(_report(study_date=""))))
    assert _get(obr, "obr_7") == ""


@pytest.mark.parametrize("findings", [(RIGHT, LEFT), (LEFT,), TYPED, ()])
def test_every_obx_preliminary_and_numbered(findings: tuple[FindingOut, ...]) -> None:
    obxs = _obxs(_parse(to_oru(_report(findings))))
    assert len(obxs) == _obx_count(findings)
    assert [_get(o, "obx_1") for o in obxs] == [str(i) for i in range(1, len(obxs) + 1)]
    assert {_get(o, "obx_11") for o in obxs} == {"P"}
    assert {_get(o, "obx_14") for o in obxs} == {"20240501123105+0000"}
    assert {_get(o.obx_18, "ei_1") for o in obxs} == {"lung-nodule-unet:1.4.2"}


def test_notice_and_conclusion() -> None:
    notice, conclusion = _obxs(_parse(to_oru(_report())))[:2]
    assert _get(notice, "obx_2") == "TX"
    assert _get(notice, "obx_3") == "121106^Comment^DCM"
    assert _get(notice, "obx_4") == ""
    lines = [_unescape(line) for line in _get(notice, "obx_5").split("~")]
    assert lines[0] == AI_NOTICE
    assert lines[1] == (
        "Model: PreRead Lung Nodule UNet 1.4.2 (lung-nodule-unet); "
        "execution provider: CPUExecutionProvider"
    )
    assert _get(conclusion, "obx_2") == "ST"
    assert _get(conclusion, "obx_3") == "121077^Conclusion^DCM"
    assert _get(conclusion, "obx_5") == "2 lung nodules found"


@pytest.mark.parametrize(
    ("findings", "text"),
    [
        ((LEFT,), "1 lung nodule found"),
        ((), "No lung nodule was found by PreRead Lung Nodule UNet 1.4.2"),
    ],
)
def test_conclusion_text(findings: tuple[FindingOut, ...], text: str) -> None:
    conclusion = _obxs(_parse(to_oru(_report(findings))))[1]
    assert _get(conclusion, "obx_5") == text


def test_values_and_units() -> None:
    grouped = _by_finding(_parse(to_oru(_report())))
    assert list(grouped) == ["1", "2"]  # ordered by label although given 2, 1
    expected = {  # OBX-3 id: (OBX-2, OBX-3 text, OBX-3 system, OBX-6)
        "103339001": ("NM", "Long axis", "SCT", "mm^millimeter^UCUM"),
        "118565006": ("NM", "Volume", "SCT", "mm3^cubic millimeter^UCUM"),
        "112031": ("NM", "Attenuation Coefficient", "DCM", "[hnsf'U]^Hounsfield unit^UCUM"),
        "111012": ("NM", "Certainty of Finding", "DCM", "%^percent^UCUM"),
        "121071": ("CWE", "Finding", "DCM", ""),
        "363698007": ("CWE", "Finding Site", "SCT", ""),
        "128138": ("ST", "Center of Mass", "DCM", "mm^millimeter^UCUM"),
    }
    for sub_id, finding in (("1", LEFT), ("2", RIGHT)):
        obxs = grouped[sub_id]
        assert list(obxs) == list(expected)
        for code, (value_type, text, system, units) in expected.items():
            obx = obxs[code]
            assert _get(obx, "obx_2") == value_type
            assert _get(obx, "obx_3") == f"{code}^{text}^{system}"
            assert _get(obx, "obx_6") == units
        value = {code: _get(obx, "obx_5") for code, obx in obxs.items()}
        assert float(value["103339001"]) == round(finding.long_axis_mm, 2)
        assert float(value["118565006"]) == round(finding.volume_mm3, 1)
        assert float(value["112031"]) == round(finding.mean_hu, 1)
        assert float(value["111012"]) == round(100 * finding.probability, 2)
        assert _get(obxs["112031"], "obx_17") == "373098007^Mean^SCT"
    left, right = grouped["1"], grouped["2"]
    assert [_get(left[c], "obx_5") for c in expected] == [
        "14.02",
        "1436.8",
        "-35.5",
        "77.51",
        "27925004^Nodule^SCT",
        "44029006^Left lung^SCT",
        "x=99.70 y=-15.50 z=-145.60 (LPS)",
    ]
    assert _get(right["363698007"], "obx_5") == "3341006^Right lung^SCT"
    assert _get(right["128138"], "obx_5") == "x=-108.40 y=46.20 z=-136.70 (LPS)"


def test_typed_findings_carry_their_type_and_lung_rads_sizes() -> None:
    grouped = _by_finding(_parse(to_oru(_report(TYPED))))
    assert list(grouped) == ["1", "2", "3"]
    sizes = {  # OBX-3 id: OBX-3 text^system
        "AXIAL-LONG-AXIS": "Axial long axis^99PRERD",
        "103340004": "Short axis^SCT",
        "RID50155": "average diameter^RADLEX",
        "SOLID-LONG-AXIS": "Solid component long axis^99PRERD",
    }
    expected = {  # sub-id: (OBX-5 of the sizes given, OBX-5 of the type)
        "1": (
            {"AXIAL-LONG-AXIS": "13.20", "103340004": "11.05", "RID50155": "12.10"},
            "RID50151^solid pulmonary nodule^RADLEX",
        ),
        "2": (
            {
                "AXIAL-LONG-AXIS": "9.46",
                "103340004": "7.20",
                "RID50155": "8.30",
                "SOLID-LONG-AXIS": "4.13",
            },
            "RID50152^part-solid pulmonary nodule^RADLEX",
        ),
        "3": (
            {"AXIAL-LONG-AXIS": "7.50", "103340004": "6.00", "RID50155": "6.80"},
            "RID50153^non-solid pulmonary nodule^RADLEX",
        ),
    }
    for sub_id, (values, kind) in expected.items():
        obxs = grouped[sub_id]
        assert list(obxs) == [  # the 3-D long axis first, the sizes given next, in this order
            "103339001",
            *values,
            "118565006",
            "112031",
            "111012",
            "RID46010",
            "121071",
            "363698007",
            "128138",
        ]
        for code, value in values.items():
            obx = obxs[code]
            assert _get(obx, "obx_2") == "NM"
            assert _get(obx, "obx_3") == f"{code}^{sizes[code]}"
            assert _get(obx, "obx_5") == value
            assert _get(obx, "obx_6") == "mm^millimeter^UCUM"
            assert _get(obx, "obx_11") == "P"
        kind_obx = obxs["RID46010"]
        assert _get(kind_obx, "obx_2") == "CWE"
        assert _get(kind_obx, "obx_3") == "RID46010^solidness descriptor^RADLEX"
        assert _get(kind_obx, "obx_5") == kind
        assert _get(kind_obx, "obx_11") == "P"


def test_untyped_findings_have_no_type_and_no_lung_rads_sizes() -> None:
    message = _parse(to_oru(_report()))
    names = {_get(obx.obx_3, "ce_1") for obx in _obxs(message)}
    assert not names & {"AXIAL-LONG-AXIS", "103340004", "RID50155", "SOLID-LONG-AXIS", "RID46010"}
    mixed = _by_finding(_parse(to_oru(_report((PART_SOLID, LEFT)))))
    assert "RID46010" not in mixed["1"] and "SOLID-LONG-AXIS" in mixed["2"]


def test_finding_site_without_side() -> None:
    finding = LEFT.model_copy(update={"lung_side": None})
    site = _by_finding(_parse(to_oru(_report((finding,)))))["1"]["363698007"]
    assert _get(site, "obx_5") == "39607008^Lung^SCT"


def test_deterministic() -> None:
    assert to_oru(_report()) == to_oru(_report())
    sent = datetime(2024, 6, 1, tzinfo=UTC)
    assert to_oru(_report(), message_time=sent) == to_oru(_report(), message_time=sent)
    other = _parse(to_oru(_report(job_id="job-43")))
    assert _get(other.msh, "msh_10") != _get(_parse(to_oru(_report())).msh, "msh_10")


def test_escaping_round_trip() -> None:
    name = "O'Brien|Smith^Jo&n~X\\Y"  # family "O'Brien|Smith", given "Jo&n~X\Y"
    model = MODEL.model_copy(update={"name": "Nodule|Net^2 & co~"})
    text = to_oru(_report(model=model, patient_name=name, accession_number="A|1"))
    assert "O'Brien\\F\\Smith^Jo\\T\\n\\R\\X\\E\\Y" in text
    assert "Nodule\\F\\Net\\S\\2 \\T\\ co\\R\\" in text
    message = _parse(text)
    assert message.validate() is True
    pid = _pid(message)
    family = _unescape(_get(pid.pid_5.xpn_1, "fn_1"))
    given = _unescape(_get(pid.pid_5, "xpn_2"))
    assert (family, given) == ("O'Brien|Smith", "Jo&n~X\\Y")
    assert f"{family}^{given}" == name
    assert _unescape(_get(_obr(message), "obr_18")) == "A|1"
    notice = _obxs(message)[0]
    assert "Nodule|Net^2 & co~ 1.4.2" in _unescape(_get(notice, "obx_5").split("~")[1])


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"patient_id": ""}, "PID-3"),
        ({"patient_id": "  "}, "PID-3"),
        ({"patient_birth_date": "1950-01-31"}, "PID-7"),
        ({"study_date": "2024-05-01"}, "OBR-7"),
        ({"patient_id": "P" * 200}, "PID-3.1"),
        ({"patient_name": "Doe^Jo\nhn"}, "PID-5.2"),
    ],
)
def test_bad_study_raises(change: dict[str, str], field: str) -> None:
    with pytest.raises(ReportError, match=rf"^{re.escape(field)}\b"):
        to_oru(replace(_report(), study=replace(STUDY, **change)))


def test_bad_values_raise() -> None:
    with pytest.raises(ReportError, match=r"^OBR-22 \(finished_at\)"):
        to_oru(_report(finished_at=datetime(2024, 5, 1, 12, 31, 5)))
    with pytest.raises(ReportError, match=r"^MSH-7"):
        to_oru(_report(), message_time=datetime(2024, 5, 1))
    with pytest.raises(ReportError, match=r"^MSH-11"):
        to_oru(_report(), Hl7Options(processing_id="X"))
    with pytest.raises(ReportError, match=r"^MSH-3\.1"):
        to_oru(_report(), Hl7Options(sending_application="A" * 200))
    long_name = MODEL.model_copy(update={"name": "N" * 200})
    with pytest.raises(ReportError, match=r"^OBX-5"):
        to_oru(_report(model=long_name))
    nan = LEFT.model_copy(update={"long_axis_mm": float("nan")})
    with pytest.raises(ReportError, match=r"^OBX-5 \(Long axis, finding 1\)"):
        to_oru(_report((nan,)))
