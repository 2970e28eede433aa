"""A radiologist's review of a multi-frame CT, against the review of the same images as
single-frame images.

Source: the phantom of ``tests/reports/test_multiframe.py`` (:class:`Sources`: 96×96, 32
slices, two typed nodules) as single-frame images and as their Legacy Converted Enhanced CT
twin (one instance of the same series, frames shuffled, no dimension index), with the AI SEG
and SR encoded from each. The reviews of ``tests/reviews/test_ohif_review_sr.py`` are encoded
from both: "corrected" (AI nodule 1 modified, so the review SEG holds its AI voxels and the SR
draws the reader's axes; AI nodule 2 rejected and added anew by the reader, its phantom
voxels) and "accepted" (both drawn on the AI SEG's segments). Which slice ``k`` a reference
names comes from the phantom's grid and the positions written in the files
(:meth:`Sources.k_of_ref`), never from the code under test.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import highdicom as hd
import pydicom
import pytest
from pydicom.dataset import Dataset

from dicom_gateway.source import InstanceSample, SeriesInfo
from preread.reports import EncodedSeries
from preread.reviews import Modified, Review, ReviewError
from preread.reviews.seg import build_review_seg
from preread.reviews.service import _slices
from preread.reviews.sr import build_review_sr
from tests.dicom_tools import dciodvfy, dsrdump
from tests.reports import test_multiframe
from tests.reports.test_multiframe import Sources, _ref, _same_content, _seg_frames
from tests.reviews.test_ohif_review_sr import REVIEWS, _review, _sources


@dataclass(frozen=True)
class Encoded:
    """The AI SEG a review is encoded with (as read from a file), the review SEG (None:
    nothing modified or added) and SR."""

    ai_seg: Dataset
    seg: EncodedSeries | None
    sr: EncodedSeries


@dataclass(frozen=True)
class Reviewed:
    """One review of the phantom, and its encodings from both kinds of source image."""

    review: Review
    single: Encoded
    multi: Encoded


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> Sources:
    return Sources(tmp_path_factory.mktemp("review-multiframe"))


def _encode(
    sources: Sources, review: Review, images: list[Dataset], ai: test_multiframe.Encoded
) -> Encoded:
    # the AI SEG as the service reads it from the study: a plain dataset
    name = f"{review.id}-ai-seg-{len(images)}"
    ai_seg = pydicom.dcmread(sources.write(ai.seg.dataset, name))
    review_sources = _sources(sources.result, images, ai_seg, ai.sr)
    seg = build_review_seg(review, review_sources)
    return Encoded(ai_seg, seg, build_review_sr(review, review_sources, seg))


@pytest.fixture(scope="module")
def reviewed(sources: Sources) -> dict[str, Reviewed]:
    out = {}
    for name, (verdicts, add) in REVIEWS.items():
        review = _review(
            sources.result, sources.from_single.sr, sources.labels, name, verdicts, add
        )
        single = _encode(sources, review, sources.single, sources.from_single)
        multi = _encode(sources, review, [sources.multi], sources.from_multi)
        out[name] = Reviewed(review, single, multi)
    return out


def _centre_ks(sources: Sources, review: Review) -> dict[str, int]:
    """Tracking UID → the slice through the centre of each nodule the review draws: accepted
    and modified AI findings, and the added nodule (the reader outlined AI nodule 2 anew, at
    its centre: ``test_ohif_review_sr._review``)."""
    by_label = {f.label: f for f in sources.result.findings}
    out = {
        a.tracking_uid: sources.centre_k(by_label[a.finding_number])
        for a in review.assessments
        if a.kind != "rejected"
    }
    for added in review.added:
        assert added.tracking_uid is not None
        assert added.centre_lps_mm == by_label[2].center_lps_mm
        out[added.tracking_uid] = sources.centre_k(by_label[2])
    return out


# --- SR -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(REVIEWS))
def test_review_sr_says_what_the_single_frame_review_says_on_the_same_slices(
    sources: Sources, reviewed: dict[str, Reviewed], name: str
) -> None:
    encoded = reviewed[name]
    read = pydicom.dcmread(sources.write(encoded.multi.sr.dataset, f"{name}-review-sr"))
    single = encoded.single.sr.dataset
    references = _same_content(sources, single.ContentSequence, read.ContentSequence)
    # the Image Library: the centre slice of each AI finding (the rejected one too) and of the
    # added nodule; then a long and a short axis polyline per drawn nodule
    library = {sources.centre_k(f) for f in sources.result.findings}
    drawn = _centre_ks(sources, encoded.review)
    assert references == len(library) + 2 * len(drawn)
    evidence = [
        str(i.ReferencedSOPInstanceUID)
        for s in read.CurrentRequestedProcedureEvidenceSequence
        for r in s.ReferencedSeriesSequence
        for i in r.ReferencedSOPSequence
    ]
    segs = [sources.from_multi.seg.sop_instance_uid]
    if encoded.multi.seg is not None:
        segs.append(encoded.multi.seg.sop_instance_uid)
    assert sorted(evidence) == sorted([str(sources.multi.SOPInstanceUID), *segs])


@pytest.mark.parametrize("name", list(REVIEWS))
def test_review_sr_draws_each_nodule_on_the_frame_through_its_centre(
    sources: Sources, reviewed: dict[str, Reviewed], name: str
) -> None:
    encoded = reviewed[name]
    path = sources.write(encoded.multi.sr.dataset, f"{name}-review-drawn")
    report = hd.sr.srread(path).content
    assert isinstance(report, hd.sr.MeasurementReport)
    expected = _centre_ks(sources, encoded.review)
    drawn = report.get_image_measurement_groups()
    assert sorted(str(g.tracking_uid) for g in drawn) == sorted(expected)
    for group in drawn:
        measurements = group.get_measurements()
        assert len(measurements) == 2  # the long and the short axis
        for measurement in measurements:
            (coordinates,) = measurement.referenced_coordinates
            (source,) = coordinates.ContentSequence
            ref = _ref(source.ReferencedSOPSequence[0])
            assert ref[0] == sources.multi.SOPInstanceUID and ref[1] is not None
            assert sources.k_of_ref(ref) == expected[str(group.tracking_uid)]


# --- SEG ------------------------------------------------------------------------------------


def test_review_seg_frames_reference_their_source_frames_and_equal_the_single_frame_seg(
    sources: Sources, reviewed: dict[str, Reviewed]
) -> None:
    encoded = reviewed["corrected"]
    assert encoded.single.seg is not None and encoded.multi.seg is not None
    on_multi = _seg_frames(sources, encoded.multi.seg)
    on_single = _seg_frames(sources, encoded.single.seg)
    assert on_multi.keys() == on_single.keys()
    # segment 1: AI nodule 1's voxels (modified); segment 2: the added nodule, the phantom's
    # nodule 2 (test_ohif_review_sr._added)
    (modified,) = [a for a in encoded.review.assessments if isinstance(a.verdict, Modified)]
    phantom_label = {1: modified.finding_number, 2: 2}
    for (k, number), mask in on_multi.items():
        assert (mask == on_single[(k, number)]).all(), (k, number)
        assert (mask == (sources.labels[k] == phantom_label[number])).all(), (k, number)
    covered = {
        (int(k), number)
        for number, label in phantom_label.items()
        for k in (sources.labels == label).any(axis=(1, 2)).nonzero()[0]
    }
    assert set(on_multi) == covered
    multi = encoded.multi.seg.dataset
    refs = [
        _ref(s)
        for item in multi.PerFrameFunctionalGroupsSequence
        for s in item.DerivationImageSequence[0].SourceImageSequence
    ]
    assert len(refs) == len(on_multi)
    assert {uid for uid, _ in refs} == {str(sources.multi.SOPInstanceUID)}
    assert all(frame is not None for _, frame in refs)
    (series,) = multi.ReferencedSeriesSequence
    assert [str(i.ReferencedSOPInstanceUID) for i in series.ReferencedInstanceSequence] == [
        str(sources.multi.SOPInstanceUID)
    ]
    single = encoded.single.seg.dataset
    for a, b in zip(multi.SegmentSequence, single.SegmentSequence, strict=True):
        keywords = ("SegmentLabel", "SegmentDescription", "TrackingUID", "TrackingID")
        assert [a.get(k) for k in keywords] == [b.get(k) for k in keywords]
        assert a.SegmentAlgorithmType == b.SegmentAlgorithmType == "SEMIAUTOMATIC"


# --- validators -----------------------------------------------------------------------------


def _dciodvfy(sources: Sources, ds: Dataset, name: str) -> list[str]:
    """dciodvfy's errors and warnings on ``ds``."""
    lines = dciodvfy(sources.write(ds, name))
    return [line for line in lines if "Error" in line or "Warning" in line]


