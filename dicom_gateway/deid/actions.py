"""The actions of DICOM PS3.15 Annex E on single values, as pure functions.

:mod:`dicom_gateway.deid.deidentify` walks a dataset and calls these for each value; nothing
here knows about datasets except :func:`neutral_descriptor`, which reads coded attributes of the
dataset being cleaned. Every function that derives a value from an original uses
HMAC-SHA256 under the caller's secret (:func:`keyed_hash`), so the same original always gives the
same result and nobody without the secret can compute or invert it.

* ``U`` (Table E.1-1): :func:`remap_uid` — a ``2.25.`` UID (PS3.5 B.2, ISO/IEC 9834-8) whose
  integer is a UUID (version 8, RFC 9562) made of the first 16 bytes of
  HMAC-SHA256(secret, original UID); well-known UIDs (:func:`is_well_known_uid`) are never
  remapped.
* Pseudonyms: :func:`patient_pseudonym` for Patient ID and Patient's Name (their ``Z`` allows
  "a dummy value consistent with the VR").
* Retain Longitudinal Temporal Information with Modified Dates Option (PS3.15 E.3.6):
  :func:`date_offset_days`, :func:`shift_date` (DA), :func:`shift_datetime` (DT: the date part
  only; time and UTC offset kept).
* ``D``: :func:`dummy_value`.
* Clean Descriptors Option (PS3.15 E.3.5): :func:`neutral_descriptor`.

Functions given a malformed value raise :class:`ValueError`; the de-identifier turns that into
an error naming the attribute.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import re

from pydicom.dataset import Dataset

__all__ = [
    "WELL_KNOWN_UID_ROOT",
    "date_offset_days",
    "dummy_value",
    "is_well_known_uid",
    "keyed_hash",
    "names_a_class",
    "neutral_descriptor",
    "patient_pseudonym",
    "remap_uid",
    "shift_date",
    "shift_datetime",
]

#: The DICOM root (PS3.5 9): SOP Classes, Transfer Syntaxes, coding schemes, … never remapped.
WELL_KNOWN_UID_ROOT = "1.2.840.10008."

#: UI attributes outside Table E.1-1 that name a class, a scheme or software, not an instance.
_CLASS_LIKE_KEYWORDS = frozenset(
    {
        "CodingSchemeUID",
        "ContextGroupExtensionCreatorUID",
        "ContextUID",
        "CreatorVersionUID",
        "ImplementationClassUID",
        "MappingResourceUID",
        "PrivateInformationCreatorUID",
        "SegmentationTemplateUID",
    }
)

_TEXT_VRS = frozenset({"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT"})
_NUMBER_VRS = frozenset({"AT", "FD", "FL", "SL", "SS", "SV", "UL", "US", "UV"})
_BYTES_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
#: Maximum length of one value (PS3.5 Table 6.2-1) for the VRs a dummy or descriptor can take.
_MAX_LENGTH = {"AE": 16, "CS": 16, "SH": 16, "LO": 64, "PN": 64, "ST": 1024, "LT": 10240}

_DA = re.compile(r"^(\d{4})(\d{2})(\d{2})$")
_DT = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(.*)$")
_DT_REST = re.compile(r"^(\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?)?([+-]\d{4})?$")

#: Clean Descriptors: descriptor keyword → coded attributes whose first Code Meaning replaces it.
_FROM_CODES: dict[str, tuple[str, ...]] = {
    "StudyDescription": ("ProcedureCodeSequence",),
    "RequestedProcedureDescription": ("RequestedProcedureCodeSequence",),
    "PerformedProcedureStepDescription": ("PerformedProtocolCodeSequence", "ProcedureCodeSequence"),
    "ScheduledProcedureStepDescription": ("ScheduledProtocolCodeSequence",),
    "ProtocolName": ("PerformedProtocolCodeSequence",),
    "ContrastBolusAgent": ("ContrastBolusAgentSequence",),
    "ReasonForTheRequestedProcedure": ("ReasonForRequestedProcedureCodeSequence",),
    "AdmittingDiagnosesDescription": ("AdmittingDiagnosesCodeSequence",),
    "ReasonForVisit": ("ReasonForVisitCodeSequence",),
}


def keyed_hash(secret: bytes, purpose: str, value: str) -> bytes:
    """HMAC-SHA256(secret, purpose NUL value): ``purpose`` separates the derived quantities."""
    message = purpose.encode("ascii") + b"\0" + value.encode("utf-8")
    return hmac.new(secret, message, hashlib.sha256).digest()


def is_well_known_uid(uid: str) -> bool:
    """Whether ``uid`` is defined by the standard (under ``1.2.840.10008.``)."""
    return uid.strip("\0 ").startswith(WELL_KNOWN_UID_ROOT)


def names_a_class(keyword: str) -> bool:
    """Whether a UI attribute outside Table E.1-1 names a class, syntax or scheme (kept)."""
    return "SOPClass" in keyword or "TransferSyntax" in keyword or keyword in _CLASS_LIKE_KEYWORDS


def remap_uid(secret: bytes, uid: str) -> str:
    """The de-identified UID of ``uid`` (``U``); a well-known UID is returned unchanged."""
    uid = uid.strip("\0 ")
    if not uid or is_well_known_uid(uid):
        return uid
    raw = bytearray(keyed_hash(secret, "uid", uid)[:16])
    raw[6] = (raw[6] & 0x0F) | 0x80  # UUID version 8 (custom, RFC 9562)
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC variant
    return "2.25." + str(int.from_bytes(raw, "big"))


def patient_pseudonym(secret: bytes, patient_id: str) -> str:
    """The stable pseudonym of a patient: ``DEID-`` and 20 hex digits (80 bits) of the HMAC."""
    return "DEID-" + keyed_hash(secret, "patient", patient_id.strip()).hex()[:20].upper()


def date_offset_days(secret: bytes, patient_id: str, low: int, high: int) -> int:
    """The patient's date shift in days, in ``[low, high]``, from HMAC(secret, Patient ID)."""
    if low > high:
        raise ValueError(f"empty date shift range [{low}, {high}]")
    draw = int.from_bytes(keyed_hash(secret, "date-offset", patient_id.strip())[:8], "big")
    return low + draw % (high - low + 1)


