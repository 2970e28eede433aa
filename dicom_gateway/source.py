"""Where studies come from: the :class:`StudySource` protocol and the typed records it returns.

Two implementations share this protocol (the shape of dicomweb-client's ``protocol.py`` /
``web.py`` / ``file.py``):

* :class:`dicom_gateway.client.OrthancClient` — an Orthanc server (REST API + DICOMweb plugin);
* :class:`dicom_gateway.folder.FolderStudySource` — a folder of DICOM files (``preread read DIR``,
  and tests of the pipeline without Orthanc).

Resources are named by Orthanc IDs: the SHA-1 of the DICOM identifiers, so a folder source and
an Orthanc holding the same files use the same IDs (:func:`orthanc_id`). Tag values keep their
DICOM string form (DA, TM, PN as in PS3.5 6.2) except numbers, which are parsed.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, runtime_checkable

from pydicom.dataset import Dataset

__all__ = [
    "Change",
    "ChangeType",
    "ChangesPage",
    "InstanceSample",
    "SeriesInfo",
    "StudyInfo",
    "StudySource",
    "SystemInfo",
    "dataset_bytes",
    "instance_sample",
    "orthanc_id",
]


class ChangeType(StrEnum):
    """The change types Orthanc 1.10 writes to its change log (``GET /changes``).

    :attr:`Change.change_type` stays a plain ``str`` so that a newer Orthanc's new types do not
    break parsing; compare it with these members (a ``StrEnum`` equals its value).
    """

    NEW_INSTANCE = "NewInstance"
    NEW_SERIES = "NewSeries"
    NEW_STUDY = "NewStudy"
    NEW_PATIENT = "NewPatient"
    STABLE_SERIES = "StableSeries"
    STABLE_STUDY = "StableStudy"
    STABLE_PATIENT = "StablePatient"
    DELETED = "Deleted"
    UPDATED_ATTACHMENT = "UpdatedAttachment"
    UPDATED_METADATA = "UpdatedMetadata"
    COMPLETED_SERIES = "CompletedSeries"
    NEW_CHILD_INSTANCE = "NewChildInstance"


@dataclass(frozen=True)
class SystemInfo:
    """Who answers: an Orthanc (``GET /system``) or a folder."""

    name: str
    version: str
    dicom_aet: str
    dicom_port: int | None


@dataclass(frozen=True)
class Change:
    """One entry of the change log: ``seq`` grows by one per change, never reused."""

    seq: int
    change_type: str
    resource_type: str
    orthanc_id: str
    date: str

    @property
    def is_stable_study(self) -> bool:
        """A study received no new instance for StableAge seconds: time to read it."""
        return self.change_type == ChangeType.STABLE_STUDY and self.resource_type == "Study"


@dataclass(frozen=True)
class ChangesPage:
    """One page of the change log after a cursor.

    ``last`` is the cursor to persist and pass as ``since`` next time; ``done`` is True when no
    more changes follow (else ask again at once).
    """

    changes: tuple[Change, ...]
    last: int
    done: bool


@dataclass(frozen=True)
class StudyInfo:
    """A study and its patient's main tags (DICOM string forms), with its series' IDs."""

    orthanc_id: str
    study_instance_uid: str
    patient_id: str
    patient_name: str
    patient_birth_date: str
    patient_sex: str
    study_date: str
    study_time: str
    study_description: str
    accession_number: str
    study_id: str
    series_ids: tuple[str, ...]
    is_stable: bool
    last_update: str


@dataclass(frozen=True)
class InstanceSample:
    """Image attributes of one instance of a series (PS3.3 C.7.6.2, C.7.6.3, C.8.2.1).

    For a multi-frame instance orientation and spacing come from its Shared Functional Groups
    (PS3.3 C.7.6.16) when the top level lacks them.
    """

    sop_class_uid: str
    image_type: tuple[str, ...]
    image_orientation: tuple[float, ...] | None
    slice_thickness: float | None
    pixel_spacing: tuple[float, ...] | None
    rows: int | None
    columns: int | None
    number_of_frames: int


@dataclass(frozen=True)
class SeriesInfo:
    """What series selection needs to know about a series, without its pixels.

    ``sample`` describes one instance (Orthanc's first). ``remote_aet`` is the calling AE title
    that sent that instance by C-STORE (Orthanc metadata ``RemoteAET``); ``None`` when it came
    another way (REST, STOW-RS, a folder).
    """

    orthanc_id: str
    study_orthanc_id: str
    study_instance_uid: str
    series_instance_uid: str
    modality: str
    series_description: str
    series_number: int | None
    body_part_examined: str
    instance_count: int
    sample: InstanceSample
    remote_aet: str | None
    is_stable: bool


def instance_sample(get: Callable[[str], str | None]) -> InstanceSample:
    """Parse an :class:`InstanceSample` from ``get(keyword)``: a DICOM string or ``None``.

    Multi-valued elements are backslash-separated (PS3.5 6.4). Unparseable numbers become
    ``None`` rather than an error: these fields guide selection, the volume check is strict.
    """

    def floats(keyword: str, count: int) -> tuple[float, ...] | None:
        raw = get(keyword)
        try:
            values = tuple(float(v) for v in (raw or "").split("\\"))
        except ValueError:
            return None
        return values if len(values) == count else None

    def integer(keyword: str) -> int | None:
        raw = (get(keyword) or "").strip()
        try:
            return int(float(raw)) if raw else None
        except (ValueError, OverflowError):  # "1e400" is a float, not an int
            return None

    thickness = floats("SliceThickness", 1)
    image_type = get("ImageType")
    return InstanceSample(
        sop_class_uid=get("SOPClassUID") or "",
        image_type=tuple(image_type.split("\\")) if image_type else (),
        image_orientation=floats("ImageOrientationPatient", 6),
        slice_thickness=thickness[0] if thickness else None,
        pixel_spacing=floats("PixelSpacing", 2),
        rows=integer("Rows"),
        columns=integer("Columns"),
        number_of_frames=integer("NumberOfFrames") or 1,
    )


def orthanc_id(*uids: str) -> str:
    """Orthanc's ID of a resource: SHA-1 of its identifiers joined by ``|``, in 5 groups of 8.

    ``orthanc_id(patient_id)`` names a patient, ``orthanc_id(patient_id, study_uid)`` a study,
    adding the SeriesInstanceUID a series and the SOPInstanceUID an instance (Orthanc's
    ``DicomInstanceHasher``), so a folder source gives the IDs Orthanc would.
    """
    digest = hashlib.sha1("|".join(uids).encode(), usedforsecurity=False).hexdigest()
    return "-".join(digest[i : i + 8] for i in range(0, 40, 8))


def dataset_bytes(instance: Dataset | bytes) -> bytes:
    """A PS3.10 file (preamble + File Meta Information) of ``instance``; bytes pass through."""
    if isinstance(instance, bytes):
        return instance
    buffer = io.BytesIO()
    instance.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


@runtime_checkable
class StudySource(Protocol):
    """Studies to read and a place to write results back: what the pipeline needs of a PACS.

    Unknown Orthanc IDs raise :class:`~dicom_gateway.errors.ResourceNotFoundError`; other
    failures raise a :class:`~dicom_gateway.errors.GatewayError`.
    """

    def system(self) -> SystemInfo:
        """Who answers; raises if the source cannot be reached (a ping)."""
        ...

    def changes(self, since: int = 0, limit: int = 100) -> ChangesPage:
        """Up to ``limit`` changes with ``seq > since``, oldest first."""
        ...

    def studies(self) -> list[StudyInfo]:
        """Every study, with ``is_stable`` (for a reconcile sweep that missed changes)."""
        ...

    def study(self, orthanc_id: str) -> StudyInfo:
        """One study by Orthanc ID."""
        ...

    def find_study(self, study_uid: str) -> str | None:
        """The Orthanc ID of the study with this StudyInstanceUID, or ``None``."""
        ...

    def series(self, orthanc_id: str) -> SeriesInfo:
        """One series by Orthanc ID."""
        ...

    def series_datasets(self, study_uid: str, series_uid: str) -> list[Dataset]:
        """Every instance of a series, pixels included, in no particular order."""
        ...

    def instance_file(
        self, patient_id: str, study_uid: str, series_uid: str, sop_instance_uid: str
    ) -> bytes:
        """One instance as its PS3.10 file (e.g. a stored SR or SEG, for download)."""
        ...

    def store(self, instances: Sequence[Dataset | bytes]) -> list[str]:
        """Store instances (datasets or PS3.10 files); return their SOPInstanceUIDs."""
        ...

    def delete_series(self, orthanc_id: str) -> None:
        """Delete a series (e.g. a superseded PreRead result)."""
        ...
