"""Hostile and real-world DICOM through ``preread read`` (issue 12, "Hostile and real-world DICOM").

Each case mutates a tiny synthetic CT series (8 slices of 64 x 64, ``synthetic.ct_datasets``) the
way the first fuzz run did and reads the folder with :func:`preread.read.read_folder` and the
tiny threshold model (``tests/inference/tiny_model.py``): the study must be refused with a
reason that names the problem, in printable ASCII, and nothing may be written for it, inside
``--out`` or anywhere else. Compressed copies are made with DCMTK (``dcmcjpeg``, ``dcmcjpls``,
``dcmcrle``) and pydicom's JPEG 2000 encoder and must read exactly as the uncompressed series.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    ComprehensiveSRStorage,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    MRImageStorage,
    RLELossless,
    generate_uid,
)

from dicom_gateway.checks import SeriesLimits, is_valid_uid
from dicom_gateway.errors import DicomFileError, SeriesError
from dicom_gateway.orthanc_server import OrthancServer
from dicom_gateway.volume import assemble_volume, read_instance, read_series_dir
from inference.package import ModelPackage
from inference.predict import Predictor
from preread.read import (
    FolderResult,
    OutputPathError,
    UnreadableFolderError,
    read_folder,
    study_dir,
)
from tests.dicom_gateway.synthetic import ct_datasets, geometry, write_series
from tests.inference.tiny_model import write_tiny_package
from tests.orthanc_support import storescu

GRID = geometry((8, 64, 64), spacing=(2.0, 0.7, 0.7))
pytestmark = pytest.mark.filterwarnings(  # pydicom's notes on the values these tests forge
    "ignore:Invalid value for VR:UserWarning",
    "ignore:The value length:UserWarning",
    "ignore:Expected implicit VR:UserWarning",
)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model, its rules relaxed to read an 8-slice series without a description."""
    root = tmp_path_factory.mktemp("models")
    folder = write_tiny_package(root / "tiny-nodule" / "1.0.0")
    card = ModelPackage.load(folder).card
    rules = card.series_rules.model_copy(update={"min_slices": 4, "description_include": []})
    card.model_copy(update={"series_rules": rules}).to_yaml(folder / "model.yaml")
    return root


@pytest.fixture(scope="module")
def predictor(models: Path) -> Predictor:
    return Predictor(ModelPackage.load(models / "tiny-nodule" / "1.0.0"))


def series() -> list[Dataset]:
    """A chest-like phantom: air around a water cylinder holding one 0 HU 'nodule'."""
    z, y, x = np.mgrid[0:8, 0:64, 0:64]
    hu = np.where((y - 32) ** 2 + (x - 32) ** 2 < 28**2, -800.0, -1000.0)
    hu[(z - 4) ** 2 * 4 + (y - 30) ** 2 * 0.49 + (x - 34) ** 2 * 0.49 < 36] = 0.0
    return ct_datasets(hu.astype(np.float32), GRID)


def read(tmp_path: Path, predictor: Predictor, datasets: list[Dataset]) -> FolderResult:
    write_series(tmp_path / "in", datasets)
    results = read_folder(tmp_path / "in", predictor, tmp_path / "out")
    assert len(results) == 1
    return results[0]


def assert_refused(result: FolderResult, tmp_path: Path, *needles: str) -> None:
    assert result.status == "failed", result
    reason = result.reason or ""
    assert reason.isascii() and reason.isprintable(), reason
    for needle in needles:
        assert needle in reason, reason
    assert result.files == () and result.preread is None
    written = [p for p in tmp_path.rglob("*") if p.is_file() and "in" not in p.parts]
    assert written == [], written  # nothing in --out, nothing beside it


def _set(keyword: str, value: object) -> Callable[[list[Dataset]], None]:
    def spoil(datasets: list[Dataset]) -> None:
        for ds in datasets:
            setattr(ds, keyword, value)

    return spoil


