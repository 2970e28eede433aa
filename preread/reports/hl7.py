"""A finished pre-read as an HL7 v2.5.1 ORU^R01 message (unsolicited observation result).

The message is built with hl7apy (v2.5.1 structures, STRICT validation level), so escaping,
lengths and datatypes are hl7apy's; :func:`to_oru` returns its ER7 text, segments separated
by ``\\r`` (HL7 v2.5.1 ch. 2.5, 2.7). Every result is marked *preliminary* (OBR-25, OBX-11 = P)
and the first OBX says that it is AI-generated and not verified by a radiologist.

=========  =========================================================================================
Segment    Content
=========  =========================================================================================
MSH        ``|^~\\&``; -3/-4/-5/-6 applications and facilities (:class:`Hl7Options`); -7 message
           time (UTC, ``+0000``); -9 ``ORU^R01^ORU_R01``; -10 first 20 hex digits of
           sha1(job id); -11 processing id; -12 ``2.5.1``; -18 ``UNICODE UTF-8``
PID        -1 ``1``; -3 patient id ``^^^issuer^MR``; -5 name, DICOM PN
           family^given^middle^prefix^suffix → XPN family^given^middle^suffix^prefix (no
           name: name type ``U``); -7 birth date; -8 sex M/F/O, else U
OBR        -1 ``1``; -3 filler order number: job id ^ sending application (``PREREAD``);
           -4 ``24627-2^CT Chest^LN``;
           -7 study date/time (local, as in DICOM); -18 accession number; -22 finished at;
           -24 ``CT``; -25 ``P``
OBX 1      TX ``121106^Comment^DCM``: the AI notice ~ model name, version, id, provider
OBX 2      ST ``121077^Conclusion^DCM``: "2 lung nodules found" / "No lung nodule was found by
           <model> <version>" (the result's concept in words: "<site> <finding type>")
OBX per    -4 sub-id = the finding's label, on all of them; findings ordered by label:
finding    NM ``103339001^Long axis^SCT`` [mm] (3-D); the Lung-RADS sizes the model gives, NM
           [mm]: ``AXIAL-LONG-AXIS^Axial long axis^99PRERD``, ``103340004^Short axis^SCT``,
           ``RID50155^average diameter^RADLEX``, ``SOLID-LONG-AXIS^Solid component long
           axis^99PRERD``; NM ``118565006^Volume^SCT`` [mm3];
           NM ``112031^Attenuation Coefficient^DCM`` [HU], method -17 ``373098007^Mean^SCT``;
           NM ``111012^Certainty of Finding^DCM`` [%]; when typed, CWE ``RID46010^solidness
           descriptor^RADLEX`` = ``RID50151^solid pulmonary nodule^RADLEX`` / RID50152
           part-solid / RID50153 non-solid; CWE ``121071^Finding^DCM`` = the concept's
           finding type (``27925004^Nodule^SCT``); CWE ``363698007^Finding Site^SCT`` = its
           site (Lung; Left lung / Right lung when the site is the lung and the side known);
           ST ``128138^Center of Mass^DCM`` = LPS centre [mm]; when Lung-RADS was assessed,
           CWE ``LUNG-RADS^Lung-RADS v2022 assessment category^99PRERD`` = ``LUNG-RADS-<c>``
           (not determinable: ST with the reason)
follow-up  when compared with the priors: the exam's ST ``FOLLOW-UP^Comparison with prior
           CT^99PRERD`` (no sub-id), and per finding ST ``FOLLOW-UP`` (the sentence of
           :mod:`preread.reports.followup_text`), NM ``VOLUME-CHANGE`` [%] and NM ``VDT`` [d]
           when given
OBX exam   when Lung-RADS was assessed, no sub-id: CWE ``LUNG-RADS`` = the exam's category
           (not determinable: ST with the reason) and TX ``121075^Recommendation^DCM`` = the
           v2022 management
every OBX  -11 ``P``; -14 finished at; -18 model ``id:version^PreRead^<device UID>^ISO``
review     when the reading was reviewed, the reviewer's OBXs follow (-14 signed at, -16 the
           reviewer, no -18): :mod:`preread.reports.hl7_review`
=========  =========================================================================================

Codes and rounding are those of the SR (:mod:`preread.reports.codes`, :mod:`preread.reports.sr`);
units are UCUM. The device UID in OBX-18 is the SR's Device Observer UID of the model. Coding
system names (OBX-3/-5/-6 CE_3) are SCT, DCM, LN, UCUM, RADLEX and 99PRERD (a local system,
HL7's ``99zzz`` form; see :mod:`preread.reports.codes`); table 0396 is extensible, and hl7apy's
copy of it (which lacks SCT and UCUM) gives warnings only, never errors.

hl7apy escapes ``| ^ & ~ \\`` (``\\F\\ \\S\\ \\T\\ \\R\\ \\E\\``) but not control characters,
which are refused (:class:`ReportError`), and it leaves a backslash alone where the text
already looks like an escape sequence (``\\F\\``, ``\\H\\``, ...).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.core import Message
from hl7apy.exceptions import HL7apyException
from hl7apy.factories import datatype_factory
from hl7apy.v2_5_1 import ST
from pydicom.sr.codedict import codes as sr_codes
from pydicom.sr.coding import Code

from preread.domain import CodedTerm, FindingConcept, LungRadsCategory, ModelRef
from preread.reports import codes
from preread.reports.context import ReportInput
from preread.reports.errors import ReportError
from preread.reports.followup_text import comparison_sentence, nodule_sentence
from preread.reports.json import ComparisonOut, FindingOut, LungRadsOut, ModelOut
from preread.reports.series import AI_NOTICE, MANUFACTURER
from preread.reports.uids import device_uid

__all__ = ["HL7_MEDIA_TYPE", "Hl7Options", "to_oru"]

HL7_MEDIA_TYPE = "x-application/hl7-v2+er7"
"""Media type of the ER7 text (the one HAPI and most interface engines use)."""

_VERSION = "2.5.1"
_FILLER_NAMESPACE = "PREREAD"
_PROCESSING_IDS = ("P", "T", "D")  # HL7 table 0103
_SEX = {"M": "M", "F": "F", "O": "O"}  # DICOM (0010,0040) → HL7 table 0001; else U


@dataclass(frozen=True)
class Hl7Options:
    """Message header settings agreed with the receiving interface (MSH-3 to MSH-6, MSH-11).

    ``processing_id`` is HL7 table 0103: P production, T training, D debugging.
    """

    sending_application: str = "PREREAD"
    sending_facility: str = "PREREAD"
    receiving_application: str = ""
    receiving_facility: str = ""
    processing_id: str = "P"


@dataclass(frozen=True)
class _Coded:
    """A CE/CWE value: identifier^text^name of coding system."""

    identifier: str
    text: str
    system: str

    @classmethod
    def of(cls, code: Code | CodedTerm, text: str | None = None) -> _Coded:
        return cls(code.value, text or code.meaning, code.scheme_designator)

    def components(self) -> tuple[str, str, str]:
        return (self.identifier, self.text, self.system)


# OBX-3 names the SR does not use as concept names; unit texts are UCUM print names.
_CONCLUSION = _Coded.of(sr_codes.DCM.Conclusion)  # DCM 121077
_FINDING = _Coded.of(sr_codes.DCM.Finding)  # DCM 121071, TID 1411 row 7
_FINDING_SITE = _Coded.of(sr_codes.SCT.FindingSite)  # SCT 363698007, TID 1411 row 8
_SIDE_LUNG = {  # pre-coordinated; SNOMED CT body structures, not in pydicom's dictionary
    "left": _Coded("44029006", "Left lung", "SCT"),
    "right": _Coded("3341006", "Right lung", "SCT"),
}
_RECOMMENDATION = _Coded.of(sr_codes.DCM.Recommendation)  # DCM 121075
_LUNG_RADS = _Coded.of(codes.LUNG_RADS)
_NODULE_TYPE = _Coded.of(codes.NODULE_TYPE)
_NODULE_TYPES = {kind: _Coded.of(code).components() for kind, code in codes.NODULE_TYPES.items()}
_MM = _Coded.of(codes.MILLIMETER, "millimeter")
_MM3 = _Coded.of(codes.CUBIC_MILLIMETER, "cubic millimeter")
_HU = _Coded.of(codes.HOUNSFIELD_UNIT, "Hounsfield unit")
_PERCENT = _Coded.of(codes.PERCENT, "percent")
_DAYS = _Coded.of(codes.DAY, "day")
_FOLLOW_UP = _Coded.of(codes.FOLLOW_UP)


@dataclass(frozen=True)
class _Obx:
    """One OBX, as typed data; written by :func:`_write_obx`."""

    value_type: str  # OBX-2
    name: _Coded  # OBX-3
    value: tuple[tuple[str, ...], ...]  # OBX-5: repetitions of components
    sub_id: str = ""  # OBX-4
    units: _Coded | None = None  # OBX-6
    method: _Coded | None = None  # OBX-17
    observed: str | None = None  # OBX-14, when not the result's time (DTM)
    responsible: tuple[str, str] | None = None  # OBX-16: (id, name) of a person
    by_device: bool = True  # OBX-18: the model; False for a person's observation


def to_oru(
    report: ReportInput,
    options: Hl7Options = Hl7Options(),
    *,
    message_time: datetime | None = None,
) -> str:
    """The ORU^R01 message of ``report``, as ER7 text (segments separated by ``\\r``).

    Parameters
    ----------
    report:
        The finished pre-read and its study (DICOM string forms).
    options:
        Header settings of the interface.
    message_time:
        MSH-7 (timezone-aware); ``report.finished_at`` when None, so that the same input gives
        the same message.

    Returns
    -------
    str
        HL7 v2.5.1 ER7; encode it as UTF-8 (MSH-18) and send it with :data:`HL7_MEDIA_TYPE`
        or in an MLLP frame.

    Raises
    ------
    ReportError
        When the patient id is empty, a datetime is naive, the processing id is not P/T/D, a
        text holds a control character, or hl7apy refuses a value (too long, not a valid
        date); the message names the HL7 field.
    """
    study = report.study
    if not study.patient_id.strip():
        raise ReportError("PID-3: the patient id is empty; a result needs a patient")
    if options.processing_id not in _PROCESSING_IDS:
        raise ReportError(
            f"MSH-11: processing id {options.processing_id!r} is not one of {_PROCESSING_IDS}"
        )
    finished = _dtm(report.finished_at, "OBR-22 (finished_at)")
    sent = _dtm(report.finished_at if message_time is None else message_time, "MSH-7")

    message = _new_message()
    msh = message.msh
    _put(msh, "msh_3.hd_1", options.sending_application)
    _put(msh, "msh_4.hd_1", options.sending_facility)
    _put(msh, "msh_5.hd_1", options.receiving_application)
    _put(msh, "msh_6.hd_1", options.receiving_facility)
    _put(msh, "msh_7.ts_1", sent)
    _put(msh, "msh_9.msg_1", "ORU")
    _put(msh, "msh_9.msg_2", "R01")
    _put(msh, "msh_9.msg_3", "ORU_R01")
    _put(msh, "msh_10", hashlib.sha1(report.job_id.encode()).hexdigest()[:20])
    _put(msh, "msh_11.pt_1", options.processing_id)
    _put(msh, "msh_12.vid_1", _VERSION)
    _put(msh, "msh_18", "UNICODE UTF-8")

    result = message.add_group("ORU_R01_PATIENT_RESULT")
    pid = result.add_group("ORU_R01_PATIENT").add_segment("PID")
    _put(pid, "pid_1", "1")
    _put(pid, "pid_3.cx_1", study.patient_id)
    _put(pid, "pid_3.cx_4.hd_1", study.issuer_of_patient_id)
    _put(pid, "pid_3.cx_5", "MR")
    family, given, middle, suffix, prefix = _xpn(study.patient_name)
    _put(pid, "pid_5.xpn_1.fn_1", family)
    _put(pid, "pid_5.xpn_2", given)
    _put(pid, "pid_5.xpn_3", middle)
    _put(pid, "pid_5.xpn_4", suffix)
    _put(pid, "pid_5.xpn_5", prefix)
    if not any((family, given, middle, suffix, prefix)):
        _put(pid, "pid_5.xpn_7", "U")  # table 0200 "Unspecified": PID-5 is required
    _put(pid, "pid_7.ts_1", study.patient_birth_date.strip())
    _put(pid, "pid_8", _SEX.get(study.patient_sex.strip().upper(), "U"))

    order = result.add_group("ORU_R01_ORDER_OBSERVATION")
    obr = order.add_segment("OBR")
    _put(obr, "obr_1", "1")
    _put(obr, "obr_3.ei_1", report.job_id)
    _put(obr, "obr_3.ei_2", options.sending_application or _FILLER_NAMESPACE)
    _put(obr, "obr_4.ce_1", str(codes.CT_CHEST.value))
    _put(obr, "obr_4.ce_2", str(codes.CT_CHEST.meaning))
    _put(obr, "obr_4.ce_3", str(codes.CT_CHEST.scheme_designator))
    _put(obr, "obr_7.ts_1", _study_dtm(study.study_date, study.study_time))
    _put(obr, "obr_18", study.accession_number.strip())
    _put(obr, "obr_22.ts_1", finished)
    _put(obr, "obr_24", "CT")
    _put(obr, "obr_25", "P")

    equipment = _equipment(report.preread.model)
    for set_id, obx in enumerate(_observations(report), start=1):
        segment = order.add_group("ORU_R01_OBSERVATION").add_segment("OBX")
        _write_obx(segment, set_id, obx, finished, equipment)
    return str(message.to_er7())


# --- What the OBXs say (typed, no hl7apy) ----------------------------------------------------


def _observations(report: ReportInput) -> list[_Obx]:
    out = report.preread
    model = out.model
    notice = _Obx(
        "TX",
        _Coded.of(codes.COMMENT),
        (
            (AI_NOTICE,),
            (
                f"Model: {model.name} {model.version} ({model.id}); "
                f"execution provider: {out.provider}",
            ),
        ),
    )
    concept = out.concept.finding_concept()
    n = len(out.findings)
    if n:
        text = f"{n} {concept.name(n)} found"
    else:
        text = f"No {concept.name()} was found by {model.name} {model.version}"
    obxs = [notice, _Obx("ST", _CONCLUSION, ((text,),))]
    comparison = out.comparison
    if comparison is not None:
        obxs.append(_Obx("ST", _FOLLOW_UP, ((comparison_sentence(comparison),),)))
    lung_rads = out.lung_rads
    if lung_rads is not None:
        obxs.extend(_lung_rads_exam_obxs(lung_rads))
    for finding in sorted(out.findings, key=lambda f: f.label):
        obxs.extend(_finding_obxs(concept, finding))
        if comparison is not None:
            obxs.extend(_follow_up_obxs(comparison, finding))
        if lung_rads is not None:
            row = next((r for r in lung_rads.nodules if r.label == finding.label), None)
            if row is not None:
                obxs.append(_lung_rads_obx(row.category, row.reason, str(finding.label)))
    if report.review is not None:  # the radiologist's review (preread.reports.hl7_review)
        from preread.reports.hl7_review import review_obxs

        obxs.extend(review_obxs(report.review, concept))
    return obxs


def _finding_obxs(concept: FindingConcept, finding: FindingOut) -> list[_Obx]:
    sub = str(finding.label)

    def number(name: Code, value: float, digits: int, units: _Coded) -> _Obx:
        return _Obx("NM", _Coded.of(name), ((_nm(value, digits, name, sub),),), sub, units)

    side = finding.lung_side if concept.in_lung else None
    site = _SIDE_LUNG[side] if side else _Coded.of(concept.site)
    centre = " ".join(
        f"{axis}={_nm(v, 2, codes.CENTER_OF_MASS, sub)}"
        for axis, v in zip("xyz", finding.center_lps_mm, strict=True)
    )
    attenuation = number(codes.MEAN_ATTENUATION, finding.mean_hu, 1, _HU)
    sizes = [  # the Lung-RADS sizes the model gives (none before 2.0.0)
        number(name, value, 2, _MM)
        for name, value in (
            (codes.AXIAL_LONG_AXIS, finding.axial_long_axis_mm),
            (codes.SHORT_AXIS, finding.short_axis_mm),
            (codes.MEAN_DIAMETER, finding.mean_diameter_mm),
            (codes.SOLID_COMPONENT_LONG_AXIS, finding.solid_component_long_axis_mm),
        )
        if value is not None
    ]
    kind = finding.nodule_type
    typed = [] if kind is None else [_Obx("CWE", _NODULE_TYPE, (_NODULE_TYPES[kind],), sub)]
    return [
        number(codes.LONG_AXIS, finding.long_axis_mm, 2, _MM),
        *sizes,
        number(codes.VOLUME, finding.volume_mm3, 1, _MM3),
        replace(attenuation, method=_Coded.of(codes.MEAN)),
        number(codes.PROBABILITY, 100.0 * finding.probability, 2, _PERCENT),
        *typed,
        _Obx("CWE", _FINDING, (_Coded.of(concept.finding).components(),), sub),
        _Obx("CWE", _FINDING_SITE, (site.components(),), sub),
        _Obx("ST", _Coded.of(codes.CENTER_OF_MASS), ((f"{centre} (LPS)",),), sub, _MM),
    ]


def _follow_up_obxs(comparison: ComparisonOut, finding: FindingOut) -> list[_Obx]:
    """One finding against the prior CT: the sentence, the volume change and the VDT."""
    row = next((n for n in comparison.nodules if n.label == finding.label), None)
    if row is None:
        return []
    sub = str(finding.label)
    prior_date = comparison.prior.study_date if comparison.prior else None
    obxs = [_Obx("ST", _FOLLOW_UP, ((nodule_sentence(row, prior_date),),), sub)]
    for name, value, units in (
        (codes.VOLUME_CHANGE, row.volume_change_pct, _PERCENT),
        (codes.VDT, row.vdt_days, _DAYS),
    ):
        if value is not None:
            obxs.append(_Obx("NM", _Coded.of(name), ((_nm(value, 1, name, sub),),), sub, units))
    return obxs


def _lung_rads_obx(category: LungRadsCategory | None, reason: str | None, sub_id: str) -> _Obx:
    """A Lung-RADS category (CWE), or ST with the reason it is not determinable."""
    if category is None:
        return _Obx("ST", _LUNG_RADS, ((reason or "not determinable",),), sub_id)
    value = _Coded.of(codes.LUNG_RADS_CATEGORIES[category]).components()
    return _Obx("CWE", _LUNG_RADS, (value,), sub_id)


def _lung_rads_exam_obxs(lung_rads: LungRadsOut) -> list[_Obx]:
    obxs = [_lung_rads_obx(lung_rads.category, lung_rads.reason, "")]
    if lung_rads.management:
        obxs.append(_Obx("TX", _RECOMMENDATION, ((lung_rads.management,),)))
    return obxs


def _nm(value: float, digits: int, name: Code, sub_id: str) -> str:
    """``value`` rounded as the SR rounds it, as an NM string (no exponent, no ``-0``)."""
    if not math.isfinite(value):
        raise ReportError(f"OBX-5 ({name.meaning}, finding {sub_id}): {value} is not finite")
    return f"{round(value, digits) + 0.0:.{digits}f}"


def _equipment(model: ModelOut) -> tuple[str, str, str, str]:
    """OBX-18 (EI): the model build, with the SR's Device Observer UID (ISO OID)."""
    ref = ModelRef(id=model.id, version=model.version, name=model.name, sha256=model.sha256)
    return (f"{model.id}:{model.version}", MANUFACTURER, str(device_uid(ref)), "ISO")


