"""DICOM SEG read against its CT series: labels land on the right voxels, or a clear refusal."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.pixels.utils import pack_bits
from pydicom.uid import generate_uid

from dicom_gateway.volume import assemble_volume
from preread.domain import Geometry
from tests.corpus_path import CORPUS
from tests.dicom_gateway.synthetic import ct_datasets, geometry, write_series
from training.annotations import (
    AnnotationError,
    SeriesRef,
    labelled,
    load_annotated_pairs,
    read_segmentation,
)

CORPUS_SEG = CORPUS / "DicomSeg.dcm"
SHAPE = (10, 32, 32)
NODULE = hd.sr.CodedConcept("27925004", "SCT", "Nodule")
LUNG = hd.sr.CodedConcept("39607008", "SCT", "Lung")
STRUCTURE = hd.sr.CodedConcept("49755003", "SCT", "Morphologically abnormal structure")
ORGAN = hd.sr.CodedConcept("123037004", "SCT", "Anatomical Structure")


@pytest.fixture(scope="module")
def ct() -> list[pydicom.Dataset]:
    """A 10-slice 32×32 CT, feet-first (row direction -x), slices 2.5 mm apart."""
    grid = geometry(SHAPE, row=(-1.0, 0.0, 0.0), spacing=(2.5, 0.7, 0.7))
    hu = np.random.default_rng(0).integers(-1000, 400, SHAPE).astype(np.float32)
    return ct_datasets(hu, grid)


def segment(number: int, label: str = "nodule", kind=NODULE, category=STRUCTURE):
    return hd.seg.SegmentDescription(
        segment_number=number,
        segment_label=label,
        segmented_property_category=category,
        segmented_property_type=kind,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
    )


def make_seg(ct, mask, segments, kind="BINARY") -> pydicom.Dataset:
    """A highdicom SEG of ``ct``; ``mask`` is (k, j, i) or (k, j, i, segment)."""
    return hd.seg.Segmentation(
        source_images=ct,
        pixel_array=mask,
        segmentation_type=kind,
        segment_descriptions=segments,
        series_instance_uid=generate_uid(),
        series_number=100,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer="PreRead tests",
        manufacturer_model_name="test",
        software_versions="0",
        device_serial_number="0",
    )


def nodule_mask() -> np.ndarray:
    mask = np.zeros(SHAPE, dtype=bool)
    mask[3:6, 10:14, 20:23] = True
    mask[8, 0, 31] = True
    return mask


def save(seg: pydicom.Dataset, tmp_path: Path, name: str = "seg.dcm") -> Path:
    path = tmp_path / name
    seg.save_as(path)
    return path


def read(path: Path, ct, **kwargs):
    return read_segmentation(path, assemble_volume(ct), SeriesRef.from_datasets(ct), **kwargs)


def test_binary_seg_lands_on_the_given_voxels(ct, tmp_path: Path) -> None:
    mask = nodule_mask()
    path = save(make_seg(ct, mask, [segment(1)]), tmp_path)

    label = read(path, ct)

    assert label.labels.dtype == np.uint8
    np.testing.assert_array_equal(label.labels, mask.astype(np.uint8))
    assert label.segment_names == {1: "nodule"}
    assert label.source == path and not label.fractional


def test_fractional_seg_is_thresholded_at_half(ct, tmp_path: Path) -> None:
    probability = np.zeros(SHAPE, dtype=np.float32)
    probability[4, 5:9, 5:9] = 0.9
    probability[4, 5, 5] = 0.4  # below half: background
    probability[5, 5:9, 5:9] = 0.6
    path = save(make_seg(ct, probability, [segment(1)], kind="FRACTIONAL"), tmp_path)

    label = read(path, ct)

    np.testing.assert_array_equal(label.labels, (probability >= 0.5).astype(np.uint8))
    assert label.fractional


def test_multiple_segments_merge_by_number_and_filter(ct, tmp_path: Path) -> None:
    labels = np.zeros(SHAPE, dtype=np.uint8)
    labels[2:4, 2:6, 2:6] = 1
    labels[6, 20:25, 20:25] = 2
    labels[7, 1, 1] = 3
    segments = [segment(1, "nodule A"), segment(2, "lung", LUNG, ORGAN), segment(3, "nodule B")]
    path = save(make_seg(ct, labels, segments), tmp_path)

    every = read(path, ct)
    nodules = read(path, ct, segment_filter=labelled("Nodule A", "nodule b"))

    np.testing.assert_array_equal(every.labels, labels)
    assert every.segment_names == {1: "nodule A", 2: "lung", 3: "nodule B"}
    np.testing.assert_array_equal(nodules.labels, np.where(labels == 2, 0, labels))
    assert nodules.segment_names == {1: "nodule A", 3: "nodule B"}
    with pytest.raises(AnnotationError, match=r"seg\.dcm: the segment filter keeps none"):
        read(path, ct, segment_filter=labelled("vessel"))


def test_overlapping_segments_are_refused_unless_filtered(ct, tmp_path: Path) -> None:
    masks = np.zeros((*SHAPE, 2), dtype=bool)
    masks[2:8, 4:28, 4:28, 0] = True  # lung
    masks[4, 10:12, 10:12, 1] = True  # nodule inside it
    segments = [segment(1, "lung", LUNG, ORGAN), segment(2, "nodule")]
    path = save(make_seg(ct, masks, segments), tmp_path)

    with pytest.raises(AnnotationError, match=r"seg\.dcm: segment 2 overlaps segment\(s\) \[1\]"):
        read(path, ct)
    nodule = read(path, ct, segment_filter=lambda s: s.property_type == "Nodule")
    np.testing.assert_array_equal(nodule.labels, masks[..., 1] * 2)


def dcmqi_style(seg: pydicom.Dataset, seed: int = 1) -> pydicom.Dataset:
    """Shuffle the frames of a SEG (segments interleaved, positions in any order), as dcmqi may."""
    frames = seg.pixel_array.reshape(int(seg.NumberOfFrames), seg.Rows, seg.Columns)
    order = list(range(len(frames)))
    random.Random(seed).shuffle(order)
    groups = list(seg.PerFrameFunctionalGroupsSequence)
    seg.PerFrameFunctionalGroupsSequence = [groups[f] for f in order]
    seg.PixelData = pack_bits(frames[order].ravel())
    return seg


def test_dcmqi_style_sparse_shuffled_frames(ct, tmp_path: Path) -> None:
    labels = np.zeros(SHAPE, dtype=np.uint8)
    labels[1:3, 4:9, 4:9] = 1
    labels[5:8, 15:18, 20:30] = 2
    labels[2, 20, 20] = 2
    seg = make_seg(ct, labels, [segment(1, "a"), segment(2, "b")])
    assert seg.NumberOfFrames == 6  # only the non-empty frames
    seg = dcmqi_style(seg)
    numbers = [
        int(group.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        for group in seg.PerFrameFunctionalGroupsSequence
    ]
    assert numbers != sorted(numbers)  # segments interleaved
    path = save(seg, tmp_path)

    np.testing.assert_array_equal(read(path, ct).labels, labels)


def test_load_annotated_pairs(ct, tmp_path: Path) -> None:
    mask = nodule_mask()
    write_series(tmp_path / "case-a" / "ct" / "series", ct)
    save(make_seg(ct, mask, [segment(1)]), tmp_path / "case-a", "annotation.dcm")
    (tmp_path / "README.md").write_text("top-level files are ignored\n")
    (tmp_path / "case-a" / "truth.json").write_text('{"nodules": []}\n')  # not DICOM: ignored

    (case,) = load_annotated_pairs(tmp_path)

    assert case.case_id == "case-a"
    assert case.ct_dir == tmp_path / "case-a" / "ct" / "series"
    assert case.seg_path == tmp_path / "case-a" / "annotation.dcm"
    np.testing.assert_array_equal(case.label.labels, mask)
    assert case.image.array.shape == SHAPE


def test_load_gives_one_case_per_seg(ct, tmp_path: Path) -> None:
    write_series(tmp_path / "case-a" / "ct", ct)
    save(make_seg(ct, nodule_mask(), [segment(1)]), tmp_path / "case-a", "reader1.dcm")
    save(make_seg(ct, nodule_mask()[::-1], [segment(1)]), tmp_path / "case-a", "reader2.dcm")

    first, second = load_annotated_pairs(tmp_path)

    assert (first.case_id, second.case_id) == ("case-a/reader1", "case-a/reader2")
    assert first.image is second.image  # the CT is read once
    np.testing.assert_array_equal(second.label.labels, nodule_mask()[::-1])


def test_load_refuses_seg_without_its_series(ct, tmp_path: Path) -> None:
    grid = geometry(SHAPE, spacing=(2.5, 0.7, 0.7))
    other = ct_datasets(np.zeros(SHAPE), grid)
    write_series(tmp_path / "case-b" / "ct", other)
    save(make_seg(ct, nodule_mask(), [segment(1)]), tmp_path / "case-b")

    with pytest.raises(
        AnnotationError, match=rf"seg\.dcm: references series \['{ct[0].SeriesInstanceUID}'\]"
    ):
        load_annotated_pairs(tmp_path)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_load_refuses_a_broken_dicom_file(ct, tmp_path: Path) -> None:
    write_series(tmp_path / "case-d", ct)
    save(make_seg(ct, nodule_mask(), [segment(1)]), tmp_path / "case-d")
    broken = tmp_path / "case-d" / "broken.dcm"
    broken.write_bytes(bytes(128) + b"DICM" + b"\x02\x00\x10\x00garbage")

    with pytest.raises(AnnotationError, match=r"broken\.dcm: not a"):
        load_annotated_pairs(tmp_path)


def test_load_refuses_case_without_seg(ct, tmp_path: Path) -> None:
    write_series(tmp_path / "case-c", ct)

    with pytest.raises(AnnotationError, match="case-c: case folder holds no SEG"):
        load_annotated_pairs(tmp_path)


def _other_series(seg: pydicom.Dataset) -> None:
    seg.ReferencedSeriesSequence[0].SeriesInstanceUID = "1.2.3.4"


def _other_frame_of_reference(seg: pydicom.Dataset) -> None:
    seg.FrameOfReferenceUID = generate_uid()


def _half_slice_off(seg: pydicom.Dataset) -> None:
    position = seg.PerFrameFunctionalGroupsSequence[1].PlanePositionSequence[0]
    position.ImagePositionPatient[2] += 1.25


def _in_plane_off(seg: pydicom.Dataset) -> None:
    position = seg.PerFrameFunctionalGroupsSequence[0].PlanePositionSequence[0]
    position.ImagePositionPatient[0] -= 0.7


def _pixel_spacing(seg: pydicom.Dataset) -> None:
    seg.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing = [0.8, 0.8]


def _orientation(seg: pydicom.Dataset) -> None:
    plane = seg.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0]
    plane.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]


def _foreign_source(seg: pydicom.Dataset) -> None:
    derivation = seg.PerFrameFunctionalGroupsSequence[2].DerivationImageSequence[0]
    derivation.SourceImageSequence[0].ReferencedSOPInstanceUID = "1.2.3.4.5"


REFUSALS: dict[str, tuple[Callable[[pydicom.Dataset], None], str]] = {
    "other series": (_other_series, r"references series 1\.2\.3\.4, not CT series"),
    "frame of reference": (_other_frame_of_reference, "FrameOfReferenceUID .* differs"),
    "half a slice off": (
        _half_slice_off,
        r"frame 2 at z=\S+ mm .*lies on no slice of CT series .* \(nearest \S+ mm",
    ),
    "in-plane shift": (_in_plane_off, "frame 1 .* is offset 0.70 mm within the image plane"),
    "pixel spacing": (
        _pixel_spacing,
        r"PixelSpacing \[0\.8, 0\.8\] mm, CT series .* \[0\.7, 0\.7\]",
    ),
    "orientation": (_orientation, "frame 1 has ImageOrientationPatient"),
    "foreign source image": (_foreign_source, "frame 3 derives from instance 1.2.3.4.5"),
}


@pytest.mark.parametrize("case", REFUSALS)
def test_refusals_name_the_seg_file(ct, tmp_path: Path, case: str) -> None:
    seg = make_seg(ct, nodule_mask(), [segment(1)])
    spoil, reason = REFUSALS[case]
    spoil(seg)
    path = save(seg, tmp_path)

    with pytest.raises(AnnotationError, match=reason) as refused:
        read(path, ct)

    assert "seg.dcm" in str(refused.value)
    assert refused.value.path == path


def test_real_dcmqi_seg_on_a_rebuilt_source_series() -> None:
    """A dcmqi SEG (BRATS, 3 segments × 32 frames) read onto a series rebuilt from its references.

    The source MR series is not in the corpus, so it is rebuilt from what the SEG says: the
    series UID, the frame of reference, and each frame's source instance and position.
    """
    seg = pydicom.dcmread(CORPUS_SEG)
    groups = seg.PerFrameFunctionalGroupsSequence
    source_of = [
        str(g.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID)
        for g in groups
    ]
    position = {
        uid: [float(v) for v in g.PlanePositionSequence[0].ImagePositionPatient]
        for uid, g in zip(source_of, groups, strict=True)
    }
    shared = seg.SharedFunctionalGroupsSequence[0]
    iop = [float(v) for v in shared.PlaneOrientationSequence[0].ImageOrientationPatient]
    normal = np.cross(iop[:3], iop[3:])
    order = sorted(position, key=lambda uid: float(np.dot(position[uid], normal)))
    measures = shared.PixelMeasuresSequence[0]
    grid = Geometry(
        shape=(len(order), seg.Rows, seg.Columns),
        origin=vec(position[order[0]]),
        row_direction=vec(iop[:3]),
        column_direction=vec(iop[3:]),
        slice_direction=vec(normal),
        spacing=vec([measures.SpacingBetweenSlices, *measures.PixelSpacing]),
    )
    series = ct_datasets(
        np.zeros(grid.shape),
        grid,
        series_uid=str(seg.ReferencedSeriesSequence[0].SeriesInstanceUID),
        frame_of_reference_uid=str(seg.FrameOfReferenceUID),
        sop_instance_uids=order,
    )
    expected = np.zeros(grid.shape, dtype=np.uint8)
    for frame, group, uid in zip(seg.pixel_array, groups, source_of, strict=True):
        number = int(group.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        expected[order.index(uid)][frame > 0] = number

    volume, reference = assemble_volume(series), SeriesRef.from_datasets(series)
    every = read_segmentation(CORPUS_SEG, volume, reference)
    second = read_segmentation(
        CORPUS_SEG, volume, reference, segment_filter=lambda s: s.number == 2
    )

    assert set(np.unique(expected)) == {0, 1, 2, 3}
    np.testing.assert_array_equal(every.labels, expected)
    np.testing.assert_array_equal(second.labels, np.where(expected == 2, 2, 0))


def vec(values: Iterable[Any]) -> tuple[float, float, float]:
    x, y, z = (float(v) for v in values)
    return (x, y, z)