def _drop_rescale(datasets: list[Dataset]) -> None:
    for ds in datasets:
        del ds.RescaleSlope, ds.RescaleIntercept


def _scale_z(factor: float) -> Callable[[list[Dataset]], None]:
    def spoil(datasets: list[Dataset]) -> None:
        for ds in datasets:
            x, y, z = ds.ImagePositionPatient
            ds.ImagePositionPatient = [x, y, z * factor]

    return spoil


def _mr_slice(datasets: list[Dataset]) -> None:
    datasets[3].Modality = "MR"
    datasets[3].SOPClassUID = datasets[3].file_meta.MediaStorageSOPClassUID = MRImageStorage


def _mr_class(datasets: list[Dataset]) -> None:
    for ds in datasets:
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = MRImageStorage


def _matrix(rows: int, columns: int) -> Callable[[list[Dataset]], None]:
    def spoil(datasets: list[Dataset]) -> None:
        for ds in datasets:
            ds.Rows, ds.Columns = rows, columns

    return spoil


# case: (how the series is spoilt, what the reason must say)
REFUSED: dict[str, tuple[Callable[[list[Dataset]], None], tuple[str, ...]]] = {
    # wrong answers instead of refusals
    "slope 0": (_set("RescaleSlope", 0), ("RescaleSlope 0,",)),
    "slope -1": (_set("RescaleSlope", -1), ("RescaleSlope -1,",)),
    "slope 1e30": (_set("RescaleSlope", 1e30), ("RescaleSlope 1e+30",)),
    "no slope or intercept": (_drop_rescale, ("no RescaleSlope and RescaleIntercept",)),
    "pixel spacing 1e-30": (_set("PixelSpacing", [1e-30, 1e-30]), ("PixelSpacing 1e-30 mm",)),
    "columns 63": (_matrix(64, 63), ("PixelData holds 8192 bytes", "Columns 63", "need 8064")),
    "64 x 256": (_matrix(64, 256), ("PixelData holds 8192 bytes", "Columns 256")),
    "one MR slice": (_mr_slice, ("different modalities are mixed: CT (7), MR (1)",)),
    "MR class as CT": (_mr_class, ("Modality CT but SOPClassUID MR Image Storage",)),
    # crashes
    "z x 1e300": (_scale_z(1e300), ("-4.8e+301] mm, beyond 100000 mm from the origin",)),
    "z x 1000": (_scale_z(1000), ("has a slice spacing 2000 mm, outside the plausible",)),
    "pixel spacing 1e30": (_set("PixelSpacing", [1e30, 1e30]), ("PixelSpacing 1e+30 mm",)),
    "rows 0": (_matrix(0, 64), ("Rows 0",)),
    "rows = columns = 65535": (_matrix(65535, 65535), ("PixelData holds 8192 bytes",)),
    # found by the fuzzer (bench/fuzz_dicom.py): pixel layouts that pydicom cannot decode,
    # refused with the attribute named (were "unreadable header (TypeError: ...)" or "cannot
    # decode pixel data ... TypeError: '<=' not supported")
    "BitsStored [1, 2]": (_set("BitsStored", [1, 2]), ("has an invalid BitsStored [1, 2]",)),
    "BitsStored 17": (_set("BitsStored", 17), ("BitsStored 17, HighBit 15", "not a pixel layout")),
    "PixelRepresentation 2": (_set("PixelRepresentation", 2), ("PixelRepresentation 2:",)),
    # unclear reasons: raw bytes in a header value
    "raw bytes": (
        _set("PhotometricInterpretation", "MONO\x00\x1b[31m\xff"),
        ("PhotometricInterpretation 'MONO\\x00\\x1b[31m\\xff'",),
    ),
}


