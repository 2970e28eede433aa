"""Orthanc's JSON answers → typed records: pure functions, no I/O.

Each parser checks the shape it relies on and raises :class:`AnswerError` (a ``ValueError``)
naming the field, which :class:`~dicom_gateway.client.OrthancClient` turns into an
:class:`~dicom_gateway.errors.OrthancError` with the request's path. Shapes are those of
Orthanc 1.10's REST API (``/changes``, ``/studies/{id}``, ``/series/{id}``,
``/instances/{id}/tags?short``) and of a STOW-RS response (PS3.18 10.5.3, Store Instances
Response Module: ReferencedSOPSequence (0008,1199), FailedSOPSequence (0008,1198)).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pydicom.datadict import tag_for_keyword

from dicom_gateway.source import (
    Change,
    ChangesPage,
    SeriesInfo,
    StudyInfo,
    SystemInfo,
    instance_sample,
)

__all__ = [
    "AnswerError",
    "parse_changes",
    "parse_series",
    "parse_stow",
    "parse_study",
    "parse_system",
    "short_tag_getter",
]

_SHARED_GROUPS = "5200,9229"
_FUNCTIONAL_GROUP_OF = {
    "ImageOrientationPatient": "0020,9116",  # Plane Orientation Sequence
    "PixelSpacing": "0028,9110",  # Pixel Measures Sequence
    "SliceThickness": "0028,9110",
}


class AnswerError(ValueError):
    """An Orthanc answer lacks a field or has the wrong shape."""


def _object(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise AnswerError(f"{what}: expected a JSON object, got {type(value).__name__}")
    return value


def _str(obj: Mapping[str, Any], key: str, what: str, *, required: bool = False) -> str:
    value = obj.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise AnswerError(f"{what}: {key} should be a string, got {value!r}")
    return value


def _int(obj: Mapping[str, Any], key: str, what: str) -> int:
    value = obj.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise AnswerError(f"{what}: {key} should be an integer, got {value!r}")
    return value


def _bool(obj: Mapping[str, Any], key: str, what: str) -> bool:
    value = obj.get(key)
    if not isinstance(value, bool):
        raise AnswerError(f"{what}: {key} should be true or false, got {value!r}")
    return value


def _ids(obj: Mapping[str, Any], key: str, what: str) -> tuple[str, ...]:
    value = obj.get(key)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise AnswerError(f"{what}: {key} should be a list of IDs, got {value!r}")
    return tuple(value)


def parse_system(answer: Any) -> SystemInfo:
    """``GET /system``."""
    obj = _object(answer, "/system")
    port = obj.get("DicomPort")
    return SystemInfo(
        name=_str(obj, "Name", "/system"),
        version=_str(obj, "Version", "/system", required=True),
        dicom_aet=_str(obj, "DicomAet", "/system"),
        dicom_port=port if isinstance(port, int) else None,
    )


def parse_changes(answer: Any) -> ChangesPage:
    """``GET /changes?since=…&limit=…``."""
    obj = _object(answer, "/changes")
    raw = obj.get("Changes")
    if not isinstance(raw, list):
        raise AnswerError(f"/changes: Changes should be a list, got {raw!r}")
    changes = []
    for item in raw:
        entry = _object(item, "/changes entry")
        changes.append(
            Change(
                seq=_int(entry, "Seq", "/changes entry"),
                change_type=_str(entry, "ChangeType", "/changes entry", required=True),
                resource_type=_str(entry, "ResourceType", "/changes entry"),
                orthanc_id=_str(entry, "ID", "/changes entry"),
                date=_str(entry, "Date", "/changes entry"),
            )
        )
    return ChangesPage(
        changes=tuple(changes),
        last=_int(obj, "Last", "/changes"),
        done=_bool(obj, "Done", "/changes"),
    )


def parse_study(answer: Any) -> StudyInfo:
    """``GET /studies/{id}`` or one item of ``GET /studies?expand``."""
    obj = _object(answer, "study")
    what = f"study {obj.get('ID')}"
    tags = _object(obj.get("MainDicomTags", {}), f"{what} MainDicomTags")
    patient = _object(obj.get("PatientMainDicomTags", {}), f"{what} PatientMainDicomTags")
    return StudyInfo(
        orthanc_id=_str(obj, "ID", what, required=True),
        study_instance_uid=_str(tags, "StudyInstanceUID", what, required=True),
        patient_id=_str(patient, "PatientID", what),
        patient_name=_str(patient, "PatientName", what),
        patient_birth_date=_str(patient, "PatientBirthDate", what),
        patient_sex=_str(patient, "PatientSex", what),
        study_date=_str(tags, "StudyDate", what),
        study_time=_str(tags, "StudyTime", what),
        study_description=_str(tags, "StudyDescription", what),
        accession_number=_str(tags, "AccessionNumber", what),
        study_id=_str(tags, "StudyID", what),
        series_ids=_ids(obj, "Series", what),
        is_stable=_bool(obj, "IsStable", what),
        last_update=_str(obj, "LastUpdate", what),
    )


def _short_key(keyword: str) -> str:
    tag = tag_for_keyword(keyword)
    if tag is None:
        raise KeyError(keyword)
    return f"{tag >> 16:04x},{tag & 0xFFFF:04x}"


def short_tag_getter(tags: Mapping[str, Any]) -> Callable[[str], str | None]:
    """A ``get(keyword) -> str | None`` over ``GET /instances/{id}/tags?short``.

    Attributes missing at the top level are looked up in the Shared Functional Groups
    Sequence (PS3.3 C.7.6.16) of a multi-frame instance.
    """

    def get(keyword: str) -> str | None:
        key = _short_key(keyword)
        value = tags.get(key)
        if isinstance(value, str):
            return value
        group = _FUNCTIONAL_GROUP_OF.get(keyword)
        shared = tags.get(_SHARED_GROUPS)
        if group and isinstance(shared, list) and shared and isinstance(shared[0], Mapping):
            items = shared[0].get(group)
            if isinstance(items, list) and items and isinstance(items[0], Mapping):
                nested = items[0].get(key)
                if isinstance(nested, str):
                    return nested
        return None

    return get


def parse_series(answer: Any, tags: Any, remote_aet: str | None) -> SeriesInfo:
    """``GET /series/{id}``, plus ``tags?short`` and ``RemoteAET`` of its first instance."""
    obj = _object(answer, "series")
    what = f"series {obj.get('ID')}"
    main = _object(obj.get("MainDicomTags", {}), f"{what} MainDicomTags")
    get = short_tag_getter(_object(tags, f"{what} first instance tags"))
    number = _str(main, "SeriesNumber", what).strip()
    try:
        series_number = int(number) if number else None
    except ValueError:
        series_number = None
    return SeriesInfo(
        orthanc_id=_str(obj, "ID", what, required=True),
        study_orthanc_id=_str(obj, "ParentStudy", what, required=True),
        study_instance_uid=get("StudyInstanceUID") or "",
        series_instance_uid=_str(main, "SeriesInstanceUID", what, required=True),
        modality=_str(main, "Modality", what),
        series_description=_str(main, "SeriesDescription", what),
        series_number=series_number,
        body_part_examined=_str(main, "BodyPartExamined", what),
        instance_count=len(_ids(obj, "Instances", what)),
        sample=instance_sample(get),
        remote_aet=remote_aet or None,
        is_stable=_bool(obj, "IsStable", what),
    )


def _first_value(item: Mapping[str, Any], tag: str) -> str:
    """The first value of a DICOM JSON attribute (PS3.18 F.2.2), or ""."""
    element = item.get(tag)
    values = element.get("Value") if isinstance(element, Mapping) else None
    return str(values[0]) if isinstance(values, list) and values else ""


def _sop_uids(answer: Mapping[str, Any], tag: str) -> list[tuple[str, str]]:
    """(ReferencedSOPInstanceUID, FailureReason or "") of each item of a DICOM JSON sequence."""
    element = answer.get(tag)
    items = element.get("Value") if isinstance(element, Mapping) else None
    return [
        (_first_value(item, "00081155"), _first_value(item, "00081197"))
        for item in (items if isinstance(items, list) else [])
        if isinstance(item, Mapping)
    ]


def parse_stow(answer: Any) -> tuple[list[str], list[tuple[str, str]]]:
    """A STOW-RS response (DICOM JSON, PS3.18 F.2): (stored SOP UIDs, [(failed UID, reason)])."""
    obj = _object(answer, "STOW-RS response")
    stored = [uid for uid, _ in _sop_uids(obj, "00081199")]
    return stored, _sop_uids(obj, "00081198")
