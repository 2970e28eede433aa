"""Volume assembly: geometry of synthetic series, every refusal, multi-frame, a real corpus."""

from __future__ import annotations

import collections
from collections.abc import Callable
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.encaps import encapsulate
from pydicom.uid import JPEGLosslessSV1, generate_uid

from dicom_gateway.errors import DicomFileError, SeriesError
from dicom_gateway.volume import assemble_volume, read_instance, read_series_dir
from preread.domain import Geometry
from tests.corpus_path import CORPUS, MISSING
from tests.dicom_gateway.synthetic import ct_datasets, geometry, write_series


def unique_hu(shape: tuple[int, int, int]) -> np.ndarray:
    """A volume whose every voxel has its own HU value, so voxels can be traced."""
    return (np.arange(np.prod(shape)).reshape(shape) - 1000).astype(np.float32)


def assert_voxels_in_place(read: Geometry, array: np.ndarray, hu: np.ndarray, grid: Geometry):
    """Every voxel of the read volume sits where the same voxel sat in the written grid."""
    assert array.shape == hu.shape
    where = {float(v): idx for idx, v in np.ndenumerate(hu)}
    read_idx = np.array(list(np.ndindex(array.shape)), dtype=float)
    written_idx = np.array([where[float(array[tuple(int(x) for x in i)])] for i in read_idx])
    np.testing.assert_allclose(
        read.index_to_lps(read_idx), grid.index_to_lps(written_idx), atol=1e-4
    )


def uid_of(datasets: list[pydicom.Dataset]) -> str:
    return str(datasets[0].SeriesInstanceUID)


@pytest.mark.parametrize(
    ("row", "column"),
    [
        pytest.param((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), id="HFS"),
        pytest.param((-1.0, 0.0, 0.0), (0.0, 1.0, 0.0), id="FFS"),
        pytest.param((0.0, 1.0, 0.0), (0.0, 0.0, -1.0), id="sagittal"),
        pytest.param((0.8, 0.6, 0.0), (0.0, 0.0, -1.0), id="oblique"),
    ],
)
def test_shuffled_files_give_the_written_geometry(tmp_path: Path, row, column) -> None:
    grid = geometry(row=row, column=column)
    hu = unique_hu(grid.shape)
    datasets = ct_datasets(hu, grid)
    write_series(tmp_path / "series", datasets)

    volume = read_series_dir(tmp_path / "series")

    assert volume.array.dtype == np.float32
    np.testing.assert_array_equal(volume.array, hu)
    assert volume.geometry.spacing == pytest.approx(grid.spacing)
    np.testing.assert_allclose(volume.geometry.slice_direction, np.cross(row, column), atol=1e-9)
    for ds in datasets:  # slice k of the volume is the file whose pixels it holds
        k = int(
            np.argmax(
                [
                    np.array_equal(volume.array[k], ds.pixel_array - 1024)
                    for k in range(grid.shape[0])
                ]
            )
        )
        np.testing.assert_allclose(
            volume.geometry.index_to_lps([k, 0, 0]), ds.ImagePositionPatient, atol=1e-4
        )
        j, i = 3, 4
        expected = (
            np.asarray(ds.ImagePositionPatient, dtype=float)
            + j * ds.PixelSpacing[0] * np.asarray(column)
            + i * ds.PixelSpacing[1] * np.asarray(row)
        )
        np.testing.assert_allclose(volume.geometry.index_to_lps([k, j, i]), expected, atol=1e-4)


def test_slices_stored_against_the_normal_are_reversed() -> None:
    grid = geometry()
    flipped = Geometry(
        shape=grid.shape,
        origin=grid.slice_position(grid.shape[0] - 1),
        row_direction=grid.row_direction,
        column_direction=grid.column_direction,
        slice_direction=(0.0, 0.0, -1.0),
        spacing=grid.spacing,
    )
    hu = unique_hu(grid.shape)

    volume = assemble_volume(ct_datasets(hu, flipped))

    assert volume.geometry.slice_direction == pytest.approx((0.0, 0.0, 1.0))
    np.testing.assert_array_equal(volume.array, hu[::-1])
    assert_voxels_in_place(volume.geometry, volume.array, hu, flipped)


def test_rescale_is_applied_per_slice() -> None:
    grid = geometry()
    hu = unique_hu(grid.shape)
    datasets = ct_datasets(hu, grid)
    for k, ds in enumerate(datasets):
        ds.RescaleSlope, ds.RescaleIntercept = 0.5 * (k + 1), -1000.0 + k
        stored = np.rint((hu[k] - ds.RescaleIntercept) / ds.RescaleSlope)
        ds.PixelData = stored.astype(np.int16).tobytes()
        hu[k] = stored * ds.RescaleSlope + ds.RescaleIntercept

    np.testing.assert_allclose(assemble_volume(datasets).array, hu)