@pytest.mark.parametrize("case", REFUSED)
def test_hostile_series_is_refused_with_its_reason(
    case: str, tmp_path: Path, predictor: Predictor
) -> None:
    datasets = series()
    spoil, needles = REFUSED[case]
    spoil(datasets)
    started = time.perf_counter()

    result = read(tmp_path, predictor, datasets)

    assert_refused(result, tmp_path, datasets[0].SeriesInstanceUID, *needles)
    assert "(file " in (result.reason or "") or case == "z x 1000"  # which file
    assert time.perf_counter() - started < 10


@pytest.mark.parametrize("uid", ["../../x", "/tmp/preread-escape", "1.2.3/../../..", "1." * 40])
def test_a_study_uid_never_becomes_a_path_outside_out(
    uid: str, tmp_path: Path, predictor: Predictor
) -> None:
    datasets = series()
    for ds in datasets:
        ds.StudyInstanceUID = uid

    result = read(tmp_path, predictor, datasets)

    assert_refused(result, tmp_path, "is not a DICOM UID")
    assert not Path("/tmp/preread-escape").exists()


def test_the_output_folder_is_refused_when_it_escapes_out(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "1.2.3").symlink_to(tmp_path)
    assert study_dir(out, "1.2.4") == out.resolve() / "1.2.4"
    for uid in ("1.2.3", "..", "/etc", ""):
        with pytest.raises(OutputPathError, match="outside"):
            study_dir(out, uid)
    assert [is_valid_uid(u) for u in ("1.2.840.10008", "1", "1..2", "1.2.", "01.2")] == [
        True,
        True,
        False,
        False,
        True,
    ]


def _forged_length(path: Path) -> None:
    """PixelData declares 0x7FFFFFF0 bytes (the file holds 8192)."""
    raw = path.read_bytes()
    at = raw.rfind(b"\xe0\x7f\x10\x00OW")
    path.write_bytes(raw[: at + 8] + struct.pack("<I", 0x7FFFFFF0) + raw[at + 12 :])


def test_one_bad_file_fails_its_study_and_names_the_file(
    tmp_path: Path, predictor: Predictor
) -> None:
    bad, good = series(), series()
    bad_files = write_series(tmp_path / "in" / "bad", bad)
    write_series(tmp_path / "in" / "good", good)
    _forged_length(bad_files[2])

    results = {r.study_instance_uid: r for r in read_folder(tmp_path / "in", predictor)}

    refused = results[bad[0].StudyInstanceUID]
    assert refused.status == "failed"
    assert str(bad_files[2]) in (refused.reason or "")
    assert "cut short: element (7FE0,0010) declares 2147483632 bytes" in (refused.reason or "")
    assert results[good[0].StudyInstanceUID].status == "done"


def test_a_file_cut_in_its_header_is_named(tmp_path: Path, predictor: Predictor) -> None:
    datasets = series()
    files = write_series(tmp_path / "in", datasets)
    middle = next(p for p, ds in zip(files, _order(datasets, files), strict=True) if ds == 4)
    middle.write_bytes(middle.read_bytes()[:700])  # inside the header, after SOPInstanceUID

    result = read_folder(tmp_path / "in", predictor, tmp_path / "out")[0]

    assert_refused(result, tmp_path, "slices are missing", str(middle), "cut short")


def _patch(path: Path, old: bytes, new: bytes) -> None:
    raw = path.read_bytes()
    assert raw.count(old) == 1 and len(old) == len(new)
    path.write_bytes(raw.replace(old, new))


def test_a_transfer_syntax_uid_that_names_no_transfer_syntax_is_refused(
    tmp_path: Path, predictor: Predictor
) -> None:
    """Found by the fuzzer (one bit flipped in the file meta): was a traceback, exit 1
    (``ValueError: UID is not a transfer syntax`` in checks.check_series_size)."""
    datasets = series()
    files = write_series(tmp_path / "in", datasets)
    _patch(files[3], b"1.2.840.10008.1.2.1\x00", b"1.2.840.10008.1.2.9\x00")

    result = read_folder(tmp_path / "in", predictor, tmp_path / "out")[0]

    assert_refused(
        result,
        tmp_path,
        str(files[3]),
        "has TransferSyntaxUID '1.2.840.10008.1.2.9', not a transfer syntax",
    )


