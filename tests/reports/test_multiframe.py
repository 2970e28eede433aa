"""SR, SEG, key images and KOS of a multi-frame CT source, against the single-frame encoding.

Source: the phantom CT of ``test_sr_seg`` (training.phantom_dicom, 96×96, 32 slices, two
nodules), and the same images converted by highdicom into one Legacy Converted Enhanced CT
instance of the same series (PS3.3 A.70), its frames in shuffled order (no dimension index), so
that frame ``n`` is not slice ``n - 1``. The same :class:`PreReadResult` and label map are
encoded from both. Which slice ``k`` an image or a frame is comes from the phantom's own grid
(its affine) and the positions written in the files, never from the code under test.
"""

from __future__ import annotations

import copy
import random
from dataclasses import replace
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
import numpy.typing as npt
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import EnhancedCTImageStorage, generate_uid

from dicom_gateway.volume import assemble_volume
from preread.domain import Finding, Geometry, PreReadResult
from preread.reports import (
    EncodedSeries,
    KeyImageSeries,
    ReportError,
    build_key_images,
    build_kos,
    build_seg,
    build_sr,
)
from preread.reports.series import order_sources
from tests.dicom_tools import dciodvfy, dsrdump
from tests.reports.test_sr_seg import CREATED, LUNG_RADS, MODEL, NODULES
from tests.reports.truth import truth_findings
from training.phantom_dicom import write_phantom_study
from training.phantoms import generate_phantom

Ref = tuple[str, int | None]  # (SOPInstanceUID, ReferencedFrameNumber or None)


class Encoded:
    """The SEG, SR, key images and KOS of one result from one set of source images."""

    def __init__(
        self,
        result: PreReadResult,
        sources: list[Dataset],
        labels: npt.NDArray[np.int32],
        hu: npt.NDArray[np.float32],
    ) -> None:
        seg = build_seg(result, sources, labels)
        assert seg is not None
        self.seg: EncodedSeries = seg
        self.sr = build_sr(result, sources, seg)
        self.empty_sr = build_sr(replace(result, findings=()), sources, None)
        images = build_key_images(result, sources, labels, hu)
        kos = build_kos(result, sources, labels)
        assert images is not None and kos is not None
        self.images: KeyImageSeries = images
        self.kos: EncodedSeries = kos


