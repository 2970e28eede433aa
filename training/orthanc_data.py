"""Training pairs from Orthanc: every (CT series + DICOM SEG) annotation it holds.

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
from pathlib import Path

from dicom_gateway.selection import is_preread_series
from dicom_gateway.source import StudySource
from training.errors import TrainingError


def pull_annotated_studies(source: StudySource, out: Path) -> list[Path]:
    """Copy every study's annotation SEGs and the CT series they reference into ``out``.

    Returns the case folders written (one per study with at least one SEG). The folder is
    rebuilt from scratch each time, so a pull reflects Orthanc as it is now.
    """
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    cases: list[Path] = []
    for study in source.studies():
        series = [source.series(sid) for sid in study.series_ids]
        segs = [
            s for s in series
            if s.modality == "SEG" and not is_preread_series(s.modality, s.series_description)
        ]  # fmt: skip
        if not segs:
            continue
        case = out / study.study_instance_uid
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
                _write(ds, case / f"seg-{ds.SOPInstanceUID}.dcm")
        present = {s.series_instance_uid for s in series}
        for uid in sorted(wanted):
            if uid not in present:
                raise TrainingError(
                    f"Orthanc study {study.orthanc_id}: a SEG references series {uid}, "
                    "which is not in the study"
                )
            for ds in source.series_datasets(study.study_instance_uid, uid):
                _write(ds, case / "ct" / f"{ds.SOPInstanceUID}.dcm")
        cases.append(case)
    return cases


def _write(ds: object, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)  # type: ignore[attr-defined]
