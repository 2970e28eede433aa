"""Write a phantom as a DICOM study: a CT series, a truth SEG and ``truth.json``.

Layout of one study (``<name>`` is the patient ID made safe for a file name)::

    <out>/<name>/ct/CT000001.dcm … CT<n>.dcm   CT Image Storage (PS3.3 A.3), one file per slice
    <out>/<name>/seg.dcm                       Segmentation Storage (PS3.3 A.51), only if N > 0
    <out>/<name>/truth.json                    the analytic ground truth, always

CT files are Explicit VR Little Endian, int16 pixels with RescaleSlope 1 and RescaleIntercept
-1024 (HU = stored - 1024, HU clipped to [-1024, 3071]), written in acquisition order: instance
``k + 1`` is slice ``k`` of :class:`~preread.domain.Geometry`. The SEG (highdicom, BINARY) has
one segment per nodule (segment number = nodule label; SNOMED CT category 49755003
"Morphologically abnormal structure", type 27925004 "Nodule"; tracking ID ``nodule-<n>``) and
references the CT series; it shares the study and frame of reference.

Every UID is derived from the phantom (generator version, seed, grid, nodules, patient ID) with
:func:`pydicom.uid.generate_uid` and fixed entropy, and every date is derived from the seed (or
given: ``study_date``), so writing the same phantom twice gives byte-identical files. A
follow-up pair (:mod:`training.followup_phantoms`) is two studies of one patient under
``<out>/<name>/baseline/`` and ``<out>/<name>/follow-up/``.
"""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sr.codedict import codes
from pydicom.uid import UID, CTImageStorage, ExplicitVRLittleEndian, generate_uid
from pydicom.valuerep import DA, DT, TM

from preread.domain import Geometry
from training.phantoms import GENERATOR_VERSION, Phantom, generate_phantom

__all__ = [
    "StudyFiles",
    "default_study_date",
    "safe_name",
    "write_phantom_study",
    "write_phantoms",
]

MANUFACTURER = f"PreRead phantom generator {GENERATOR_VERSION}"
RESCALE_INTERCEPT = -1024
_SYNTHETIC = "Synthetic phantom; no patient data"
_CATEGORY = hd.sr.CodedConcept("49755003", "SCT", "Morphologically abnormal structure")
_NODULE = hd.sr.CodedConcept("27925004", "SCT", "Nodule")


@dataclass(frozen=True)
class StudyFiles:
    """Where one phantom study was written (``seg_path`` is None when it has no nodules)."""

    study_dir: Path
    ct_dir: Path
    seg_path: Path | None
    truth_path: Path
    study_instance_uid: str
    series_instance_uid: str


def _ds(v: float) -> str:
    """A Decimal String (PS3.5 6.2, at most 16 characters) for a coordinate or spacing."""
    s = f"{v:.6f}".rstrip("0").rstrip(".")
    return "0" if s in ("-0", "") else s


def default_study_date(seed: int) -> datetime.date:
    """The study date a phantom gets when none is given (derived from its seed)."""
    return datetime.date(2020, 1, 1) + datetime.timedelta(days=seed % 1826)


@dataclass(frozen=True)
class _Ids:
    patient_id: str
    patient_name: str
    date: str
    fingerprint: str

    def uid(self, role: str) -> UID:
        # pydicom's root prefix: with prefix=None generate_uid ignores entropy_srcs (random UUID)
        return generate_uid(entropy_srcs=["preread-phantom", self.fingerprint, role])


def _ids(ph: Phantom, patient_id: str | None, study_date: datetime.date | None = None) -> _Ids:
    g = ph.volume.geometry
    pid = patient_id or f"PHANTOM-{ph.seed:06d}"
    nod = ";".join(f"{n.label},{n.center_lps_mm},{n.long_axis_mm},{n.type}" for n in ph.nodules)
    parts = (
        GENERATOR_VERSION,
        ph.seed,
        g.shape,
        g.spacing,
        g.origin,
        ph.patient_position,
        nod,
        pid,
    )
    fp = "|".join(str(p) for p in parts)
    if study_date is not None:  # another study of the same phantom patient: other UIDs
        fp += f"|{study_date.isoformat()}"
    day = study_date or default_study_date(ph.seed)
    return _Ids(pid, f"PHANTOM^{ph.seed}", day.strftime("%Y%m%d"), fp)