class Sources:
    """The phantom as single-frame images and as one multi-frame image, and both encodings."""

    def __init__(self, root: Path) -> None:
        phantom = generate_phantom(4, matrix=96, max_slices=32, nodules=NODULES)
        self.grid: Geometry = phantom.volume.geometry
        files = write_phantom_study(phantom, root / "ct")
        self.single: list[Dataset] = [
            pydicom.dcmread(p) for p in sorted(files.ct_dir.glob("CT*.dcm"))
        ]
        random.Random(2).shuffle(self.single)
        first = self.single[0]
        self.multi = self.convert(self.single, "multi", include_dimension_index=False)
        self.by_k = sorted(self.single, key=lambda ds: self.k_of(ds.ImagePositionPatient))
        single_volume = assemble_volume(copy.deepcopy(self.single))
        volume = assemble_volume([self.multi], release_pixel_data=True)  # as the pipeline does
        np.testing.assert_array_equal(volume.array, single_volume.array)
        self.labels: npt.NDArray[np.int32] = phantom.label.astype(np.int32)
        self.result = PreReadResult(
            study_instance_uid=str(first.StudyInstanceUID),
            series_instance_uid=str(first.SeriesInstanceUID),
            frame_of_reference_uid=str(first.FrameOfReferenceUID),
            model=MODEL,
            provider="CPUExecutionProvider",
            findings=truth_findings(phantom.nodules, self.labels, extra=LUNG_RADS),
            created=CREATED,
        )
        assert len(self.result.findings) == 2
        self.from_single = Encoded(self.result, self.single, self.labels, single_volume.array)
        self.from_multi = Encoded(self.result, [self.multi], self.labels, volume.array)
        self.root = root

    def convert(self, datasets: list[Dataset], name: str, **options: Any) -> Dataset:
        """``datasets`` as one Legacy Converted Enhanced CT instance of their series."""
        first = datasets[0]
        return hd.legacy.LegacyConvertedEnhancedCTImage(
            datasets,
            series_instance_uid=str(first.SeriesInstanceUID),
            series_number=int(first.SeriesNumber),
            sop_instance_uid=generate_uid(entropy_srcs=[name, str(first.SeriesInstanceUID)]),
            instance_number=1,
            **options,
        )

    def k_of(self, position: Any) -> int:
        """The phantom grid's slice through ``position`` (ImagePositionPatient)."""
        offset = np.asarray([float(v) for v in position]) - np.asarray(self.grid.origin)
        along = float(offset @ np.asarray(self.grid.slice_direction)) / self.grid.spacing[0]
        k = round(along)
        assert abs(along - k) < 1e-3 and 0 <= k < self.grid.shape[0], position
        in_plane = offset - offset @ np.asarray(self.grid.slice_direction) * np.asarray(
            self.grid.slice_direction
        )
        assert np.allclose(in_plane, 0.0, atol=1e-3), position  # the slice's first voxel
        return k

    def frame_k(self, ds: Dataset, frame: int) -> int:
        """Slice ``k`` of frame ``frame`` (1-based) of a multi-frame image, by its position."""
        item = ds.PerFrameFunctionalGroupsSequence[frame - 1]
        return self.k_of(item.PlanePositionSequence[0].ImagePositionPatient)

    def k_of_ref(self, ref: Ref) -> int:
        """Slice ``k`` of a reference to a single-frame image or to a frame of ``multi``."""
        uid, frame = ref
        if frame is None:
            (image,) = [ds for ds in self.single if ds.SOPInstanceUID == uid]
            return self.k_of(image.ImagePositionPatient)
        assert uid == self.multi.SOPInstanceUID
        return self.frame_k(self.multi, frame)

    def centre_k(self, finding: Finding) -> int:
        """The slice nearest the finding's centre along the slice normal."""
        normal = np.asarray(self.grid.slice_direction)
        along = (np.asarray(finding.center_lps_mm) - np.asarray(self.grid.origin)) @ normal
        return int(np.clip(round(along / self.grid.spacing[0]), 0, self.grid.shape[0] - 1))

    def write(self, ds: Dataset, name: str) -> Path:
        path = self.root / f"{name}.dcm"
        ds.save_as(path, enforce_file_format=True)
        return path


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> Sources:
    return Sources(tmp_path_factory.mktemp("multiframe"))


def _ref(item: Dataset) -> Ref:
    """The (instance, frame) an image reference item names; at most one frame."""
    frames = item.get("ReferencedFrameNumber")
    if frames is None:
        return str(item.ReferencedSOPInstanceUID), None
    values = [
        int(v) for v in (frames if isinstance(frames, pydicom.multival.MultiValue) else [frames])
    ]
    assert len(values) == 1, values
    return str(item.ReferencedSOPInstanceUID), values[0]


# --- the order of the slices -----------------------------------------------------------------


def _per_frame_orientation(ds: Dataset) -> Dataset:
    """``ds`` with its orientation in every frame's functional groups instead of the shared
    ones, labelled Enhanced CT (which may carry it either way, PS3.3 C.7.6.16.2.4)."""
    out = copy.deepcopy(ds)
    out.SOPClassUID = out.file_meta.MediaStorageSOPClassUID = EnhancedCTImageStorage
    shared = out.SharedFunctionalGroupsSequence[0]
    orientation = shared.PlaneOrientationSequence
    del shared.PlaneOrientationSequence
    for item in out.PerFrameFunctionalGroupsSequence:
        item.PlaneOrientationSequence = copy.deepcopy(orientation)
    return out