def test_a_value_of_an_unknown_vr_makes_its_file_unreadable_and_named(
    tmp_path: Path, predictor: Predictor
) -> None:
    """Found by the fuzzer (the VR of SeriesNumber forged to ``XX``): pydicom decodes a value on
    first use, here while the folder was grouped by series, outside every check: a traceback
    (NotImplementedError), exit 1. Now the file is unreadable, and named."""
    datasets = series()
    files = write_series(tmp_path / "in", datasets)
    middle = next(p for p, k in zip(files, _order(datasets, files), strict=True) if k == 4)
    series_number = b"\x20\x00\x11\x00IS"
    _patch(middle, series_number, b"\x20\x00\x11\x00XX")

    result = read_folder(tmp_path / "in", predictor, tmp_path / "out")[0]

    assert_refused(result, tmp_path, "slices are missing", str(middle), "VR 'XX'", "cannot be read")
    for path in files:
        if path != middle:
            _patch(path, series_number, b"\x20\x00\x11\x00XX")
    with pytest.raises(UnreadableFolderError, match="no DICOM study found: 8 file") as refused:
        read_folder(tmp_path / "in", predictor, tmp_path / "out")
    assert str(files[0].parent) in str(refused.value) and "Unknown Value Representation" in str(
        refused.value
    )  # was "no DICOM study found", naming no file and no reason


def test_one_bit_flipped_in_the_pixel_data_vr_is_named(
    tmp_path: Path, predictor: Predictor
) -> None:
    """Found by the fuzzer (long run, case 571): PixelData's VR ``OW`` read as ``Ow``, an
    unknown VR with an empty value, which pydicom decodes when asked for the raw element: a
    traceback (NotImplementedError), exit 1."""
    datasets = series()
    files = write_series(tmp_path / "in", datasets)
    _patch(files[2], b"\xe0\x7f\x10\x00OW", b"\xe0\x7f\x10\x00Ow")

    result = read_folder(tmp_path / "in", predictor, tmp_path / "out")[0]

    assert_refused(result, tmp_path, str(files[2]))