def _ct_slices(
    ph: Phantom, ids: _Ids, study_uid: str, series_uid: str, for_uid: str
) -> list[Dataset]:
    """One CT Image IOD (PS3.3 A.3) per slice, in acquisition order."""
    g: Geometry = ph.volume.geometry
    nk, nj, ni = g.shape
    shared = {
        # Patient (C.7.1.1)
        "PatientName": ids.patient_name,
        "PatientID": ids.patient_id,
        "PatientBirthDate": "",
        "PatientSex": "O",
        "PatientIdentityRemoved": "YES",
        "DeidentificationMethod": _SYNTHETIC,
        # General Study (C.7.2.1)
        "StudyInstanceUID": study_uid,
        "StudyDate": ids.date,
        "StudyTime": "090000",
        "ReferringPhysicianName": "",
        "StudyID": f"PH{ph.seed}",
        "AccessionNumber": "",
        "StudyDescription": "Synthetic chest CT (phantom)",
        # General Series (C.7.3.1)
        "Modality": "CT",
        "SeriesInstanceUID": series_uid,
        "SeriesNumber": 1,
        "SeriesDate": ids.date,
        "SeriesTime": "090000",
        "BodyPartExamined": "CHEST",
        "SeriesDescription": f"Chest phantom {g.spacing[0]:g} mm",
        "PatientPosition": ph.patient_position,
        # Frame of Reference (C.7.4.1)
        "FrameOfReferenceUID": for_uid,
        "PositionReferenceIndicator": "",
        # General Equipment (C.7.5.1)
        "Manufacturer": MANUFACTURER,
        "ManufacturerModelName": "PreRead phantom",
        "SoftwareVersions": GENERATOR_VERSION,
        "InstitutionName": "PreRead synthetic data",
        # General Acquisition / General Image (C.7.6.1)
        "AcquisitionNumber": 1,
        "ContentDate": ids.date,
        "ContentTime": "090000",
        "BurnedInAnnotation": "NO",
        "LossyImageCompression": "00",
        # Image Plane (C.7.6.2)
        "PixelSpacing": [_ds(g.spacing[1]), _ds(g.spacing[2])],
        "ImageOrientationPatient": [_ds(v) for v in g.image_orientation],
        "SliceThickness": _ds(g.spacing[0]),
        "SpacingBetweenSlices": _ds(g.spacing[0]),
        # Image Pixel (C.7.6.3) and CT Image (C.8.2.1)
        "SamplesPerPixel": 1,
        "PhotometricInterpretation": "MONOCHROME2",
        "Rows": nj,
        "Columns": ni,
        "BitsAllocated": 16,
        "BitsStored": 16,
        "HighBit": 15,
        "PixelRepresentation": 1,
        "ImageType": ["ORIGINAL", "PRIMARY", "AXIAL"],
        "RescaleIntercept": str(RESCALE_INTERCEPT),
        "RescaleSlope": "1",
        "RescaleType": "HU",
        "KVP": "120",
        "ReconstructionDiameter": _ds(g.spacing[1] * nj),
        "ConvolutionKernel": "STANDARD",
        # VOI LUT (C.11.2)
        "WindowCenter": ["-600", "40"],
        "WindowWidth": ["1500", "400"],
        "WindowCenterWidthExplanation": ["LUNG", "MEDIASTINUM"],
        # SOP Common (C.12.1)
        "SOPClassUID": CTImageStorage,
        "InstanceCreationDate": ids.date,
        "InstanceCreationTime": "090000",
    }
    out = []
    for k in range(nk):
        ds = Dataset()
        for key, value in shared.items():
            setattr(ds, key, value)
        sop_uid = ids.uid(f"ct-{k}")
        pos = g.slice_position(k)
        ds.SOPInstanceUID = sop_uid
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [_ds(v) for v in pos]
        ds.SliceLocation = _ds(pos[2])
        hu = np.clip(ph.volume.array[k], -1024.0, 3071.0)
        ds.PixelData = (np.rint(hu) - RESCALE_INTERCEPT).astype(np.int16).tobytes()
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = sop_uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta = meta
        out.append(ds)
    return out


def _segmentation(ph: Phantom, ids: _Ids, ct: list[Dataset]) -> hd.seg.Segmentation:
    """The truth SEG (PS3.3 A.51): BINARY, one segment per nodule, label-map input."""
    algorithm = hd.AlgorithmIdentificationSequence(
        name="PreRead phantom generator",
        family=codes.cid7162.MorphologicalOperations,
        version=GENERATOR_VERSION,
        source="PreRead",
        parameters={"label": "voxel centre inside the analytic nodule surface"},
    )
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=n.label,
            segment_label=f"Nodule {n.label}",
            segmented_property_category=_CATEGORY,
            segmented_property_type=_NODULE,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm,
            tracking_id=f"nodule-{n.label}",
            tracking_uid=ids.uid(f"tracking-{n.label}"),
            anatomic_regions=[codes.SCT.Lung],
        )
        for n in ph.nodules
        if not n.calcified  # calcified nodules are not in the label map
    ]
    seg = hd.seg.Segmentation(
        source_images=ct,
        pixel_array=ph.label,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=ids.uid("seg-series"),
        series_number=100,
        sop_instance_uid=ids.uid("seg-instance"),
        instance_number=1,
        manufacturer=MANUFACTURER,
        manufacturer_model_name="PreRead phantom",
        software_versions=GENERATOR_VERSION,
        device_serial_number=f"phantom-{GENERATOR_VERSION}",
        content_description="Phantom ground truth",
        content_label="TRUTH",
        omit_empty_frames=bool(ph.label.any()),  # all-empty: keep the frames, quietly
        content_date=ids.date,
        content_time="090000",
        series_date=ids.date,
        series_time="090000",
    )
    # highdicom stamps "now" (three times) and a random dimension organisation UID: fix them
    seg.InstanceCreationDate, seg.InstanceCreationTime = DA(ids.date), TM("090000")
    seg.PatientIdentityRemoved, seg.DeidentificationMethod = "YES", _SYNTHETIC
    for item in seg.get("ContributingEquipmentSequence", []):
        if "ContributionDateTime" in item:
            item.ContributionDateTime = DT(f"{ids.date}090000")
    dim_uid = ids.uid("seg-dimension-organisation")
    for item in (*seg.DimensionOrganizationSequence, *seg.DimensionIndexSequence):
        item.DimensionOrganizationUID = dim_uid
    return seg