@pytest.mark.parametrize("which", ["corrected-sr", "corrected-seg", "accepted-sr"])
def test_dciodvfy_finds_no_error_and_no_warning_the_single_frame_review_lacks(
    sources: Sources, reviewed: dict[str, Reviewed], which: str
) -> None:
    name, kind = which.rsplit("-", 1)
    encodings = (reviewed[name].multi, reviewed[name].single)
    multi, single = (e.seg if kind == "seg" else e.sr for e in encodings)
    assert multi is not None and single is not None
    found = _dciodvfy(sources, multi.dataset, f"check-{which}")
    assert not [line for line in found if "Error" in line], found
    # the review's private codes (99PRERD) are warned of, whatever the source images
    assert set(found) <= set(_dciodvfy(sources, single.dataset, f"check-{which}-single")), found


@pytest.mark.parametrize("name", list(REVIEWS))
def test_dsrdump_reads_the_multi_frame_review_sr(
    sources: Sources, reviewed: dict[str, Reviewed], name: str
) -> None:
    path = sources.write(reviewed[name].multi.sr.dataset, f"dump-{name}")
    run = dsrdump(path, "+Pl")
    assert run.returncode == 0, run.stderr
    assert not run.stderr.strip(), run.stderr
    assert "VERIFIED" in run.stdout and "COMPLETE" in run.stdout
    assert "(CTl image,," in run.stdout  # an image reference with its frame


