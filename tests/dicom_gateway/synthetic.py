"""Tiny synthetic CT series for tests: one single-frame CT Image (PS3.3 A.3) per slice.

The instances carry what highdicom needs to derive a SEG or a Legacy Converted Enhanced CT
image from them, and nothing else.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, CTImageStorage, ExplicitVRLittleEndian, generate_uid

from preread.domain import Geometry


def geometry(
    shape: tuple[int, int, int] = (6, 5, 7),
    *,
    row: tuple[float, float, float] = (1.0, 0.0, 0.0),
    column: tuple[float, float, float] = (0.0, 1.0, 0.0),
    spacing: tuple[float, float, float] = (2.5, 0.75, 0.8),
    origin: tuple[float, float, float] = (-120.0, -80.5, -50.0),
) -> Geometry:
    """A grid whose slices follow the normal ``row × column``."""
    normal = np.cross(row, column)
    return Geometry(
        shape=shape,
        origin=origin,
        row_direction=row,
        column_direction=column,
        slice_direction=(float(normal[0]), float(normal[1]), float(normal[2])),
        spacing=spacing,
    )


def ct_datasets(
    hu: npt.NDArray[np.floating] | npt.NDArray[np.integer],
    grid: Geometry,
    *,
    series_uid: str | None = None,
    frame_of_reference_uid: str | None = None,
    sop_instance_uids: Sequence[str] | None = None,
    slope: float = 1.0,
    intercept: float = -1024.0,
) -> list[Dataset]:
    """One CT instance per slice ``k`` of ``hu``, placed on ``grid`` (PS3.3 C.7.6.2)."""
    study_uid = generate_uid()
    series_uid = series_uid or generate_uid()
    frame_of_reference_uid = frame_of_reference_uid or generate_uid()
    datasets = []
    for k in range(hu.shape[0]):
        sop_uid = UID(sop_instance_uids[k]) if sop_instance_uids else generate_uid()
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = sop_uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = sop_uid
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = frame_of_reference_uid
        ds.PositionReferenceIndicator = ""
        ds.Modality = "CT"
        ds.PatientName = "Phantom^Test"
        ds.PatientID = "TEST"
        ds.PatientBirthDate = ""
        ds.PatientSex = "O"
        ds.PatientPosition = "HFS"
        ds.StudyDate = "20240101"
        ds.StudyTime = "120000"
        ds.StudyID = "1"
        ds.AccessionNumber = ""
        ds.ReferringPhysicianName = ""
        ds.SeriesNumber = 1
        ds.InstanceNumber = k + 1
        ds.AcquisitionNumber = 1
        ds.Manufacturer = "PreRead tests"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.KVP = 120
        ds.ImagePositionPatient = list(grid.slice_position(k))
        ds.ImageOrientationPatient = grid.image_orientation
        ds.PixelSpacing = [grid.spacing[1], grid.spacing[2]]
        ds.SliceThickness = grid.spacing[0]
        ds.Rows, ds.Columns = int(hu.shape[1]), int(hu.shape[2])
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1
        ds.RescaleSlope = slope
        ds.RescaleIntercept = intercept
        ds.RescaleType = "HU"
        stored = np.rint((np.asarray(hu[k], dtype=np.float64) - intercept) / slope)
        ds.PixelData = stored.astype(np.int16).tobytes()
        datasets.append(ds)
    return datasets


def write_series(folder: Path, datasets: Sequence[Dataset], *, seed: int = 0) -> list[Path]:
    """Write ``datasets`` under ``folder`` with random file names, in shuffled order."""
    folder.mkdir(parents=True, exist_ok=True)
    order = list(range(len(datasets)))
    random.Random(seed).shuffle(order)
    paths = []
    for n, index in enumerate(order):
        path = folder / f"{random.Random(seed * 1000 + n).getrandbits(32):08x}"
        datasets[index].save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths
