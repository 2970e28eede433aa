"""``preread read DIR``: the whole pre-read on a folder of DICOM files, no Orthanc, no database.

Every study in the folder gets the same treatment as in the service: series selection by the
card's rules, volume assembly, the model, SR + SEG (+ key images and KOS, as ``outputs`` asks).
Results are returned as the PreRead JSON and, with an output folder, written as
``<OUT>/<StudyInstanceUID>/{SR,SEG,SC-<finding>,KOS}.dcm``. A study that
is not applicable or cannot be read is reported with its reason, never dropped; one study's
bad files never end the others' reading, and files of the folder that are not readable DICOM
are named in the reason of every study that was not read.

The input is untrusted: a StudyInstanceUID becomes a folder name only when it is a DICOM UID
(PS3.5 9.1) and the folder lies inside ``OUT``; the chosen series is bounded by
:class:`~dicom_gateway.checks.SeriesLimits` before its pixel data are read.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Collection
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dicom_gateway.checks import SeriesLimits, is_valid_uid
from dicom_gateway.errors import GatewayError, SeriesError, printable
from dicom_gateway.folder import FolderStudySource
from dicom_gateway.selection import is_preread_series, select_series
from dicom_gateway.source import StudyInfo
from inference.errors import PreprocessError
from inference.predict import Predictor
from preread.errors import PrereadError
from preread.followup.screening import LungRadsPolicy
from preread.outputs import ALL_OUTPUTS, Output
from preread.pipeline import analyze, candidate, encode, model_ref
from preread.reports import ReportError, to_json

#: Unreadable files named in a reason (the rest are counted).
_NAMED_UNREADABLE = 3


class OutputPathError(PrereadError):
    """A study's output folder would not lie inside the output folder asked for."""


class UnreadableFolderError(PrereadError):
    """The folder holds files, but none of them is a readable DICOM instance."""


@dataclass(frozen=True)
class FolderResult:
    study_instance_uid: str
    status: str  # done | not_applicable | failed
    reason: str | None
    preread: dict[str, Any] | None
    files: tuple[Path, ...]
    #: files of the folder that are not readable DICOM (path: why); they may belong to the study
    skipped: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {
            "study_instance_uid": self.study_instance_uid,
            "status": self.status,
            "reason": self.reason,
            "preread": self.preread,
            "files": [str(f) for f in self.files],
            "skipped_files": list(self.skipped),
        }


def read_folder(
    folder: Path,
    predictor: Predictor,
    out: Path | None = None,
    *,
    limits: SeriesLimits | None = None,
    outputs: Collection[Output] = ALL_OUTPUTS,
    lung_rads: LungRadsPolicy | None = None,
) -> list[FolderResult]:
    """Pre-read every study under ``folder``; write SR/SEG (and the key images and KOS that
    ``outputs`` names) into ``out`` when given.

    ``limits`` bound the series read (default: :class:`SeriesLimits`' defaults; the CLI passes
    the settings' ``PREREAD_MAX_SERIES_*``, ``PREREAD_OUTPUTS`` as ``outputs`` and
    ``PREREAD_LUNG_RADS`` as ``lung_rads``: a folder has no sending AE title, so only ``all``
    and procedure codes select its studies).

    Raises:
        UnreadableFolderError: the folder holds files and none is a readable DICOM instance
            (the reason names them); a folder without files gives an empty list.
    """
    limits = limits or SeriesLimits()
    with warnings.catch_warnings():
        # pydicom's notes on invalid values of the input reach no terminal: a study that
        # cannot be read is refused with its reason, one line per study (the CLI's contract)
        warnings.filterwarnings("ignore", category=UserWarning, module="pydicom")
        return _read_studies(folder, predictor, out, limits, outputs, lung_rads or LungRadsPolicy())


def _read_studies(
    folder: Path,
    predictor: Predictor,
    out: Path | None,
    limits: SeriesLimits,
    outputs: Collection[Output],
    lung_rads: LungRadsPolicy,
) -> list[FolderResult]:
    source = FolderStudySource(folder, store_dir=out or folder / ".preread-unused")
    results: list[FolderResult] = []
    studies = source.studies()
    if not studies and source.unreadable:
        skipped = tuple(str(e) for e in source.unreadable)
        raise UnreadableFolderError(
            printable(f"{folder}: no DICOM study found: {_unreadable(skipped, of_study=False)}")
        )
    for study in studies:
        uid = study.study_instance_uid
        try:
            result = _read_study(source, study, predictor, out, limits, outputs, lung_rads)
        except (GatewayError, PreprocessError, ReportError, OutputPathError) as exc:  # this study
            result = FolderResult(uid, "failed", printable(str(exc)), None, ())
        if source.unreadable:
            skipped = tuple(str(e) for e in source.unreadable)
            result = replace(result, skipped=skipped)
            if result.status != "done":
                result = replace(result, reason=f"{result.reason}; {_unreadable(skipped)}")
        results.append(result)
    return results


