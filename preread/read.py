"""``preread read DIR``: the whole pre-read on a folder of DICOM files, no Orthanc, no database.

Every study in the folder gets the same treatment as in the service: series selection by the
card's rules, volume assembly, the model, SR + SEG. Results are returned as the PreRead JSON
and, with an output folder, written as ``<OUT>/<StudyInstanceUID>/{SR,SEG}.dcm``. A study that
is not applicable or cannot be read is reported with its reason, never dropped.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dicom_gateway.errors import SeriesError
from dicom_gateway.folder import FolderStudySource
from dicom_gateway.selection import is_preread_series, select_series
from inference.predict import Predictor
from preread.pipeline import analyze, candidate, encode, model_ref
from preread.reports import ReportError, to_json


@dataclass(frozen=True)
class FolderResult:
    study_instance_uid: str
    status: str  # done | not_applicable | failed
    reason: str | None
    preread: dict[str, Any] | None
    files: tuple[Path, ...]

    def as_json(self) -> dict[str, Any]:
        return {
            "study_instance_uid": self.study_instance_uid,
            "status": self.status,
            "reason": self.reason,
            "preread": self.preread,
            "files": [str(f) for f in self.files],
        }


def read_folder(folder: Path, predictor: Predictor, out: Path | None = None) -> list[FolderResult]:
    """Pre-read every study under ``folder``; write SR/SEG into ``out`` when given."""
    source = FolderStudySource(folder, store_dir=out or folder / ".preread-unused")
    rules = predictor.package.card.series_rules
    results: list[FolderResult] = []
    for study in source.studies():
        series = [source.series(sid) for sid in study.series_ids]
        selection = select_series(
            [
                candidate(s)
                for s in series
                if not is_preread_series(s.modality, s.series_description)
            ],
            rules,
        )
        uid = study.study_instance_uid
        if selection.chosen is None:
            results.append(FolderResult(uid, "not_applicable", selection.reason, None, ()))
            continue
        series_uid = selection.chosen.series_instance_uid
        datasets = source.series_datasets(uid, series_uid)
        ref = model_ref(predictor)
        # Same input and model: same UIDs (a re-run replaces its files rather than adding).
        seed = hashlib.sha256(f"{uid}|{series_uid}|{ref.id}|{ref.version}".encode()).hexdigest()
        try:
            analysis = analyze(datasets, predictor, created=datetime.now(UTC))
            encoded = encode(analysis, datasets, uid_seed=seed)
        except (SeriesError, ReportError) as exc:
            results.append(FolderResult(uid, "failed", str(exc), None, ()))
            continue
        files: list[Path] = []
        if out is not None:
            target = out / uid
            target.mkdir(parents=True, exist_ok=True)
            for name, enc in (("SR.dcm", encoded.sr), ("SEG.dcm", encoded.seg)):
                if enc is None:
                    continue
                path = target / name
                tmp = path.with_suffix(".tmp")
                enc.dataset.save_as(tmp, enforce_file_format=True)
                tmp.replace(path)  # never a half-written object
                files.append(path)
        doc = to_json(analysis.result, uid_seed=seed)
        doc["timings"] = analysis.timings
        results.append(FolderResult(uid, "done", None, doc, tuple(files)))
    return results