def test_a_garbage_length_costs_no_memory(tmp_path: Path) -> None:
    """Found by the fuzzer: a 200-byte file declaring a 4 GiB value made pydicom allocate
    4 GiB before reading (``MemoryError`` under a memory limit, and that was the reason)."""
    ds = series()[0]
    (tmp_path / "in").mkdir()
    path = tmp_path / "in" / "x.dcm"
    ds.save_as(path, enforce_file_format=True)
    header = path.read_bytes()[: path.read_bytes().find(b"\x28\x00\x02\x00")]  # before (0028,)
    path.write_bytes(
        header + b"\x09\x00\x10\x10UN\x00\x00" + struct.pack("<I", 0xFFFFFFF0) + b"x" * 10
    )
    tracemalloc.start()
    try:
        with pytest.raises(DicomFileError, match="declares 4294967280 bytes, the file holds 10"):
            read_instance(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50 * 1024**2, peak


def _order(datasets: list[Dataset], files: list[Path]) -> list[int]:
    """Which slice each written file holds."""
    sops = [ds.SOPInstanceUID for ds in datasets]
    return [sops.index(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in files]


def test_a_million_frames_are_refused_before_any_frame_is_parsed(
    tmp_path: Path, predictor: Predictor
) -> None:
    enhanced = hd.legacy.LegacyConvertedEnhancedCTImage(
        series(), generate_uid(), 2, generate_uid(), 1
    )
    enhanced.NumberOfFrames = 1_000_000
    started = time.perf_counter()

    with pytest.raises(SeriesError, match="NumberOfFrames 1000000, more than the limit of 2000"):
        assemble_volume([enhanced])
    enhanced.NumberOfFrames = 8
    enhanced.PerFrameFunctionalGroupsSequence = enhanced.PerFrameFunctionalGroupsSequence[:3]
    with pytest.raises(SeriesError, match="NumberOfFrames 8 but 3 item"):
        assemble_volume([enhanced])
    with pytest.raises(SeriesError, match="more than the limit of 4 slices"):
        assemble_volume(series(), limits=SeriesLimits(max_slices=4))
    with pytest.raises(SeriesError, match="more than 40000 bytes of pixel data"):
        assemble_volume(series(), limits=SeriesLimits(max_pixel_bytes=40_000))
    enhanced.NumberOfFrames = 1_000_000
    (tmp_path / "in").mkdir()
    enhanced.save_as(tmp_path / "in" / "enhanced.dcm")
    result = read_folder(tmp_path / "in", predictor, tmp_path / "out")[0]
    assert_refused(result, tmp_path, "1000000 images, more than the limit of 2000")
    assert time.perf_counter() - started < 5
    enhanced = hd.legacy.LegacyConvertedEnhancedCTImage(
        series(), generate_uid(), 2, generate_uid(), 1
    )
    enhanced.save_as(tmp_path / "in" / "enhanced.dcm")
    result = read_folder(tmp_path / "in", predictor, tmp_path / "out")[0]
    # the same image with its true frame count is read, its results referencing the frames
    # (tests/pipeline/test_read_multiframe.py compares them with the single-frame read's)
    assert result.status == "done", result.reason
    assert [p.name for p in result.files] == ["SR.dcm", "SEG.dcm", "SC-1.dcm", "KOS.dcm"]


def _sr(study_uid: str) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ComprehensiveSRStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = (
        meta.MediaStorageSOPClassUID,
        meta.MediaStorageSOPInstanceUID,
    )
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, generate_uid()
    ds.PatientID, ds.Modality, ds.SeriesDescription = "TEST", "SR", "Radiologist's report"
    return ds


def test_read_results_and_an_all_sr_folder(tmp_path: Path, predictor: Predictor) -> None:
    datasets = series()
    write_series(tmp_path / "in", datasets)
    (tmp_path / "in" / "notes.txt").write_text("not DICOM\n")

    done = read_folder(tmp_path / "in", predictor, tmp_path / "out")[0]

    assert done.status == "done" and len(done.preread["findings"]) == 1  # type: ignore[index]
    # PREREAD_OUTPUTS' default: SR, SEG, a key image per finding (SC) and the KOS
    assert [p.name for p in done.files] == ["SR.dcm", "SEG.dcm", "SC-1.dcm", "KOS.dcm"]
    assert done.skipped and "notes.txt" in done.skipped[0]  # a skipped file is never silent
    own = read_folder(tmp_path / "out", predictor)[0]
    assert own.status == "not_applicable"
    assert (
        own.reason
        == "no CT image series: found only KO, OT, SEG, SR (PreRead's own results, never read "
        "as input)"
    )
    (tmp_path / "sr").mkdir()
    _sr(datasets[0].StudyInstanceUID).save_as(tmp_path / "sr" / "x.dcm")
    other = read_folder(tmp_path / "sr", predictor)[0]
    assert other.reason == "no CT image series: found only SR"


def _dcmtk(tool: str, *args: str) -> Callable[[Path, Path], None]:
    def encode(source: Path, target: Path) -> None:
        subprocess.run([tool, *args, str(source), str(target)], check=True, capture_output=True)

    return encode


def _j2k(source: Path, target: Path) -> None:
    ds = pydicom.dcmread(source)
    ds.compress(JPEG2000Lossless)
    ds.save_as(target)


ENCODERS = {
    "JPEG Lossless SV1 (dcmcjpeg +e1)": (_dcmtk("dcmcjpeg", "+e1"), JPEGLosslessSV1),
    "JPEG-LS lossless (dcmcjpls)": (_dcmtk("dcmcjpls"), JPEGLSLossless),
    "RLE (dcmcrle)": (_dcmtk("dcmcrle"), RLELossless),
    "JPEG 2000 lossless (pydicom + openjpeg)": (_j2k, JPEG2000Lossless),
}


def test_compressed_series_read_as_the_uncompressed_one(
    tmp_path: Path, predictor: Predictor
) -> None:
    datasets = series()
    plain = write_series(tmp_path / "plain", datasets)
    expected = read_series_dir(tmp_path / "plain")
    reference = read_folder(tmp_path / "plain", predictor)[0]
    assert reference.status == "done"
    for name, (encode, syntax) in ENCODERS.items():
        folder = tmp_path / syntax
        folder.mkdir()
        for path in plain:
            encode(path, folder / path.name)
        assert pydicom.dcmread(next(folder.iterdir())).file_meta.TransferSyntaxUID == syntax
        volume = read_series_dir(folder)
        np.testing.assert_array_equal(volume.array, expected.array, err_msg=name)
        assert volume.geometry == expected.geometry
        result = read_folder(folder, predictor)[0]
        assert result.status == "done", (name, result.reason)
        assert result.preread["findings"] == reference.preread["findings"], name  # type: ignore[index]


def test_read_cli_refusal_is_exit_2_with_one_line(tmp_path: Path, models: Path) -> None:
    datasets = series()
    _set("RescaleSlope", 0)(datasets)
    _set("InstitutionName", "x" * 100)(datasets)  # pydicom warns (LO: at most 64): not printed
    write_series(tmp_path / "in", datasets)
    env = {**os.environ, "PREREAD_MODELS_DIR": str(models), "PREREAD_DATA_DIR": str(tmp_path)}
    cmd = ["read", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--json"]
    proc = subprocess.run(
        [sys.executable, "-m", "preread.cli", *cmd, "--model", "tiny-nodule"],
        capture_output=True, text=True, env=env, check=False, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: study "), proc.stderr
    assert "RescaleSlope 0" in lines[0]
    assert json.loads(proc.stdout)["status"] == "failed"
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


PROPOSE = {  # storescu's option proposing each syntax (with the uncompressed ones)
    JPEGLosslessSV1: "-xs",
    JPEGLSLossless: "-xt",
    RLELossless: "-xr",
    JPEG2000Lossless: "-xv",
}


def test_compressed_series_come_out_of_orthanc_as_the_uncompressed_one(
    tmp_path: Path, orthanc: OrthancServer
) -> None:
    """Each compressed series, sent by storescu in its own transfer syntax, is fetched by the
    WADO-RS client every reading path uses (jobs, priors, backfill, reviews, training from
    Orthanc) and assembles into the uncompressed series' volume — JPEG 2000 included, which
    Orthanc without its GDCM plugin cannot transcode (HTTP 500: taken as stored, decoded
    here)."""
    plain = write_series(tmp_path / "plain", series())
    expected = read_series_dir(tmp_path / "plain")
    with orthanc.client(timeout=60) as client:
        for name, (encode, syntax) in ENCODERS.items():
            folder = tmp_path / syntax
            folder.mkdir()
            study, series_uid = generate_uid(), generate_uid()
            for path in plain:
                encode(path, folder / path.name)
                ds = pydicom.dcmread(folder / path.name)
                ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series_uid
                ds.save_as(folder / path.name)
            sent = storescu(orthanc, [folder], options=[PROPOSE[syntax]])  # in that syntax
            assert sent.returncode == 0, (name, sent.stderr[-500:])
            as_stored = client.series_datasets(study, series_uid, transfer_syntax="*")
            assert {d.file_meta.TransferSyntaxUID for d in as_stored} == {syntax}, name
            volume = assemble_volume(client.series_datasets(study, series_uid))
            np.testing.assert_array_equal(volume.array, expected.array, err_msg=name)
            assert volume.geometry == expected.geometry, name