@pytest.mark.parametrize("variant", ["shuffled frames", "sorted frames", "per-frame orientation"])
def test_slice_k_is_the_frame_at_position_k(sources: Sources, variant: str) -> None:
    image = {
        "shuffled frames": lambda: sources.multi,
        "sorted frames": lambda: sources.convert(sources.by_k, "sorted"),
        "per-frame orientation": lambda: _per_frame_orientation(sources.multi),
    }[variant]()
    frames = order_sources(sources.result, [image])
    assert len(frames) == int(image.NumberOfFrames) == sources.grid.shape[0]
    assert sorted(f.frame_number or 0 for f in frames) == list(range(1, len(frames) + 1))
    for k, frame in enumerate(frames):
        assert frame.dataset is image
        assert frame.frame_number is not None
        assert sources.frame_k(image, frame.frame_number) == k
        expected = sources.grid.index_to_lps([k, 0, 0])
        assert np.allclose(frame.position, np.ravel(expected), atol=1e-3)
    if variant == "shuffled frames":  # the test means something: frames are not in k order
        assert [f.frame_number for f in frames] != list(range(1, len(frames) + 1))
    singles = order_sources(sources.result, sources.single)
    assert [s.frame_number for s in singles] == [None] * len(singles)
    assert [s.dataset for s in singles] == sources.by_k


# --- validators ------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["seg", "sr", "empty_sr", "sc-1", "sc-2", "kos"])
def test_dciodvfy_reports_no_error_and_no_warning(sources: Sources, which: str) -> None:
    encoded = sources.from_multi
    ds = {
        "seg": encoded.seg.dataset,
        "sr": encoded.sr.dataset,
        "empty_sr": encoded.empty_sr.dataset,
        "sc-1": encoded.images.datasets[0],
        "sc-2": encoded.images.datasets[1],
        "kos": encoded.kos.dataset,
    }[which]
    lines = dciodvfy(sources.write(ds, which))
    assert not [line for line in lines if "Error" in line or "Warning" in line], lines


def test_dsrdump_reads_the_sr_and_its_frame_references(sources: Sources) -> None:
    for encoded, name in ((sources.from_multi.sr, "sr"), (sources.from_multi.empty_sr, "empty")):
        run = dsrdump(sources.write(encoded.dataset, f"dump-{name}"))
        assert run.returncode == 0, run.stderr
        assert not run.stderr.strip(), run.stderr
        assert "Imaging Measurement Report" in run.stdout
        # an image reference with a frame: (class,instance,frame)
        assert "(CTl image,," in run.stdout


# --- SEG ------------------------------------------------------------------------------------


def _seg_frames(sources: Sources, seg: EncodedSeries) -> dict[tuple[int, int], npt.NDArray[Any]]:
    """(slice k, segment number) → the SEG frame's mask, k found through the source reference;
    each frame's Plane Position must be slice k's."""
    ds = hd.seg.segread(sources.write(seg.dataset, "seg-read"))
    pixels = ds.pixel_array.reshape(int(ds.NumberOfFrames), int(ds.Rows), int(ds.Columns))
    frames = {}
    for mask, item in zip(pixels, ds.PerFrameFunctionalGroupsSequence, strict=True):
        (derivation,) = item.DerivationImageSequence
        (source,) = derivation.SourceImageSequence
        k = sources.k_of_ref(_ref(source))
        assert sources.k_of(item.PlanePositionSequence[0].ImagePositionPatient) == k
        number = int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        frames[(k, number)] = mask.astype(bool)
    return frames


def test_seg_frames_reference_their_source_frames_and_equal_the_single_frame_seg(
    sources: Sources,
) -> None:
    multi, single = sources.from_multi.seg.dataset, sources.from_single.seg.dataset
    on_multi = _seg_frames(sources, sources.from_multi.seg)
    on_single = _seg_frames(sources, sources.from_single.seg)
    assert on_multi.keys() == on_single.keys()
    for key, mask in on_multi.items():
        assert np.array_equal(mask, on_single[key]), key
        k, number = key
        assert np.array_equal(mask, sources.labels[k] == number)  # labels are 1, 2 here
    # every slice a nodule covers has its frame, and only those
    covered = {
        (int(k), f.label)
        for f in sources.result.findings
        for k in np.flatnonzero((sources.labels == f.label).any(axis=(1, 2)))
    }
    assert set(on_multi) == covered
    refs = [
        (str(s.ReferencedSOPInstanceUID), int(s.ReferencedFrameNumber))
        for item in multi.PerFrameFunctionalGroupsSequence
        for s in item.DerivationImageSequence[0].SourceImageSequence
    ]
    assert {uid for uid, _ in refs} == {str(sources.multi.SOPInstanceUID)}
    (series,) = multi.ReferencedSeriesSequence
    assert [str(i.ReferencedSOPInstanceUID) for i in series.ReferencedInstanceSequence] == [
        str(sources.multi.SOPInstanceUID)
    ]
    for a, b in zip(multi.SegmentSequence, single.SegmentSequence, strict=True):
        assert (a.SegmentLabel, a.TrackingUID, a.TrackingID) == (
            b.SegmentLabel,
            b.TrackingUID,
            b.TrackingID,
        )