# --- refusals -------------------------------------------------------------------------------


def test_a_series_mixing_multi_frame_and_single_frame_images_gets_no_review_seg(
    sources: Sources, reviewed: dict[str, Reviewed]
) -> None:
    encoded = reviewed["corrected"]
    half = len(sources.by_k) // 2
    front = sources.convert(sources.by_k[:half], "front")
    back = sources.convert(sources.by_k[half:], "back")
    for images, why in (
        ([front, *sources.by_k[half:]], r"1 multi-frame image\(s\) and 16 single-frame"),
        ([front, back], r"2 multi-frame image\(s\) and 0 single-frame"),
    ):
        mixed = _sources(sources.result, images, encoded.multi.ai_seg, sources.from_multi.sr)
        with pytest.raises(ReviewError, match=f"no review SEG: the series holds {why}"):
            build_review_seg(encoded.review, mixed)


def test_headers_that_place_no_frame_are_refused_with_the_frame_named(
    sources: Sources, reviewed: dict[str, Reviewed]
) -> None:
    broken = copy.deepcopy(sources.multi)
    del broken.PerFrameFunctionalGroupsSequence[4].PlanePositionSequence
    encoded = reviewed["accepted"]
    bad = _sources(sources.result, [broken], encoded.multi.ai_seg, sources.from_multi.sr)
    with pytest.raises(ReviewError, match=r"frame 5 has no ImagePositionPatient"):
        build_review_sr(encoded.review, bad, None)


REFUSED_AI_SEG = {  # the modified finding's voxels are read from it, accepted ones drawn on it
    "corrected": r"the AI SEG's segment of tracking UID [\d.]+ has no voxel on the series'",
    "accepted": r"cannot draw AI nodule 1: segment 1 of the SEG [\d.]+ lies on none of the 32",
}


@pytest.mark.parametrize("name", list(REFUSED_AI_SEG))
def test_an_ai_seg_of_other_images_is_refused(
    sources: Sources, reviewed: dict[str, Reviewed], name: str
) -> None:
    encoded = reviewed[name]
    ai_seg = encoded.single.ai_seg  # on the single-frame images, not on the frames
    other = _sources(sources.result, [sources.multi], ai_seg, sources.from_multi.sr)
    with pytest.raises(ReviewError, match=REFUSED_AI_SEG[name]):
        build_review_sr(encoded.review, other, build_review_seg(encoded.review, other))


def _series(instances: int, frames: int) -> SeriesInfo:
    sample = InstanceSample("1.2.840.10008.5.1.4.1.1.2.2", (), None, None, None, 96, 96, frames)
    return SeriesInfo("o", "s", "1.2", "1.2.3", "CT", "", 1, "", instances, sample, None, True)


def test_an_added_nodule_is_checked_against_the_frames_of_a_multi_frame_series() -> None:
    assert _slices(_series(32, 1)) == 32
    assert _slices(_series(1, 32)) == 32
    with pytest.raises(ReviewError, match="holds 2 instances, multi-frame ones among them"):
        _slices(_series(2, 16))