def _shifted(year: int, month: int, day: int, days: int) -> datetime.date:
    try:
        return datetime.date(year, month, day) + datetime.timedelta(days=days)
    except OverflowError as exc:
        raise ValueError(f"date {year:04d}{month:02d}{day:02d} cannot be shifted") from exc


def shift_date(value: str, days: int) -> str:
    """A DA value (``YYYYMMDD``; the old ``YYYY.MM.DD`` is accepted) moved by ``days``.

    An empty value stays empty. Raises ValueError for anything else.
    """
    text = value.strip()
    if not text:
        return ""
    if len(text) == 10 and text[4] == "." and text[7] == ".":
        text = text.replace(".", "")
    match = _DA.match(text)
    if match is None:
        raise ValueError(f"not a date (DA): {value!r}")
    d = _shifted(int(match[1]), int(match[2]), int(match[3]), days)
    return f"{d.year:04d}{d.month:02d}{d.day:02d}"


def shift_datetime(value: str, days: int) -> str:
    """A DT value whose date part is moved by ``days``; time and UTC offset are kept.

    A date given to the year or month only is shifted from its first day and written back with
    the same precision. An empty value stays empty. Raises ValueError for a malformed value.
    """
    text = value.strip()
    if not text:
        return ""
    match = _DT.match(text)
    if match is None or _DT_REST.match(match[4]) is None:
        raise ValueError(f"not a date time (DT): {value!r}")
    month, day = match[2], match[3]
    d = _shifted(int(match[1]), int(month or 1), int(day or 1), days)
    date = f"{d.year:04d}" + (f"{d.month:02d}" if month else "") + (f"{d.day:02d}" if day else "")
    return date + match[4]


def dummy_value(vr: str, original: str, secret: bytes) -> str | int | bytes:
    """A non-empty dummy of the VR for ``D`` (UI and SQ are the caller's: remap / items).

    Text VRs get ``ANON`` and 8 hex digits of HMAC(secret, VR and original): the same original
    gives the same dummy in every instance, and it fits every text VR (12 characters).
    """
    if vr in _TEXT_VRS:
        return "ANON" + keyed_hash(secret, "dummy", f"{vr}\0{original}").hex()[:8].upper()
    if vr in ("IS", "DS"):
        return "0"
    if vr == "AS":
        return "000D"
    if vr == "DA":
        return "19000101"
    if vr == "TM":
        return "000000"
    if vr == "DT":
        return "19000101000000"
    if vr in _NUMBER_VRS:
        return 0
    if vr in _BYTES_VRS:
        return b"\0\0"
    raise ValueError(f"no dummy value for VR {vr}")


def _first_code_meaning(ds: Dataset, keyword: str) -> str:
    items = ds.get(keyword)
    if not items:
        return ""
    return str(items[0].get("CodeMeaning", "") or "").strip()


def neutral_descriptor(keyword: str, ds: Dataset, vr: str) -> str | None:
    """The Clean Descriptors value of a descriptor of ``ds``, or None when there is none.

    The value is built only from attributes the profile keeps unchanged, so it adds no
    information: Series Description from Modality and Body Part Examined (Defined Terms, e.g.
    ``CT CHEST``); Study Description, Protocol Name, Contrast/Bolus Agent and a few others from
    the Code Meaning of their coded counterpart (e.g. Procedure Code Sequence). Free text is
    never copied.
    """
    if keyword == "SeriesDescription":
        parts = (str(ds.get(k, "") or "").strip() for k in ("Modality", "BodyPartExamined"))
        value = " ".join(p for p in parts if p)
    else:
        value = next(
            (m for m in (_first_code_meaning(ds, k) for k in _FROM_CODES.get(keyword, ())) if m),
            "",
        )
    if not value:
        return None
    return value[: _MAX_LENGTH.get(vr, 64)]
