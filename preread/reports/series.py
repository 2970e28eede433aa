"""What the SEG and SR encoders share: the result type, the labelling texts, source images.

Both objects go into new series of the original study (PS3.3 C.7.3.1), so a viewer shows
them next to the images that were read, and both say in every text a viewer shows that they
are AI-generated and preliminary.

A source slice is a :class:`SourceFrame`: a single-frame image (CT Image), or one frame of a
multi-frame image (Enhanced CT, Legacy Converted Enhanced CT; PS3.3 A.38, A.70) with the
position and orientation its functional groups give that frame. Slice ``k`` of the volume
read is ``order_sources(...)[k]``, by the gateway's own rule, so a reference to slice ``k``
names the instance and, for a multi-frame image, the frame (Referenced Frame Number).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset
from pydicom.valuerep import DSfloat

from dicom_gateway.errors import SeriesError
from dicom_gateway.selection import PREREAD_SERIES_PREFIX
from dicom_gateway.volume import frame_item, slice_planes
from preread.domain import ModelRef, PreReadResult
from preread.reports.errors import ReportError

__all__ = [
    "AI_NOTICE",
    "MANUFACTURER",
    "EncodedSeries",
    "InstanceRef",
    "OrderedSources",
    "SourceFrame",
    "SourceImages",
    "lo",
    "order_sources",
    "series_description",
    "source_frames",
    "source_instances",
    "sources_for",
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


@dataclass(frozen=True, eq=False)
class SourceFrame:
    """One slice of the series read: a single-frame image, or one frame of a multi-frame image.

    ``position`` (ImagePositionPatient), the direction cosines (ImageOrientationPatient) and
    ``pixel_spacing`` (PixelSpacing: row spacing, column spacing; mm) are the slice's own: a
    multi-frame image's from the functional groups that apply to the frame.
    """

    dataset: Dataset
    #: the frame in ``dataset`` (1 for the first, PS3.3 C.7.6.6); None for a single-frame image
    frame_number: int | None
    position: tuple[float, float, float]
    row_direction: tuple[float, float, float]
    column_direction: tuple[float, float, float]
    pixel_spacing: tuple[float, float]

    @property
    def sop_instance_uid(self) -> str:
        return str(self.dataset.SOPInstanceUID)

    @property
    def sop_class_uid(self) -> str:
        return str(self.dataset.SOPClassUID)

    @property
    def key(self) -> tuple[str, int | None]:
        """(SOPInstanceUID, frame number): what a reference to this slice names."""
        return self.sop_instance_uid, self.frame_number

    @property
    def referenced_frame_numbers(self) -> list[int] | None:
        """highdicom's ``referenced_frame_numbers`` of a reference to this slice."""
        return None if self.frame_number is None else [self.frame_number]

    @property
    def normal(self) -> npt.NDArray[np.float64]:
        """The slice normal ``row × column`` (PS3.3 C.7.6.2.1.1)."""
        return np.cross(self.row_direction, self.column_direction)

    def describe(self) -> str:
        """ "1.2.3" or "1.2.3 frame 7": how texts and errors name the slice."""
        frame = "" if self.frame_number is None else f" frame {self.frame_number}"
        return f"{self.sop_instance_uid}{frame}"

    def plane_header(self) -> Dataset:
        """The slice as a single-frame image's header: the instance's identifiers, Modality,
        FrameOfReferenceUID, Rows and Columns, and the slice's Image Plane attributes (PS3.3
        C.7.6.2; SliceThickness and SpacingBetweenSlices from the frame's Pixel Measures when
        they are there). For a single-frame image, the dataset itself."""
        if self.frame_number is None:
            return self.dataset
        ds = Dataset()
        for keyword in (
            "SOPClassUID",
            "SOPInstanceUID",
            "Modality",
            "FrameOfReferenceUID",
            "Rows",
            "Columns",
        ):
            if keyword in self.dataset:
                setattr(ds, keyword, self.dataset[keyword].value)
        ds.ImagePositionPatient = _ds(self.position)
        ds.ImageOrientationPatient = _ds((*self.row_direction, *self.column_direction))
        ds.PixelSpacing = _ds(self.pixel_spacing)
        measures = frame_item(self.dataset, self.frame_number - 1, "PixelMeasuresSequence")
        for keyword in ("SliceThickness", "SpacingBetweenSlices"):
            value = None if measures is None else measures.get(keyword)
            if value is None:
                value = self.dataset.get(keyword)
            if value is not None:
                setattr(ds, keyword, value)
        return ds


def lo(text: str) -> str:
    """``text`` cut to a Long String's 64 characters (an ellipsis marks the cut)."""
    return text if len(text) <= _LO_MAX else text[: _LO_MAX - 3] + "..."