def _truth(ph: Phantom, study_uid: str, series_uid: str, has_seg: bool) -> dict[str, object]:
    g = ph.volume.geometry
    return {
        "generator_version": GENERATOR_VERSION,
        "seed": ph.seed,
        "study_instance_uid": study_uid,
        "series_instance_uid": series_uid,
        "patient_position": ph.patient_position,
        "pixel_spacing": [g.spacing[1], g.spacing[2]],
        "slice_thickness": g.spacing[0],
        "n_slices": g.shape[0],
        "matrix": [g.shape[1], g.shape[2]],
        "image_orientation_patient": g.image_orientation,
        "noise_sd_hu": ph.noise_sd_hu,
        "coordinate_system": "DICOM patient LPS, mm",
        "label_definition": "voxel centre inside the analytic nodule surface",
        "volume_method": "analytic volume of the nodule surface (numerical quadrature), "
        "not a voxel count",
        "long_axis_method": "largest 3-D distance between two points of the nodule surface",
        "nodules": [
            {
                "label": n.label,
                "center_lps_mm": list(n.center_lps_mm),
                "long_axis_mm": n.long_axis_mm,
                "volume_mm3": n.volume_mm3,
                "type": n.type,
                "attached_to": n.attached_to,
                "calcified": n.calcified,
                "segment_number": n.label if has_seg and not n.calcified else None,
            }
            for n in ph.nodules
        ],
    }


def safe_name(patient_id: str) -> str:
    """A patient ID made safe for a folder name."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", patient_id) or "phantom"


def write_phantom_study(
    phantom: Phantom,
    out_dir: Path,
    *,
    patient_id: str | None = None,
    study_date: datetime.date | None = None,
    folder: str | None = None,
) -> StudyFiles:
    """Write ``phantom`` under ``out_dir/<patient id>/`` (see the module docstring).

    ``study_date``: the StudyDate (default: derived from the seed); a given date also enters
    every UID, so two studies of one patient written with different dates differ in all UIDs
    but share the PatientID. ``folder``: the study folder's name under ``out_dir`` (default:
    the patient ID made safe for a file name).
    """
    ids = _ids(phantom, patient_id, study_date)
    study_dir = Path(out_dir) / (folder or safe_name(ids.patient_id))
    ct_dir = study_dir / "ct"
    ct_dir.mkdir(parents=True, exist_ok=True)
    for stale in ct_dir.glob("CT*.dcm"):
        stale.unlink()
    study_uid, series_uid = ids.uid("study"), ids.uid("ct-series")
    ct = _ct_slices(phantom, ids, study_uid, series_uid, ids.uid("frame-of-reference"))
    for k, ds in enumerate(ct, start=1):
        ds.save_as(ct_dir / f"CT{k:06d}.dcm", enforce_file_format=True)
    seg_path: Path | None = study_dir / "seg.dcm"
    assert seg_path is not None
    if any(not n.calcified for n in phantom.nodules):
        _segmentation(phantom, ids, ct).save_as(seg_path, enforce_file_format=True)
    else:
        seg_path.unlink(missing_ok=True)
        seg_path = None
    truth_path = study_dir / "truth.json"
    truth = _truth(phantom, study_uid, series_uid, seg_path is not None)
    truth_path.write_text(json.dumps(truth, indent=2) + "\n")
    return StudyFiles(study_dir, ct_dir, seg_path, truth_path, study_uid, series_uid)


def write_phantoms(
    out: Path,
    count: int,
    seed: int,
    *,
    matrix: int = 512,
    max_slices: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[StudyFiles]:
    """Generate and write phantoms ``seed … seed + count - 1``.

    ``progress`` is called with 1 after each study is written (an increment, as for
    ``rich.progress.Progress.advance``).
    """
    studies = []
    for i in range(count):
        ph = generate_phantom(seed + i, matrix=matrix, max_slices=max_slices)
        studies.append(write_phantom_study(ph, Path(out)))
        if progress is not None:
            progress(1)
    return studies
