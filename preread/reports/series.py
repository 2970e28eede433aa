"""What the SEG and SR encoders share: the result type, the labelling texts, source images.

Both objects go into new series of the original study (PS3.3 C.7.3.1), so a viewer shows
them next to the images that were read, and both say in every text a viewer shows that they
are AI-generated and preliminary.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset

from dicom_gateway.selection import PREREAD_SERIES_PREFIX
from preread.domain import ModelRef, PreReadResult
from preread.reports.errors import ReportError

__all__ = [
    "AI_NOTICE",
    "MANUFACTURER",
    "EncodedSeries",
    "InstanceRef",
    "lo",
    "order_sources",
    "series_description",
]

MANUFACTURER = "PreRead"
AI_NOTICE = "AI-generated, preliminary result; not verified by a radiologist."
_LO_MAX = 64  # Long String (PS3.5 6.2)


@dataclass(frozen=True)
class InstanceRef:
    """Where one stored instance is: enough for a Hierarchical SOP Instance Reference (C.17.2)."""

    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str
    sop_class_uid: str


@dataclass(frozen=True)
class EncodedSeries:
    """One encoded DICOM instance, alone in its new series of the original study."""

    dataset: Dataset
    series_instance_uid: str
    sop_instance_uid: str

    @property
    def ref(self) -> InstanceRef:
        """A reference to this instance (pass it as ``supersedes`` when replacing an SR)."""
        return InstanceRef(
            study_instance_uid=str(self.dataset.StudyInstanceUID),
            series_instance_uid=self.series_instance_uid,
            sop_instance_uid=self.sop_instance_uid,
            sop_class_uid=str(self.dataset.SOPClassUID),
        )


def lo(text: str) -> str:
    """``text`` cut to a Long String's 64 characters (an ellipsis marks the cut)."""
    return text if len(text) <= _LO_MAX else text[: _LO_MAX - 3] + "..."


def series_description(model: ModelRef) -> str:
    """Series Description (ASCII, so that no Specific Character Set is needed)."""
    return lo(f"{PREREAD_SERIES_PREFIX} (preliminary) - {model.id} {model.version}")


def order_sources(result: PreReadResult, datasets: Sequence[Dataset]) -> list[Dataset]:
    """The source images in array order: slice ``k`` of the assembled volume first.

    Uses the rule of :func:`dicom_gateway.volume.assemble_volume`: sort by the position
    along the slice normal ``row × column`` (ImageOrientationPatient, PS3.3 C.7.6.2.1.1).

    Raises:
        ReportError: no images, multi-frame images (not supported yet), images of another
            study, series or frame of reference than ``result``, or no plane geometry.
    """
    if not datasets:
        raise ReportError("no source images given")
    for ds in datasets:
        sop = str(ds.get("SOPInstanceUID", "?"))
        if int(ds.get("NumberOfFrames") or 1) != 1:
            raise ReportError(
                f"source image {sop} is a multi-frame image ({ds.get('NumberOfFrames')} frames): "
                "PreRead writes its SR and SEG for series of single-frame images only"
            )
        for keyword, expected in (
            ("StudyInstanceUID", result.study_instance_uid),
            ("SeriesInstanceUID", result.series_instance_uid),
            ("FrameOfReferenceUID", result.frame_of_reference_uid),
        ):
            if str(ds.get(keyword, "")) != expected:
                raise ReportError(
                    f"source image {sop} has {keyword} {ds.get(keyword)!s}, "
                    f"the result was read from {expected}"
                )
        if "ImagePositionPatient" not in ds or "ImageOrientationPatient" not in ds:
            raise ReportError(f"source image {sop} has no ImagePosition/OrientationPatient")
    orientation = np.asarray(datasets[0].ImageOrientationPatient, dtype=np.float64)
    normal = np.cross(orientation[:3], orientation[3:])
    return sorted(
        datasets,
        key=lambda ds: float(np.asarray(ds.ImagePositionPatient, dtype=np.float64) @ normal),
    )
