"""Training pairs from Orthanc: every (CT series + DICOM SEG) annotation it holds.

Only studies under a valid ``model-training`` grant are taken (``admit``), and every instance is
de-identified on the way out (``deidentify``: DICOM PS3.15 Annex E, see
:mod:`dicom_gateway.deid`), so the cache holds no identifier; the grants used are returned for
the model card. ``preread train`` supplies both (:mod:`preread.training_access`).

A model team points ``preread train`` at an Orthanc (``data.source: orthanc``, with
``PREREAD_ORTHANC_URL`` and its credentials) where annotators stored SEG objects next to the
CT series they annotated. Each SEG and the series it references are copied into
``<cache>/<StudyInstanceUID>/`` and then go through exactly the folder path
(:func:`training.annotations.load_annotated_pairs`), with the same checks: a SEG that does not
reference a series of its study, or whose frames do not lie on that series, is refused with an
error naming it. PreRead's own AI SEGs are never taken as labels.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pydicom.dataset import Dataset

from dicom_gateway.selection import is_preread_series
from dicom_gateway.source import SeriesInfo, StudyInfo, StudySource
from training.errors import TrainingError


@dataclass(frozen=True)
class Admission:
    """Whether a study may go into a training set: the grant that allows it, or why not."""

    grant_id: str | None
    reason: str = ""


Admit = Callable[[StudyInfo, Sequence[SeriesInfo]], Admission]
Deidentify = Callable[[StudyInfo, list[Dataset]], list[Dataset]]
"""One study's instances (its SEGs and the CT series they reference) → the same, de-identified
consistently (references between them kept)."""


@dataclass(frozen=True)
class PullResult:
    """What a pull wrote: the case folders (named by de-identified StudyInstanceUIDs), the
    grants they came under, and the annotated studies left out with why (by Orthanc ID)."""

    cases: tuple[Path, ...]
    grants: tuple[str, ...]
    refused: tuple[tuple[str, str], ...]


def pull_annotated_studies(
    source: StudySource, out: Path, *, admit: Admit, deidentify: Deidentify
) -> PullResult:
    """Copy every admitted study's annotation SEGs and the CT series they reference into
    ``out``, de-identified.

    The folder is rebuilt from scratch each time, so a pull reflects Orthanc and the grants as
    they are now (a revoked grant's studies are gone from the next build).
    """
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    cases: list[Path] = []
    grants: set[str] = set()
    refused: list[tuple[str, str]] = []
    for study in source.studies():
        series = [source.series(sid) for sid in study.series_ids]
        segs = [
            s for s in series
            if s.modality == "SEG" and not is_preread_series(s.modality, s.series_description)
        ]  # fmt: skip
        if not segs:
            continue
        admission = admit(study, series)
        if admission.grant_id is None:
            refused.append((study.orthanc_id, admission.reason))
            continue
        instances = _annotated_instances(source, study, series, segs)
        clean = deidentify(study, instances)
        case = out / str(clean[0].StudyInstanceUID)
        for ds in clean:
            if str(ds.get("Modality", "")) == "SEG":
                _write(ds, case / f"seg-{ds.SOPInstanceUID}.dcm")
            else:
                _write(ds, case / "ct" / f"{ds.SOPInstanceUID}.dcm")
        cases.append(case)
        grants.add(admission.grant_id)
    return PullResult(tuple(cases), tuple(sorted(grants)), tuple(refused))


def _annotated_instances(
    source: StudySource, study: StudyInfo, series: list[SeriesInfo], segs: list[SeriesInfo]
) -> list[Dataset]:
    """The study's SEG instances and every instance of the series they reference."""
    instances: list[Dataset] = []
    wanted: set[str] = set()
    for seg in segs:
        for ds in source.series_datasets(study.study_instance_uid, seg.series_instance_uid):
            refs = ds.get("ReferencedSeriesSequence", [])
            if not refs:
                raise TrainingError(
                    f"Orthanc study {study.orthanc_id}: SEG {ds.SOPInstanceUID} names no "
                    "referenced series (ReferencedSeriesSequence)"
                )
            wanted.update(str(r.SeriesInstanceUID) for r in refs)
            instances.append(ds)
    present = {s.series_instance_uid for s in series}
    for uid in sorted(wanted):
        if uid not in present:
            raise TrainingError(
                f"Orthanc study {study.orthanc_id}: a SEG references series {uid}, "
                "which is not in the study"
            )
        instances.extend(source.series_datasets(study.study_instance_uid, uid))
    return instances


def _write(ds: object, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)  # type: ignore[attr-defined]