def test_a_series_mixing_multi_frame_and_single_frame_images_gets_no_seg(
    sources: Sources,
) -> None:
    half = len(sources.by_k) // 2
    front = sources.convert(sources.by_k[:half], "front")
    back = sources.convert(sources.by_k[half:], "back")
    with pytest.raises(ReportError, match=r"1 multi-frame image\(s\) and 16 single-frame"):
        build_seg(sources.result, [front, *sources.by_k[half:]], sources.labels)
    with pytest.raises(ReportError, match=r"2 multi-frame image\(s\) and 0 single-frame"):
        build_seg(sources.result, [front, back], sources.labels)
    # the key objects need no SEG: a mixed series gets them, each slice referenced as it is
    kos = build_kos(sources.result, [front, *sources.by_k[half:]], sources.labels)
    expected = {sources.centre_k(f) for f in sources.result.findings}
    assert kos is not None
    referenced = set()
    for item in kos.dataset.ContentSequence:
        if item.ValueType != "IMAGE":
            continue
        reference = item.ReferencedSOPSequence[0]
        uid = str(reference.ReferencedSOPInstanceUID)
        if uid == front.SOPInstanceUID:
            referenced |= {sources.frame_k(front, int(n)) for n in reference.ReferencedFrameNumber}
        else:
            referenced.add(sources.k_of_ref((uid, None)))
    assert referenced == expected


# --- SR -------------------------------------------------------------------------------------


def _code(item: Dataset) -> tuple[str, str]:
    """(code value, coding scheme) of a code item: a value longer than 16 characters is a Long
    Code Value (PS3.3 8.8)."""
    value = item.get("CodeValue") or item.get("LongCodeValue") or item.get("URNCodeValue")
    return str(value), str(item.CodingSchemeDesignator)


def _same_content(sources: Sources, single: Any, multi: Any, path: str = "") -> int:
    """Assert that two SR content trees say the same, image references naming the same slice
    (a single-frame image on one side, the multi-frame image's frame on the other); return the
    number of image references compared."""
    assert len(single) == len(multi), path
    compared = 0
    for n, (a, b) in enumerate(zip(single, multi, strict=True)):
        where = f"{path}/{n}"
        assert a.ValueType == b.ValueType, where
        assert a.get("RelationshipType") == b.get("RelationshipType"), where
        if "ConceptNameCodeSequence" in a:
            name_a, name_b = a.ConceptNameCodeSequence[0], b.ConceptNameCodeSequence[0]
            assert _code(name_a) == _code(name_b), where
        for keyword in ("TextValue", "UID", "GraphicType", "ContinuityOfContent"):
            assert a.get(keyword) == b.get(keyword), (where, keyword)
        if a.ValueType == "CODE":
            assert _code(a.ConceptCodeSequence[0]) == _code(b.ConceptCodeSequence[0]), where
        if a.ValueType == "NUM":
            value_a, value_b = a.MeasuredValueSequence[0], b.MeasuredValueSequence[0]
            assert float(value_a.NumericValue) == pytest.approx(float(value_b.NumericValue))
            unit_a = value_a.MeasurementUnitsCodeSequence[0].CodeValue
            assert unit_a == value_b.MeasurementUnitsCodeSequence[0].CodeValue, where
        if "GraphicData" in a:
            np.testing.assert_allclose(a.GraphicData, b.GraphicData, atol=1e-4)
        if "ReferencedSOPSequence" in a:
            ref_a, ref_b = _ref(a.ReferencedSOPSequence[0]), _ref(b.ReferencedSOPSequence[0])
            if a.ValueType == "IMAGE" and ref_a[0] != ref_b[0]:  # a CT slice
                assert ref_a[1] is None and ref_b[1] is not None, where
                assert sources.k_of_ref(ref_a) == sources.k_of_ref(ref_b), where
                compared += 1
            else:  # the SEG (the same UIDs: the same result and uid_seed)
                assert a.ReferencedSOPSequence[0] == b.ReferencedSOPSequence[0], where
        compared += _same_content(
            sources, a.get("ContentSequence", []), b.get("ContentSequence", []), where
        )
    return compared