def test_one_slice_needs_min_slices_one() -> None:
    grid = geometry(shape=(1, 5, 7))
    datasets = ct_datasets(unique_hu(grid.shape), grid)

    with pytest.raises(SeriesError, match=r"1 slice\(s\), at least 2 needed") as refused:
        assemble_volume(datasets)
    assert refused.value.series_uid == uid_of(datasets)
    volume = assemble_volume(datasets, min_slices=1)
    assert volume.geometry.spacing[0] == pytest.approx(grid.spacing[0])  # SliceThickness


def test_multiframe_equals_single_frames() -> None:
    grid = geometry(row=(-1.0, 0.0, 0.0))
    hu = unique_hu(grid.shape)
    datasets = ct_datasets(hu, grid)
    for k, ds in enumerate(datasets):  # per-frame Pixel Value Transformation
        ds.RescaleIntercept = -1024.0 + k
        ds.PixelData = np.rint(hu[k] + 1024.0 - k).astype(np.int16).tobytes()
    enhanced = hd.legacy.LegacyConvertedEnhancedCTImage(
        datasets, generate_uid(), 2, generate_uid(), 1
    )
    assert "PerFrameFunctionalGroupsSequence" in enhanced

    single = assemble_volume(datasets)
    multi = assemble_volume([enhanced])

    np.testing.assert_array_equal(multi.array, single.array)
    np.testing.assert_array_equal(multi.array, hu)
    np.testing.assert_allclose(multi.geometry.affine, single.geometry.affine, atol=1e-6)


def _drop_slice(datasets: list[pydicom.Dataset]) -> None:
    del datasets[3]


def _uneven(datasets: list[pydicom.Dataset]) -> None:
    datasets[3].ImagePositionPatient[2] += 0.6


def _tilt(datasets: list[pydicom.Dataset]) -> None:
    for k, ds in enumerate(datasets):
        ds.ImagePositionPatient = [
            ds.ImagePositionPatient[0],
            -80.5 + 0.3 * k,
            ds.ImagePositionPatient[2],
        ]


def _rgb(datasets: list[pydicom.Dataset]) -> None:
    datasets[2].PhotometricInterpretation = "RGB"


def _matrix(datasets: list[pydicom.Dataset]) -> None:
    datasets[0].Rows = 4
    datasets[0].PixelData = bytes(4 * 7 * 2)


def _jpeg(datasets: list[pydicom.Dataset]) -> None:
    datasets[1].file_meta.TransferSyntaxUID = JPEGLosslessSV1
    datasets[1].PixelData = encapsulate([b"\xff\xd8 not really a JPEG \xff\xd9"])


def _float_nan(datasets: list[pydicom.Dataset]) -> None:
    """Float Pixel Data (32-bit) throughout, one value NaN: integers always give finite HU,
    floats need looking at."""
    for k, ds in enumerate(datasets):
        stored = ds.pixel_array.astype(np.float32)
        if k == 3:
            stored[1, 2] = np.nan
        del ds.PixelData, ds.PixelRepresentation
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 32, 32, 31
        ds.FloatPixelData = stored.tobytes()


Spoil = Callable[[list[pydicom.Dataset]], object]
REFUSALS: dict[str, tuple[Spoil, str]] = {
    "mixed series": (lambda d: setattr(d[2], "SeriesInstanceUID", generate_uid()), "2 series"),
    "orientation": (
        lambda d: setattr(d[4], "ImageOrientationPatient", [1, 0, 0, 0, 0.995, 0.0998]),
        "orientation differs",
    ),
    "pixel spacing": (lambda d: setattr(d[1], "PixelSpacing", [0.7, 0.8]), "pixel spacing differs"),
    "matrix": (_matrix, "matrix differs"),
    "duplicate": (
        lambda d: setattr(d[2], "ImagePositionPatient", list(d[3].ImagePositionPatient)),
        "duplicate slice position",
    ),
    "missing slice": (_drop_slice, r"slices are missing.*slice 2 .*slice 3 .*2 x the median"),
    "uneven": (_uneven, r"inconsistent slice spacing.*slice 3"),
    "in-plane drift": (_tilt, "gantry tilt"),
    "tilt attribute": (lambda d: setattr(d[0], "GantryDetectorTilt", 15.0), "GantryDetectorTilt"),
    "no pixels": (lambda d: delattr(d[5], "PixelData"), "no pixel data"),
    "colour": (_rgb, "PhotometricInterpretation 'RGB'"),
    "samples": (lambda d: setattr(d[5], "SamplesPerPixel", 3), "SamplesPerPixel 3"),
    "undecodable": (_jpeg, r"cannot decode pixel data in transfer syntax JPEG Lossless.*4\.70"),
    "no position": (lambda d: delattr(d[2], "ImagePositionPatient"), "no ImagePositionPatient"),
    "same instance twice": (lambda d: d.append(d[0]), "given more than once"),
    "not a number": (_float_nan, r"non-finite values \(NaN or infinity\)"),
}


