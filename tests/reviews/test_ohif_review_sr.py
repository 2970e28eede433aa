"""The review SR as OHIF reads it: the same check as ``tests/reports/test_ohif_sr.py`` (OHIF's
SR and SEG readers of ``@cornerstonejs/adapters`` under node, ``ohif_adapter_check.mjs``) on a
review of the phantom study of ``test_sr_seg`` (the typed result: Lung-RADS sizes).

Every accepted and modified AI finding and every added nodule must be drawn as one Length on
the source slice through its centre, as long as the review says (the reader's long axis when
modified, else the AI's axial one; an added nodule's axial long axis), labelled with its name
and the verdict; a rejected finding is not drawn. ``./run setup`` installs node and the
packages (``web/ohif``); without them these tests fail.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import Comprehensive3DSRStorage

from preread.domain import PreReadResult
from preread.reports import EncodedSeries
from preread.reports.axes import centre_slice
from preread.reports.json import to_model
from preread.reports.series import InstanceRef, source_frames
from preread.reports.sr import OHIF_LENGTH_TOOL
from preread.reviews import (
    Accepted,
    Assessment,
    Modified,
    Rejected,
    RejectReason,
    Review,
    Reviewer,
    ReviewTarget,
)
from preread.reviews.domain import AddedNodule, AiFinding, Verdict, VoxelMask
from preread.reviews.seg import build_review_seg
from preread.reviews.sources import ReviewSources
from preread.reviews.sr import build_review_sr
from preread.reviews.uids import review_uid
from tests.dicom_tools import dciodvfy, dsrdump
from tests.reports.test_ohif_sr import DROPPED_VOLUMETRIC, TOLERANCE_MM, _read_in_ohif
from tests.reports.test_sr_seg import Study

READER = Reviewer("u-1", "Dr Jane Roe", "hosp-a")


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Study:
    return Study(tmp_path_factory.mktemp("ohif-review"))


@pytest.fixture(scope="module")
def ct_files(study: Study) -> list[Path]:
    folder = study.root / "ct-files"
    folder.mkdir()
    paths = []
    for k, ds in enumerate(study.by_k):
        path = folder / f"{k:03d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def _review(
    result: PreReadResult,
    ai_sr: EncodedSeries,
    labels: npt.NDArray[np.int32],
    name: str,
    verdicts: dict[int, Verdict],
    add: bool,
) -> Review:
    """Review ``name`` of ``result`` (its SR ``ai_sr``): ``verdicts`` by finding number; with
    ``add``, nodule 2 of the phantom's label map ``labels`` added by the reader."""
    preread = to_model(result)
    findings = sorted(preread.findings, key=lambda f: f.label)
    added: tuple[AddedNodule, ...] = ()
    if add:  # the reader rejects AI nodule 2 and outlines it anew (its phantom voxels)
        added = (_added(labels, findings[1].center_lps_mm, str(review_uid(name, "added-1"))),)
    assessments = tuple(Assessment(f.tracking_uid, f.label, verdicts[f.label]) for f in findings)
    segmented = add or any(isinstance(a.verdict, Modified) for a in assessments)
    return Review(
        id=name,
        target=ReviewTarget(
            tenant=READER.tenant,
            study_instance_uid=preread.study_instance_uid,
            job_id="job-1",
            model_id=preread.model.id,
            model_version=preread.model.version,
            ai_sr_sop_instance_uid=ai_sr.sop_instance_uid,
            findings=tuple(AiFinding(f.label, f.tracking_uid) for f in findings),
        ),
        reviewer=READER,
        signed_at=datetime(2025, 1, 3, 10, 0, tzinfo=UTC),
        version=1,
        supersedes=None,
        assessments=assessments,
        added=added,
        sr_series_uid=str(review_uid(name, "sr-series")),
        sr_sop_instance_uid=str(review_uid(name, "sr-instance")),
        seg_series_uid=str(review_uid(name, "seg-series")) if segmented else None,
        seg_sop_instance_uid=str(review_uid(name, "seg-instance")) if segmented else None,
    )


def _added(
    labels: npt.NDArray[np.int32], centre: tuple[float, float, float], uid: str
) -> AddedNodule:
    voxels = labels == 2
    k, j, i = (np.flatnonzero(voxels.any(axis=axes)) for axes in ((1, 2), (0, 2), (0, 1)))
    box = voxels[k[0] : k[-1] + 1, j[0] : j[-1] + 1, i[0] : i[-1] + 1]
    return AddedNodule(
        click_lps_mm=centre,
        centre_lps_mm=centre,
        long_axis_mm=9.4,
        short_axis_mm=8.6,
        long_axis_3d_mm=10.2,
        volume_mm3=400.0,
        mean_hu=-520.0,
        nodule_type="ground-glass",
        mask=VoxelMask(voxels.shape, (int(k[0]), int(j[0]), int(i[0])), box),
        tracking_uid=uid,
    )


