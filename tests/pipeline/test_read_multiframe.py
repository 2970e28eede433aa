"""``preread read`` on a multi-frame CT: the same findings as on its single-frame images, and
the SR, SEG, key images and KOS written with references to the frames.

The series: a small synthetic chest-like CT (``tests/dicom_gateway/synthetic.py``: 12 slices of
64 × 64, a -800 HU cylinder holding two 0 HU nodules on different slices), read once as
single-frame images and once converted by highdicom into one Legacy Converted Enhanced CT
instance whose frames are in shuffled order. The model is the tiny threshold model of the
inference tests (``tests/inference/tiny_model.py``), its rules relaxed for 12 slices without a
SeriesDescription, so that the whole pipeline runs in seconds.
"""

from __future__ import annotations

import random
from typing import Any

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from inference.package import ModelPackage
from inference.predict import Predictor
from preread.read import FolderResult, read_folder
from tests.dicom_gateway.synthetic import ct_datasets, geometry, write_series
from tests.inference.tiny_model import write_tiny_package

GRID = geometry((12, 64, 64), spacing=(2.0, 0.7, 0.7))
NODULES = ((3, 30, 20), (8, 34, 44))  # (k, j, i) centres: two slices apart at least


@pytest.fixture(scope="module")
def predictor(tmp_path_factory: pytest.TempPathFactory) -> Predictor:
    """The tiny model, its rules relaxed to read a 12-slice series without a description."""
    folder = write_tiny_package(tmp_path_factory.mktemp("models") / "tiny-nodule" / "1.0.0")
    card = ModelPackage.load(folder).card
    rules = card.series_rules.model_copy(update={"min_slices": 4, "description_include": []})
    card.model_copy(update={"series_rules": rules}).to_yaml(folder / "model.yaml")
    return Predictor(ModelPackage.load(folder))


@pytest.fixture(scope="module")
def reads(
    tmp_path_factory: pytest.TempPathFactory, predictor: Predictor
) -> tuple[FolderResult, FolderResult, pydicom.Dataset]:
    """The single-frame read, the multi-frame read and the multi-frame image."""
    root = tmp_path_factory.mktemp("multiframe-read")
    z, y, x = np.mgrid[0:12, 0:64, 0:64]
    hu = np.where((y - 32) ** 2 + (x - 32) ** 2 < 28**2, -800.0, -1000.0)
    for k, j, i in NODULES:
        hu[(z - k) ** 2 * 4 + (y - j) ** 2 * 0.49 + (x - i) ** 2 * 0.49 < 25] = 0.0
    datasets = ct_datasets(hu.astype(np.float32), GRID)
    write_series(root / "single", datasets)
    shuffled = datasets[:]
    random.Random(3).shuffle(shuffled)
    multi = hd.legacy.LegacyConvertedEnhancedCTImage(
        shuffled,
        series_instance_uid=str(datasets[0].SeriesInstanceUID),
        series_number=1,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        include_dimension_index=False,
    )
    (root / "multi").mkdir()
    multi.save_as(root / "multi" / "enhanced.dcm", enforce_file_format=True)
    (single,) = read_folder(root / "single", predictor, root / "out-single")
    (frames,) = read_folder(root / "multi", predictor, root / "out-multi")
    return single, frames, multi


def _findings(result: FolderResult) -> list[dict[str, Any]]:
    """The findings without their UIDs (they derive from the files read, which differ)."""
    assert result.preread is not None
    return [
        {key: value for key, value in f.items() if "uid" not in key}
        for f in result.preread["findings"]
    ]


def test_the_multi_frame_read_finds_what_the_single_frame_read_finds(
    reads: tuple[FolderResult, FolderResult, pydicom.Dataset],
) -> None:
    single, multi, _ = reads
    assert single.status == multi.status == "done", (single.reason, multi.reason)
    assert len(_findings(single)) == len(NODULES)
    assert _findings(multi) == _findings(single)
    assert [p.name for p in multi.files] == ["SR.dcm", "SEG.dcm", "SC-1.dcm", "SC-2.dcm", "KOS.dcm"]


def test_what_is_written_references_the_frames_at_the_findings(
    reads: tuple[FolderResult, FolderResult, pydicom.Dataset],
) -> None:
    _, result, image = reads
    files = {p.name: pydicom.dcmread(p) for p in result.files}
    normal = np.asarray(GRID.slice_direction)

    def k_of(frame: int) -> int:  # the frame's slice, from its position in the file
        item = image.PerFrameFunctionalGroupsSequence[frame - 1]
        position = np.asarray(item.PlanePositionSequence[0].ImagePositionPatient, dtype=float)
        return round(float((position - np.asarray(GRID.origin)) @ normal) / GRID.spacing[0])

    seg = files["SEG.dcm"]
    seg_slices = set()
    for item in seg.PerFrameFunctionalGroupsSequence:
        (source,) = item.DerivationImageSequence[0].SourceImageSequence
        assert source.ReferencedSOPInstanceUID == image.SOPInstanceUID
        seg_slices.add(k_of(int(source.ReferencedFrameNumber)))
    assert {k for k, _, _ in NODULES} <= seg_slices
    centres = set()
    for name in ("SC-1.dcm", "SC-2.dcm"):
        (source,) = files[name].SourceImageSequence
        assert source.ReferencedSOPInstanceUID == image.SOPInstanceUID
        centres.add(k_of(int(source.ReferencedFrameNumber)))
    assert centres == {k for k, _, _ in NODULES}
    (kos_image,) = [i for i in files["KOS.dcm"].ContentSequence if i.ValueType == "IMAGE"]
    frames = kos_image.ReferencedSOPSequence[0].ReferencedFrameNumber
    assert {k_of(int(n)) for n in frames} == centres
    sr = files["SR.dcm"]
    evidence = {
        str(i.ReferencedSOPInstanceUID)
        for s in sr.CurrentRequestedProcedureEvidenceSequence
        for r in s.ReferencedSeriesSequence
        for i in r.ReferencedSOPSequence
    }
    assert evidence == {str(image.SOPInstanceUID), str(seg.SOPInstanceUID)}