@pytest.mark.parametrize("case", REFUSALS)
def test_refusals_name_the_series_and_the_problem(case: str) -> None:
    grid = geometry()
    datasets = ct_datasets(unique_hu(grid.shape), grid)
    uid = uid_of(datasets)
    spoil, reason = REFUSALS[case]
    spoil(datasets)

    with pytest.raises(SeriesError, match=reason) as refused:
        assemble_volume(datasets)

    assert refused.value.series_uid == uid
    assert uid in str(refused.value)


@pytest.mark.filterwarnings("ignore:Expected implicit VR:UserWarning")
def test_unreadable_file_is_named(tmp_path: Path) -> None:
    grid = geometry()
    write_series(tmp_path, ct_datasets(unique_hu(grid.shape), grid))
    (tmp_path / "notes.txt").write_text("not DICOM\n")

    with pytest.raises(DicomFileError, match=r"notes\.txt"):
        read_series_dir(tmp_path)


def test_corpus_is_read_or_refused_with_a_reason() -> None:
    """Every file of the Orthanc test corpus is read, or refused by a GatewayError."""
    assert CORPUS.is_dir(), MISSING
    unreadable: dict[str, str] = {}
    groups: dict[str, list[pydicom.Dataset]] = collections.defaultdict(list)
    names: dict[str, str] = {}
    for path in sorted(p for p in CORPUS.rglob("*") if p.is_file()):
        name = str(path.relative_to(CORPUS))
        try:
            ds = read_instance(path)
        except DicomFileError as exc:
            assert str(path) in str(exc)
            unreadable[name] = exc.reason
            continue
        uid = str(ds.get("SeriesInstanceUID", ""))
        groups[uid].append(ds)
        names.setdefault(uid, name)

    read: dict[str, tuple[int, ...]] = {}
    refused: dict[str, str] = {}
    for uid, datasets in groups.items():
        try:
            volume = assemble_volume(datasets, min_slices=1)
        except SeriesError as exc:
            assert exc.series_uid == uid and exc.reason
            refused[names[uid]] = exc.reason
            continue
        assert np.isfinite(volume.array).all(), names[uid]
        read[names[uid]] = volume.array.shape

    # pydicom's parser gives up on the nesting (a RecursionError, or the OSError it becomes where
    # pydicom catches it: which one depends on how deep the caller's stack already is)
    nested = unreadable["2026-05-06-Deeply-Nested-Sequence.dcm"]
    assert nested.startswith("not a readable DICOM file (") and (
        "RecursionError" in nested or "OSError" in nested
    ), nested
    assert unreadable["README.txt"] == "not a DICOM instance (no SOPInstanceUID)"
    assert read["Brainix/Epi/IM-0001-0001.dcm"] == (22, 256, 256)
    assert read["Knee/T1/IM-0001-0001.dcm"] == (24, 512, 512)
    assert read["SignedCT.dcm"] == (1, 512, 512)
    assert "no pixel data" in refused["Issue22-NoPixelData.dcm"]
    assert "no pixel data" in refused["DummyCTInvalidRows.dcm"]
    assert "orientation differs" in refused["Knix/Loc/IM-0001-0001.dcm"]
    assert "SamplesPerPixel 3" in refused["ColorTestMalaterre.dcm"]
    # 30 read since the JPEG Lossless decoder (GDCM) is a dependency; 79 refused
    assert len(read) >= 30 and len(refused) >= 75, (sorted(read), sorted(refused))


def test_pixel_data_released_only_after_the_volume_is_whole() -> None:
    grid = geometry()
    hu = unique_hu(grid.shape)
    datasets = ct_datasets(hu, grid)
    for ds in datasets:
        _ = ds.pixel_array  # decoded and cached by pydicom
    timings: dict[str, float] = {}

    volume = assemble_volume(datasets, release_pixel_data=True, timings=timings)

    np.testing.assert_array_equal(volume.array, hu)
    assert all("PixelData" not in ds and ds._pixel_array is None for ds in datasets)
    assert all("ImagePositionPatient" in ds and "SOPInstanceUID" in ds for ds in datasets)
    assert set(timings) == {"decode", "volume"} and min(timings.values()) >= 0.0
    # a series refused by its geometry keeps every instance's pixel data
    refused = ct_datasets(hu, grid)
    del refused[2]
    with pytest.raises(SeriesError, match="missing"):
        assemble_volume(refused, release_pixel_data=True)
    assert all("PixelData" in ds for ds in refused)