def _sources(
    result: PreReadResult,
    images: Sequence[Dataset],
    ai_seg: Dataset | None,
    ai_sr: EncodedSeries,
    *,
    uid_seed: str | None = None,
) -> ReviewSources:
    """What the service reads from the study for a review of ``result`` (encoded with
    ``uid_seed``): the series' images, the AI SEG (as read from a file: a plain dataset; None
    without findings) and the AI SR's reference."""
    return ReviewSources(
        preread=to_model(result, uid_seed=uid_seed),
        images=images,
        ai_seg=ai_seg,
        ai_sr=InstanceRef(
            result.study_instance_uid,
            ai_sr.series_instance_uid,
            ai_sr.sop_instance_uid,
            str(Comprehensive3DSRStorage),
        ),
    )


REVIEWS: dict[str, tuple[dict[int, Verdict], bool]] = {
    # modified (the reader's sizes), rejected (not drawn), added (the click's nodule)
    "corrected": ({1: Modified("part-solid", 15.0, 12.5), 2: Rejected(RejectReason.VESSEL)}, True),
    "accepted": ({1: Accepted(), 2: Accepted()}, False),
}


@pytest.mark.parametrize("name", list(REVIEWS))
def test_ohif_draws_the_reviewed_and_added_nodules_as_lengths(
    study: Study, ct_files: list[Path], name: str
) -> None:
    verdicts, add = REVIEWS[name]
    review = _review(study.typed, study.typed_sr, study.labels, name, verdicts, add)
    # the AI SEG as the service reads it from the study: a plain dataset
    ai_seg = pydicom.dcmread(study.write(study.typed_seg, f"{name}-ai-seg"))
    sources = _sources(study.typed, study.shuffled, ai_seg, study.typed_sr)
    seg = build_review_seg(review, sources)
    sr = build_review_sr(review, sources, seg)

    # a valid SR
    path = study.write(sr, f"{name}-review-sr")
    report = dciodvfy(path)
    assert not [line for line in report if "Error" in line], report
    dump = dsrdump(path, "+Pl")
    assert dump.returncode == 0, dump.stderr

    out = _read_in_ohif(study, ct_files, sr, seg or study.typed_seg, f"{name}-review")
    preread = sources.preread
    by_label = {f.label: f for f in preread.findings}
    # what must be drawn: (tracking UID, name, label start, length, centre)
    expected: list[tuple[str, str, str, float, tuple[float, float, float]]] = []
    groups: list[str] = []
    for a in review.assessments:
        f = by_label[a.finding_number]
        v = a.verdict
        groups.append(f.tracking_id)
        if isinstance(v, Rejected):
            continue
        groups.append(f.tracking_id)
        length = f.axial_long_axis_mm
        if isinstance(v, Modified) and v.long_axis_mm is not None:
            length = v.long_axis_mm
        assert length is not None
        verb = "corrected" if isinstance(v, Modified) else "accepted"
        label = f"{f.tracking_id}: AI finding {f.label} {verb} by {READER.name}"
        expected.append((a.tracking_uid, f.tracking_id, label, length, f.center_lps_mm))
    for n, added in enumerate(review.added, start=1):
        assert added.tracking_uid is not None
        groups += [f"Reader nodule {n}"] * 2
        label = f"Reader nodule {n}: added by {READER.name}"
        expected.append(
            (
                added.tracking_uid,
                f"Reader nodule {n}",
                label,
                added.long_axis_mm,
                added.centre_lps_mm,
            )
        )
    assert [(g["trackingIdentifier"], g["adapter"]) for g in out["groups"]] == [
        (f"{OHIF_LENGTH_TOOL}:{g}", "Length") for g in groups
    ]
    volumetric = len(review.assessments) + len(review.added)
    assert out["failures"] == [DROPPED_VOLUMETRIC] * volumetric, out["failures"]
    by_uid = {m["trackingUniqueIdentifier"]: m for m in out["measurements"]}
    assert len(by_uid) == len(out["measurements"]) == len(expected)
    for uid, _, label, length, centre in expected:
        m = by_uid[uid]
        assert m["toolType"] == "Length"
        assert m["label"].startswith(label), (m["label"], label)
        assert m["finding"]["meaning"] == "Nodule"
        image = study.by_k[centre_slice(_At(centre), source_frames(study.by_k))]
        assert m["sopInstanceUid"] == str(image.SOPInstanceUID)
        assert m["stats"]["unit"] == "mm"
        assert abs(m["stats"]["length"] - length) <= TOLERANCE_MM, (m["stats"], length)
        start, end = (np.asarray(p, dtype=np.float64) for p in m["points"])
        assert abs(float(np.linalg.norm(end - start)) - length) <= TOLERANCE_MM
    if seg is not None:
        assert len(out["segments"]) == len(review.segmented) + len(review.added)


@dataclasses.dataclass(frozen=True)
class _At:
    center_lps_mm: tuple[float, float, float]
    label: str = "nodule"
    short_axis_mm: float | None = None
