"""A folder of DICOM files as a :class:`~dicom_gateway.source.StudySource` (Orthanc's twin).

Every file under the folder (sub-folders included; hidden files and DICOMDIR skipped, as
:func:`~dicom_gateway.volume.read_series_dir` does) is one instance; files that are not DICOM
instances are skipped and listed in :attr:`FolderStudySource.unreadable`. Resources get the
Orthanc IDs Orthanc would give them (:func:`~dicom_gateway.source.orthanc_id`).

A folder has no change log, so the source keeps one in memory: each call to :meth:`changes`
rescans the folder and appends a ``StableStudy`` change for every study that is new or whose
files changed since the last scan (a folder's files are complete when they are there, so every
study is stable). Results are written by :meth:`store` as ``<sop uid>.dcm`` files into
``store_dir`` (default ``<folder>/preread-results``), which is part of the folder; only
files there can be deleted: the input files are never changed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from dicom_gateway.errors import (
    DicomFileError,
    GatewayError,
    ReadOnlySourceError,
    ResourceNotFoundError,
)
from dicom_gateway.source import (
    Change,
    ChangesPage,
    ChangeType,
    SeriesInfo,
    StudyInfo,
    SystemInfo,
    dataset_bytes,
    instance_sample,
    orthanc_id,
)
from dicom_gateway.volume import read_instance

__all__ = ["FolderStudySource"]


@dataclass(frozen=True)
class _Instance:
    path: Path
    stamp: tuple[int, int]  # (size, mtime_ns): a changed file is read again
    header: Dataset  # without pixel data

    def tag(self, keyword: str) -> str:
        value = self.header.get(keyword)
        if value is None:
            return ""
        if isinstance(value, MultiValue):
            return "\\".join(str(v) for v in value)
        return str(value)

    @property
    def patient_id(self) -> str:
        return self.tag("PatientID")

    @property
    def study_uid(self) -> str:
        return self.tag("StudyInstanceUID")

    @property
    def series_uid(self) -> str:
        return self.tag("SeriesInstanceUID")

    @property
    def study_id(self) -> str:
        return orthanc_id(self.patient_id, self.study_uid)

    @property
    def series_id(self) -> str:
        return orthanc_id(self.patient_id, self.study_uid, self.series_uid)


class FolderStudySource:
    """:class:`~dicom_gateway.source.StudySource` over ``root`` (see the module docstring)."""

    def __init__(self, root: Path, *, store_dir: Path | None = None) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise ResourceNotFoundError("folder", str(root), "not a directory")
        self.store_dir = Path(store_dir) if store_dir is not None else root / "preread-results"
        self._cache: dict[Path, _Instance] = {}
        self._unreadable: dict[Path, DicomFileError] = {}
        self._log: list[Change] = []
        self._seen: dict[str, frozenset[tuple[Path, tuple[int, int]]]] = {}

    def __repr__(self) -> str:
        return f"FolderStudySource({str(self.root)!r})"

    @property
    def unreadable(self) -> tuple[DicomFileError, ...]:
        """Files of the last scan that are not DICOM instances, with the reason."""
        return tuple(self._unreadable.values())

    # -- scanning -----------------------------------------------------------------------------

    def _files(self) -> list[Path]:
        roots = [self.root]
        if not self.store_dir.resolve().is_relative_to(self.root.resolve()):
            roots.append(self.store_dir)
        return [
            file
            for top in roots
            if top.is_dir()
            for file in sorted(top.rglob("*"))
            if file.is_file() and not file.name.startswith(".") and file.name.upper() != "DICOMDIR"
        ]

    def _scan(self) -> list[_Instance]:
        instances: list[_Instance] = []
        cache: dict[Path, _Instance] = {}
        unreadable: dict[Path, DicomFileError] = {}
        for path in self._files():
            stat = path.stat()
            stamp = (stat.st_size, stat.st_mtime_ns)
            known = self._cache.get(path)
            if known is None or known.stamp != stamp:
                try:
                    known = _Instance(path, stamp, read_instance(path, stop_before_pixels=True))
                except DicomFileError as exc:
                    unreadable[path] = exc
                    continue
            cache[path] = known
            instances.append(known)
        self._cache, self._unreadable = cache, unreadable
        return instances

    def _study_instances(self, orthanc_id_: str) -> list[_Instance]:
        found = [i for i in self._scan() if i.study_id == orthanc_id_]
        if not found:
            raise ResourceNotFoundError("study", orthanc_id_, f"not in folder {self.root}")
        return found

    def _series_instances(self, orthanc_id_: str) -> list[_Instance]:
        found = [i for i in self._scan() if i.series_id == orthanc_id_]
        if not found:
            raise ResourceNotFoundError("series", orthanc_id_, f"not in folder {self.root}")
        return found

    # -- StudySource --------------------------------------------------------------------------

    def system(self) -> SystemInfo:
        if not self.root.is_dir():
            raise ResourceNotFoundError("folder", str(self.root), "not a directory")
        return SystemInfo(name=f"folder {self.root}", version="", dicom_aet="", dicom_port=None)

    def changes(self, since: int = 0, limit: int = 100) -> ChangesPage:
        by_study: dict[str, set[tuple[Path, tuple[int, int]]]] = {}
        for instance in self._scan():
            by_study.setdefault(instance.study_id, set()).add((instance.path, instance.stamp))
        for study_id in sorted(by_study):
            files = frozenset(by_study[study_id])
            if self._seen.get(study_id) != files:
                self._seen[study_id] = files
                self._log.append(
                    Change(
                        seq=len(self._log) + 1,
                        change_type=ChangeType.STABLE_STUDY.value,
                        resource_type="Study",
                        orthanc_id=study_id,
                        date="",
                    )
                )
        page = tuple(c for c in self._log if c.seq > since)[: max(limit, 0)]
        last = page[-1].seq if page else max(since, 0)
        return ChangesPage(changes=page, last=last, done=last >= len(self._log))

    def studies(self) -> list[StudyInfo]:
        by_study: dict[str, list[_Instance]] = {}
        for instance in self._scan():
            by_study.setdefault(instance.study_id, []).append(instance)
        return [_study_info(study_id, by_study[study_id]) for study_id in sorted(by_study)]

    def study(self, orthanc_id: str) -> StudyInfo:
        return _study_info(orthanc_id, self._study_instances(orthanc_id))

    def find_study(self, study_uid: str) -> str | None:
        for instance in self._scan():
            if instance.study_uid == study_uid:
                return instance.study_id
        return None

    def series(self, orthanc_id: str) -> SeriesInfo:
        instances = self._series_instances(orthanc_id)
        first = instances[0]
        number = first.tag("SeriesNumber").strip()
        return SeriesInfo(
            orthanc_id=orthanc_id,
            study_orthanc_id=first.study_id,
            study_instance_uid=first.study_uid,
            series_instance_uid=first.series_uid,
            modality=first.tag("Modality"),
            series_description=first.tag("SeriesDescription"),
            series_number=int(number) if number.lstrip("-").isdigit() else None,
            body_part_examined=first.tag("BodyPartExamined"),
            instance_count=len(instances),
            sample=instance_sample(lambda keyword: _sample_tag(first.header, keyword)),
            remote_aet=None,
            is_stable=True,
        )

    def series_datasets(self, study_uid: str, series_uid: str) -> list[Dataset]:
        paths = [
            i.path for i in self._scan() if i.study_uid == study_uid and i.series_uid == series_uid
        ]
        if not paths:
            raise ResourceNotFoundError("series", series_uid, f"not in folder {self.root}")
        return [read_instance(path) for path in paths]

    def instance_file(
        self, patient_id: str, study_uid: str, series_uid: str, sop_instance_uid: str
    ) -> bytes:
        for i in self._scan():
            if (i.study_uid, i.series_uid) == (study_uid, series_uid) and (
                str(i.header.get("SOPInstanceUID", "")) == sop_instance_uid
            ):
                return i.path.read_bytes()
        raise ResourceNotFoundError("instance", sop_instance_uid, f"not in folder {self.root}")

    def store(self, instances: Sequence[Dataset | bytes]) -> list[str]:
        """Write each instance as ``store_dir/<SOPInstanceUID>.dcm`` (replacing a same-UID file)."""
        self.store_dir.mkdir(parents=True, exist_ok=True)
        stored = []
        for instance in instances:
            data = dataset_bytes(instance)
            uid = _sop_uid(instance, data)
            target = self.store_dir / f"{uid}.dcm"
            partial = target.with_name(f".{uid}.partial")
            partial.write_bytes(data)
            partial.replace(target)  # atomic: a scan never sees half a file
            stored.append(uid)
        return stored

    def delete_series(self, orthanc_id: str) -> None:
        """Delete a series whose files all lie in ``store_dir``; never touch input files."""
        instances = self._series_instances(orthanc_id)
        store = self.store_dir.resolve()
        foreign = [i.path for i in instances if not i.path.resolve().is_relative_to(store)]
        if foreign:
            raise ReadOnlySourceError(
                f"series {orthanc_id} has {len(foreign)} file(s) outside {self.store_dir} "
                f"(e.g. {foreign[0]}): a folder source deletes only what it stored"
            )
        for instance in instances:
            instance.path.unlink(missing_ok=True)
        self._scan()


def _sample_tag(header: Dataset, keyword: str) -> str | None:
    """A keyword's value as a DICOM string, also from the Shared Functional Groups; ``None``
    when absent or not decodable (the sample guides selection; the volume check is strict)."""
    try:
        value = header.get(keyword)
        if value is None and keyword in (
            "ImageOrientationPatient",
            "PixelSpacing",
            "SliceThickness",
        ):
            shared = header.get("SharedFunctionalGroupsSequence")
            group = (
                "PlaneOrientationSequence"
                if keyword == "ImageOrientationPatient"
                else "PixelMeasuresSequence"
            )
            if shared and shared[0].get(group):
                value = shared[0].get(group)[0].get(keyword)
    except Exception:  # untrusted nested items: any decoder failure
        return None
    if value is None:
        return None
    if isinstance(value, MultiValue):
        return "\\".join(str(v) for v in value)
    return str(value)


def _sop_uid(instance: Dataset | bytes, data: bytes) -> str:
    if isinstance(instance, Dataset):
        uid = str(instance.get("SOPInstanceUID", ""))
    else:
        try:
            header = pydicom.dcmread(BytesIO(data), stop_before_pixels=True)
        except Exception as exc:  # untrusted bytes: any parser failure
            raise GatewayError(f"cannot store bytes that are not a DICOM file: {exc}") from exc
        uid = str(header.get("SOPInstanceUID", ""))
    if not uid or any(c not in "0123456789." for c in uid):
        raise GatewayError(f"cannot store an instance whose SOPInstanceUID is {uid!r}")
    return uid


def _study_info(study_id: str, instances: list[_Instance]) -> StudyInfo:
    first = instances[0]
    series_ids = sorted({i.series_id for i in instances})
    return StudyInfo(
        orthanc_id=study_id,
        study_instance_uid=first.study_uid,
        patient_id=first.patient_id,
        patient_name=first.tag("PatientName"),
        patient_birth_date=first.tag("PatientBirthDate"),
        patient_sex=first.tag("PatientSex"),
        study_date=first.tag("StudyDate"),
        study_time=first.tag("StudyTime"),
        study_description=first.tag("StudyDescription"),
        accession_number=first.tag("AccessionNumber"),
        study_id=first.tag("StudyID"),
        series_ids=tuple(series_ids),
        is_stable=True,
        last_update="",
    )