def _xpn(pn: str) -> tuple[str, str, str, str, str]:
    """DICOM PN (alphabetic group) → XPN family, given, middle, suffix, prefix."""
    parts = [p.strip() for p in pn.split("=")[0].split("^")] + [""] * 5
    family, given, middle, prefix, suffix = parts[:5]
    return family, given, middle, suffix, prefix


def _dtm(value: datetime, name: str) -> str:
    """An aware datetime as HL7 DTM in UTC, to the second: ``YYYYMMDDHHMMSS+0000``."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ReportError(f"{name}: {value.isoformat()} has no timezone; give an aware time")
    return value.astimezone(UTC).strftime("%Y%m%d%H%M%S") + "+0000"


def _study_dtm(date: str, time: str) -> str:
    """DICOM DA + TM (local time, no offset) as DTM; fractions cut to HL7's 4 digits."""
    date, time = date.strip(), time.strip()
    if not date:
        return ""
    whole, _, fraction = time.partition(".")
    return f"{date}{whole}.{fraction[:4]}" if fraction else f"{date}{whole}"


# --- hl7apy (untyped) -------------------------------------------------------------------------


def _new_message() -> Any:
    return Message("ORU_R01", version=_VERSION, validation_level=VALIDATION_LEVEL.STRICT)


def _label(segment: Any, path: str) -> str:
    """``pid_5.xpn_1.fn_1`` of PID → ``PID-5.1.1``."""
    field, *rest = path.split(".")
    numbers = [field.rsplit("_", 1)[1], *(p.rsplit("_", 1)[1] for p in rest)]
    return f"{segment.name}-{'.'.join(numbers)}"