def _read_study(
    source: FolderStudySource,
    study: StudyInfo,
    predictor: Predictor,
    out: Path | None,
    limits: SeriesLimits,
    outputs: Collection[Output],
    lung_rads: LungRadsPolicy,
) -> FolderResult:
    uid = study.study_instance_uid
    if not is_valid_uid(uid):
        return FolderResult(
            uid,
            "failed",
            f"StudyInstanceUID {printable(uid)!r} is not a DICOM UID (digits and dots, at most "
            "64 characters; PS3.5 9.1): the study is not read",
            None,
            (),
        )
    target = None if out is None else study_dir(out, uid)  # before any pixel is read
    rules = predictor.package.card.series_rules
    series = [source.series(sid) for sid in study.series_ids]
    own = [s for s in series if not is_preread_series(s.modality, s.series_description)]
    selection = select_series([candidate(s) for s in own], rules)
    if selection.chosen is None:
        reason = selection.reason
        if not any(s.modality == rules.modality for s in own):
            found = ", ".join(sorted({printable(s.modality) or "no Modality" for s in series}))
            reason = f"no {rules.modality} image series: found only {found}" + (
                "" if own else " (PreRead's own results, never read as input)"
            )
        return FolderResult(uid, "not_applicable", printable(reason), None, ())
    chosen = selection.chosen
    series_uid = chosen.series_instance_uid
    if chosen.n_images > limits.max_slices:  # before any pixel data is read
        raise SeriesError(
            series_uid,
            f"{chosen.n_images} images, more than the limit of {limits.max_slices} slices per "
            "series (PREREAD_MAX_SERIES_SLICES)",
        )
    datasets = source.series_datasets(uid, series_uid)
    ref = model_ref(predictor)
    # Same input and model: same UIDs (a re-run replaces its files rather than adding).
    seed = hashlib.sha256(f"{uid}|{series_uid}|{ref.id}|{ref.version}".encode()).hexdigest()
    screening = lung_rads.applies("", datasets[0] if datasets else None)
    analysis = analyze(
        datasets, predictor, created=datetime.now(UTC), limits=limits, lung_rads=screening
    )
    encoded = encode(analysis, datasets, uid_seed=seed, outputs=outputs)
    files: list[Path] = []
    if target is not None:
        target.mkdir(parents=True, exist_ok=True)
        named = [("SR.dcm", encoded.sr.dataset)]
        named += [("SEG.dcm", encoded.seg.dataset)] if encoded.seg else []
        if encoded.key_images is not None:
            images = encoded.key_images
            named += [
                (f"SC-{label}.dcm", ds)
                for label, ds in zip(images.finding_labels, images.datasets, strict=True)
            ]
        named += [("KOS.dcm", encoded.kos.dataset)] if encoded.kos else []
        for name, dataset in named:
            path = target / name
            tmp = path.with_suffix(".tmp")
            dataset.save_as(tmp, enforce_file_format=True)
            tmp.replace(path)  # never a half-written object
            files.append(path)
    doc = to_json(analysis.result, uid_seed=seed)
    doc["timings"] = analysis.timings
    return FolderResult(uid, "done", None, doc, tuple(files))


def study_dir(out: Path, study_uid: str) -> Path:
    """``out/<study_uid>``, refused unless it lies strictly inside ``out`` once resolved
    (symbolic links followed): a UID is never trusted to be a harmless file name."""
    root = Path(out).resolve()
    target = (root / study_uid).resolve()
    if target == root or not target.is_relative_to(root):
        raise OutputPathError(
            f"the output folder of study {printable(study_uid)!r} would be {target}, "
            f"outside {root}: nothing written"
        )
    return target


def _unreadable(errors: tuple[str, ...], *, of_study: bool = True) -> str:
    named = "; ".join(errors[:_NAMED_UNREADABLE])
    more = len(errors) - _NAMED_UNREADABLE
    return (
        f"{len(errors)} file(s) of the folder are not readable DICOM"
        + (" and may belong to this study" if of_study else "")
        + f": {named}"
        + (f"; and {more} more" if more > 0 else "")
    )