@pytest.mark.parametrize("which", ["sr", "empty_sr"])
def test_sr_says_what_the_single_frame_sr_says_on_the_same_slices(
    sources: Sources, which: str
) -> None:
    single: EncodedSeries = getattr(sources.from_single, which)
    multi: EncodedSeries = getattr(sources.from_multi, which)
    read = pydicom.dcmread(sources.write(multi.dataset, f"{which}-read"))
    references = _same_content(sources, single.dataset.ContentSequence, read.ContentSequence)
    # findings: the Image Library's 2 centre slices and 2 polylines each; without: 2 extents
    assert references == (6 if which == "sr" else 2)
    evidence = {
        str(i.ReferencedSOPInstanceUID)
        for s in read.CurrentRequestedProcedureEvidenceSequence
        for r in s.ReferencedSeriesSequence
        for i in r.ReferencedSOPSequence
    }
    seg = {sources.from_multi.seg.sop_instance_uid} if which == "sr" else set()
    assert evidence == {str(sources.multi.SOPInstanceUID)} | seg


def test_sr_draws_each_finding_on_the_frame_through_its_centre(sources: Sources) -> None:
    report = hd.sr.srread(sources.write(sources.from_multi.sr.dataset, "sr-drawn")).content
    assert isinstance(report, hd.sr.MeasurementReport)
    drawn = report.get_image_measurement_groups()
    for group, finding in zip(drawn, sources.result.findings, strict=True):
        for measurement in group.get_measurements():
            (coordinates,) = measurement.referenced_coordinates
            (source,) = coordinates.ContentSequence
            ref = _ref(source.ReferencedSOPSequence[0])
            assert ref[0] == sources.multi.SOPInstanceUID and ref[1] is not None
            assert sources.k_of_ref(ref) == sources.centre_k(finding)


# --- key images and KOS -------------------------------------------------------------------------


def test_key_images_show_the_key_frame_and_reference_it(sources: Sources) -> None:
    pairs = zip(
        sources.from_single.images.datasets, sources.from_multi.images.datasets, strict=True
    )
    for (single, multi), finding in zip(pairs, sources.result.findings, strict=True):
        assert multi.PixelData == single.PixelData  # the same pixels, contour and text
        assert list(multi.PixelSpacing) == list(single.PixelSpacing)
        assert list(multi.PatientOrientation) == list(single.PatientOrientation)
        (source,) = multi.SourceImageSequence
        ref = _ref(source)
        assert ref[0] == sources.multi.SOPInstanceUID and ref[1] is not None
        assert source.ReferencedSOPClassUID == sources.multi.SOPClassUID
        assert sources.k_of_ref(ref) == sources.centre_k(finding)
        assert sources.k_of_ref(_ref(single.SourceImageSequence[0])) == sources.centre_k(finding)
        assert f"frame {ref[1]}" in multi.ImageComments


def test_kos_flags_the_key_frames_of_the_multi_frame_image(sources: Sources) -> None:
    kos = sources.from_multi.kos.dataset
    (image,) = [item for item in kos.ContentSequence if item.ValueType == "IMAGE"]
    reference = image.ReferencedSOPSequence[0]
    assert reference.ReferencedSOPInstanceUID == sources.multi.SOPInstanceUID
    frames = [int(n) for n in reference.ReferencedFrameNumber]
    assert frames == sorted(frames) and len(frames) == 2
    expected = {sources.centre_k(f) for f in sources.result.findings}
    assert {sources.frame_k(sources.multi, n) for n in frames} == expected
    (evidence,) = kos.CurrentRequestedProcedureEvidenceSequence
    (series,) = evidence.ReferencedSeriesSequence
    assert [str(i.ReferencedSOPInstanceUID) for i in series.ReferencedSOPSequence] == [
        str(sources.multi.SOPInstanceUID)
    ]