def _put(segment: Any, path: str, value: str) -> None:
    """Set the leaf at ``path`` (hl7apy child names) to ``value``, typed by hl7apy; skip ``""``.

    The value becomes an instance of the leaf's HL7 datatype (ST, ID, DTM, ...), so that hl7apy
    escapes the delimiters in it and checks its length and format (STRICT).
    """
    if not value:
        return
    _check_text(segment, path, value)
    try:
        element = segment
        for name in path.split("."):
            element = getattr(element, name)
        element.value = datatype_factory(element.datatype, value, _VERSION, VALIDATION_LEVEL.STRICT)
    except (HL7apyException, ValueError) as exc:
        raise ReportError(f"{_label(segment, path)}: hl7apy refuses {value!r}: {exc}") from exc


def _write_obx(
    segment: Any, set_id: int, obx: _Obx, observed: str, equipment: Sequence[str]
) -> None:
    _put(segment, "obx_1", str(set_id))
    _put(segment, "obx_2", obx.value_type)
    for i, text in enumerate(obx.name.components(), start=1):
        _put(segment, f"obx_3.ce_{i}", text)
    _put(segment, "obx_4", obx.sub_id)
    _put_varies(segment, "obx_5", obx.value)
    if obx.units is not None:
        for i, text in enumerate(obx.units.components(), start=1):
            _put(segment, f"obx_6.ce_{i}", text)
    _put(segment, "obx_11", "P")
    _put(segment, "obx_14.ts_1", obx.observed or observed)
    if obx.responsible is not None:
        person, name = obx.responsible
        _put(segment, "obx_16.xcn_1", person)
        _put(segment, "obx_16.xcn_2.fn_1", name)
    if obx.method is not None:
        for i, text in enumerate(obx.method.components(), start=1):
            _put(segment, f"obx_17.ce_{i}", text)
    if obx.by_device:
        for i, text in enumerate(equipment, start=1):
            _put(segment, f"obx_18.ei_{i}", text)


def _check_text(segment: Any, path: str, value: str) -> None:
    """hl7apy does not escape control characters; a CR would end the segment."""
    if any(ord(c) < 0x20 or c == "\x7f" for c in value):
        raise ReportError(f"{_label(segment, path)}: control character in {value!r}")


def _put_varies(segment: Any, field: str, repetitions: Sequence[Sequence[str]]) -> None:
    """Set a field of datatype *varies* (OBX-5): repetitions of components.

    hl7apy (STRICT) cannot retype OBX-5 to the datatype in OBX-2, and reads it back as
    components of ST, so each component is escaped by hl7apy's ST and parsed into the field
    as hl7apy's parser would (which also checks ST's length of 199).
    """
    name = field.upper()
    for components in repetitions:
        for text in components:
            _check_text(segment, field, text)
    try:
        separator = segment.encoding_chars["COMPONENT"]
        for components in repetitions:
            er7 = separator.join(ST(c).to_er7(segment.encoding_chars) for c in components)
            segment.add_field(name).value = er7
    except (HL7apyException, ValueError) as exc:
        raise ReportError(
            f"{_label(segment, field)}: hl7apy refuses {repetitions!r}: {exc}"
        ) from exc