def series_description(model: ModelRef) -> str:
    """Series Description (ASCII, so that no Specific Character Set is needed)."""
    return lo(f"{PREREAD_SERIES_PREFIX} (preliminary) - {model.id} {model.version}")


def source_frames(datasets: Sequence[Dataset]) -> list[SourceFrame]:
    """Every slice of ``datasets`` in array order: ``frames[k]`` is the image that
    :func:`dicom_gateway.volume.assemble_volume` puts at ``array[k]``.

    The gateway's own rule (:func:`dicom_gateway.volume.slice_planes`): sorted along the slice
    normal ``row × column`` (ImageOrientationPatient, PS3.3 C.7.6.2.1.1); each frame of a
    multi-frame image placed by its Plane Position and Plane Orientation functional groups
    (PS3.3 C.7.6.16.2.3-4). Headers suffice.

    Raises:
        ReportError: no images, or headers that do not place every slice on one regular grid.
    """
    if not datasets:
        raise ReportError("no source images given")
    try:
        planes = slice_planes(datasets)
    except SeriesError as exc:
        raise ReportError(f"the source images do not form one volume: {exc.reason}") from exc
    return [
        SourceFrame(
            dataset=datasets[plane.dataset],
            frame_number=plane.frame_number,
            position=_triple(plane.position),
            row_direction=_triple(plane.orientation[:3]),
            column_direction=_triple(plane.orientation[3:]),
            pixel_spacing=plane.pixel_spacing,
        )
        for plane in planes
    ]


def order_sources(result: PreReadResult, datasets: Sequence[Dataset]) -> list[SourceFrame]:
    """The slices of the source images in array order (:func:`source_frames`), checked
    against ``result``.

    Raises:
        ReportError: no images, images of another study, series or frame of reference than
            ``result``, or headers that do not place every slice on one regular grid.
    """
    if not datasets:
        raise ReportError("no source images given")
    for ds in datasets:
        sop = str(ds.get("SOPInstanceUID", "?"))
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
    return source_frames(datasets)


@dataclass(frozen=True)
class OrderedSources:
    """The source images of one result in array order, checked against it once
    (:meth:`of`) and then shared by the encoders of that reading: the SEG, the SR, the key
    images and the KOS each ordered the series again otherwise (~0.08 s each for 300 slices)."""

    study_instance_uid: str
    series_instance_uid: str
    frame_of_reference_uid: str
    frames: tuple[SourceFrame, ...]

    @classmethod
    def of(cls, result: PreReadResult, datasets: Sequence[Dataset]) -> OrderedSources:
        """``datasets`` ordered and checked by :func:`order_sources` (its errors)."""
        return cls(
            result.study_instance_uid,
            result.series_instance_uid,
            result.frame_of_reference_uid,
            tuple(order_sources(result, datasets)),
        )


#: What an encoder takes as its source images: the datasets of the series read, in any order,
#: or those already ordered for the result (:class:`OrderedSources`)
SourceImages = Sequence[Dataset] | OrderedSources


def sources_for(result: PreReadResult, images: SourceImages) -> list[SourceFrame]:
    """The slices of ``images`` in array order, checked against ``result``
    (:func:`order_sources`; :class:`OrderedSources` were checked when made, for the result
    they name).

    Raises:
        ReportError: as :func:`order_sources`, or ordered sources made for another result.
    """
    if not isinstance(images, OrderedSources):
        return order_sources(result, images)
    made_for = (
        images.study_instance_uid,
        images.series_instance_uid,
        images.frame_of_reference_uid,
    )
    expected = (
        result.study_instance_uid,
        result.series_instance_uid,
        result.frame_of_reference_uid,
    )
    if made_for != expected:
        raise ReportError(
            f"the source images were ordered for study, series and frame of reference "
            f"{', '.join(made_for)}; the result was read from {', '.join(expected)}"
        )
    return list(images.frames)


def source_instances(frames: Sequence[SourceFrame]) -> list[Dataset]:
    """The instances ``frames`` lie on, each once, in the order of their first frame."""
    seen: dict[str, Dataset] = {}
    for frame in frames:
        seen.setdefault(frame.sop_instance_uid, frame.dataset)
    return list(seen.values())


def _ds(values: Sequence[float]) -> list[DSfloat]:
    """Decimal Strings of at most 16 characters (PS3.5 6.2)."""
    return [DSfloat(v, auto_format=True) for v in values]


def _triple(values: Sequence[float] | npt.NDArray[np.float64]) -> tuple[float, float, float]:
    return (float(values[0]), float(values[1]), float(values[2]))
