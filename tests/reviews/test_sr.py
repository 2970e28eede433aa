"""The review SR of a result without findings (the reader agrees: nothing there, nothing
added), encoded without Orthanc and checked with dciodvfy and dsrdump; and the refusals of an
SR that does not fit what it reviews."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pydicom
import pytest

from preread.domain import ModelRef, PreReadResult
from preread.reports import build_sr
from preread.reviews import Review, Reviewer, ReviewError, ReviewTarget
from preread.reviews.seg import build_review_seg
from preread.reviews.sources import ReviewSources
from preread.reviews.sr import build_review_sr
from preread.reviews.uids import review_uid
from tests.dicom_tools import dciodvfy, dsrdump
from tests.reviews.test_ohif_review_sr import _sources
from training.phantom_dicom import write_phantom_study
from training.phantoms import generate_phantom

MODEL = ModelRef("lung-nodule", "2.1.0", "PreRead Lung Nodule", "ab" * 32)


def test_a_review_of_a_result_without_findings(tmp_path: Path) -> None:
    files = write_phantom_study(generate_phantom(3, matrix=48, max_slices=8), tmp_path)
    images = [pydicom.dcmread(p) for p in sorted(files.ct_dir.glob("CT*.dcm"))]
    first = images[0]
    result = PreReadResult(
        study_instance_uid=str(first.StudyInstanceUID),
        series_instance_uid=str(first.SeriesInstanceUID),
        frame_of_reference_uid=str(first.FrameOfReferenceUID),
        model=MODEL,
        provider="CPUExecutionProvider",
        findings=(),
        created=datetime(2025, 1, 2, 3, 4, tzinfo=UTC),
    )
    ai_sr = build_sr(result, images, None, uid_seed="job-1")
    review = Review(
        id="review-1",
        target=ReviewTarget(
            tenant="hosp-a",
            study_instance_uid=result.study_instance_uid,
            job_id="job-1",
            model_id=MODEL.id,
            model_version=MODEL.version,
            ai_sr_sop_instance_uid=ai_sr.sop_instance_uid,
            findings=(),
        ),
        reviewer=Reviewer("u-1", "Dr Jane Roe", "hosp-a"),
        signed_at=datetime(2025, 1, 3, 10, 0, tzinfo=UTC),
        version=1,
        supersedes=None,
        assessments=(),
        added=(),
        sr_series_uid=str(review_uid("review-1", "sr-series")),
        sr_sop_instance_uid=str(review_uid("review-1", "sr-instance")),
        seg_series_uid=None,
        seg_sop_instance_uid=None,
    )
    sources = _sources(result, images, None, ai_sr, uid_seed="job-1")
    assert build_review_seg(review, sources) is None
    sr = build_review_sr(review, sources, None)
    again = build_review_sr(review, sources, None)
    assert sr.sop_instance_uid == again.sop_instance_uid  # a retry writes the same instance
    assert (
        sr.dataset.VerifyingObserverSequence[0].VerificationDateTime
        == again.dataset.VerifyingObserverSequence[0].VerificationDateTime
    )
    path = tmp_path / "review.dcm"
    sr.dataset.save_as(path, enforce_file_format=True)
    report = dciodvfy(path)
    assert not [line for line in report if "Error" in line], report
    dump = dsrdump(path, "+Pl")
    assert dump.returncode == 0, dump.stderr
    assert "Dr Jane Roe agrees with the AI: no lung nodule found and none added." in dump.stdout
    assert "VERIFIED" in dump.stdout and "COMPLETE" in dump.stdout

    other = ReviewSources(
        preread=sources.preread,
        images=[pydicom.dcmread(p) for p in sorted(files.ct_dir.glob("CT*.dcm"))],
        ai_seg=None,
        ai_sr=sources.ai_sr,
    )
    other.images[0].SeriesInstanceUID = "1.2.3.4"
    with pytest.raises(ReviewError, match=r"SeriesInstanceUID 1\.2\.3\.4"):
        build_review_sr(review, other, None)
