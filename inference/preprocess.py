"""From a CT :class:`~preread.domain.Volume` to the network's input, and back.

:func:`to_model_grid` reorients a series to the canonical grid (axis permutation and flips; see
:mod:`inference.grid`), resamples it linearly to the card's spacing and windows it to [0, 1].
:func:`to_source_grid` brings a model-grid map (probabilities, labels) back onto the series'
own voxels (:func:`labels_to_source_grid` does it for a sparse label map, box by box);
:func:`labels_to_model_grid` takes annotation labels the other way (used by the training side,
so that training and serving share one resampler).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, TypeVar, overload

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from inference.card import InputSpec, IntensityWindow
from inference.errors import PreprocessError
from inference.grid import MAX_GRID_VOXELS, box_corners, covering_box, model_grid_geometry
from inference.resample import Order, ScalarT, resample
from preread.domain import Geometry, Volume

LabelT = TypeVar("LabelT", bound=np.integer[Any] | np.bool_)
_TIE = 1e-4


@dataclass(frozen=True)
class ModelInput:
    """A series on the model grid.

    ``array`` is the windowed intensity in [0, 1] the network reads; ``hu`` the same voxels in
    Hounsfield units (for measurements); ``geometry`` maps their (k, j, i) indices to LPS.
    """

    array: npt.NDArray[np.float32]
    hu: npt.NDArray[np.float32]
    geometry: Geometry


def window(hu: npt.NDArray[np.float32], intensity: IntensityWindow) -> npt.NDArray[np.float32]:
    """Map ``[window_min_hu, window_max_hu]`` linearly onto [0, 1], clipping outside."""
    lo, hi = intensity.window_min_hu, intensity.window_max_hu
    out = np.subtract(hu, np.float32(lo), dtype=np.float32)
    out *= np.float32(1.0 / (hi - lo))
    np.clip(out, 0.0, 1.0, out=out)
    return out


def to_model_grid(
    volume: Volume, spec: InputSpec, *, max_voxels: int = MAX_GRID_VOXELS
) -> ModelInput:
    """Put ``volume`` on the model grid described by the card's ``input`` section.

    The grid is canonical (``k`` → +z, ``j`` → +y, ``i`` → +x), has ``spec.spacing_mm`` (z, y, x)
    spacing and the same origin as the series' first canonical voxel (see
    :func:`inference.grid.model_grid_geometry`); values are linearly interpolated.

    Raises:
        PreprocessError: the series is oblique, or its grid would exceed ``max_voxels``.
    """
    geometry = model_grid_geometry(volume.geometry, spec.spacing_mm, max_voxels=max_voxels)
    hu = resample(volume.array, volume.geometry, geometry, order=1)
    return ModelInput(array=window(hu, spec.intensity), hu=hu, geometry=geometry)


@overload
def to_source_grid(
    model_array: npt.NDArray[Any],
    model_geometry: Geometry,
    source_geometry: Geometry,
    order: Literal[1],
    *,
    fill: float = 0.0,
) -> npt.NDArray[np.float32]: ...
@overload
def to_source_grid(
    model_array: npt.NDArray[ScalarT],
    model_geometry: Geometry,
    source_geometry: Geometry,
    order: Literal[0],
    *,
    fill: float = 0.0,
) -> npt.NDArray[ScalarT]: ...
def to_source_grid(
    model_array: npt.NDArray[Any],
    model_geometry: Geometry,
    source_geometry: Geometry,
    order: Order,
    *,
    fill: float = 0.0,
) -> npt.NDArray[Any]:
    """A model-grid map resampled onto the series' own grid.

    Use ``order=1`` for probabilities (float32 result) and ``order=0`` for labels (dtype kept).
    Series voxels beyond the model grid's last voxel by less than one model voxel (the model grid
    stops short of the series' far edge) take the edge value; farther ones take ``fill``.
    """
    if order == 0:
        return resample(
            model_array, model_geometry, source_geometry, order=0, fill=fill, edge_tolerance=1.0
        )
    return resample(
        model_array, model_geometry, source_geometry, order=1, fill=fill, edge_tolerance=1.0
    )


def labels_to_source_grid(
    labels: npt.NDArray[LabelT],
    model_geometry: Geometry,
    source_geometry: Geometry,
    *,
    dtype: npt.DTypeLike | None = None,
) -> npt.NDArray[Any]:
    """A model-grid label map (0 = background) on the series' own grid, by nearest neighbour.

    The same voxels as ``to_source_grid(labels, ..., order=0)``, but only the bounding box of
    each label is resampled (a few nodules in a 512×512×300 series: milliseconds instead of
    resampling 78 million background voxels), and the result can be given a smaller ``dtype``
    (``uint8`` when fewer than 256 labels).
    """
    if tuple(labels.shape) != model_geometry.shape:
        raise PreprocessError(
            f"labels shape {labels.shape} does not match the model grid {model_geometry.shape}"
        )
    out_dtype = np.dtype(labels.dtype if dtype is None else dtype)
    out = np.zeros(source_geometry.shape, dtype=out_dtype)
    ints = labels.view(np.uint8) if labels.dtype == np.bool_ else labels
    for value, box in enumerate(ndimage.find_objects(ints), start=1):
        if box is None:
            continue
        if np.iinfo(out_dtype).max < value:
            raise PreprocessError(f"label {value} does not fit {out_dtype}")
        crop = _grow(box, model_geometry.shape)  # a zero margin where the grid goes on
        # every source voxel whose nearest model voxel may lie in the crop, including those up
        # to one model voxel beyond the grid's far edge (which to_source_grid gives the edge)
        lo = [r.start - 1 for r in crop]
        hi = [r.stop for r in crop]
        reach = np.array(
            [[k, j, i] for k in (lo[0], hi[0]) for j in (lo[1], hi[1]) for i in (lo[2], hi[2])],
            dtype=np.float64,
        )
        target = covering_box(model_geometry.index_to_lps(reach), source_geometry)
        if target is None:
            continue
        mask = (labels[crop] == labels.dtype.type(value)).view(np.uint8)
        hit = resample(
            mask,
            model_geometry.crop(crop),
            source_geometry.crop(target),
            order=0,
            edge_tolerance=1.0,
        )
        out[target][hit.astype(bool)] = value
    return out


def labels_to_model_grid(
    labels: npt.NDArray[LabelT],
    source_geometry: Geometry,
    model_geometry: Geometry,
    method: Literal["linear", "nearest"] = "linear",
) -> npt.NDArray[LabelT]:
    """Annotation labels (0 = background; integer or boolean) resampled onto the model grid,
    dtype kept.

    ``"linear"``: each label's indicator is linearly interpolated (within its bounding box) and
    the label is kept where it exceeds 0.5; exact ties (a target voxel half way between a voxel
    inside and one outside, common when slices are upsampled by 2) are settled by the nearest
    voxel, so that the volume is not biased. ``"nearest"``: nearest-neighbour lookup.
    """
    if tuple(labels.shape) != source_geometry.shape:
        raise PreprocessError(
            f"labels shape {labels.shape} does not match the series {source_geometry.shape}"
        )
    if method == "nearest":
        return resample(labels, source_geometry, model_geometry, order=0)
    out = np.zeros(model_geometry.shape, dtype=labels.dtype)
    ints = labels.view(np.uint8) if labels.dtype == np.bool_ else labels
    boxes = ndimage.find_objects(ints)  # negative values are ignored
    for value, box in enumerate(boxes, start=1):
        if box is None:
            continue
        src_box = _grow(box, source_geometry.shape)
        tgt_box = covering_box(source_geometry.index_to_lps(box_corners(src_box)), model_geometry)
        if tgt_box is None:
            continue
        sub_src = source_geometry.crop(src_box)
        sub_tgt = model_geometry.crop(tgt_box)
        mask = (labels[src_box] == value).astype(np.float32)
        frac = resample(mask, sub_src, sub_tgt, order=1)
        keep = frac > 0.5 + _TIE
        tie = np.abs(frac - 0.5) <= _TIE
        if tie.any():  # exactly half way between inside and outside: ask the nearest voxel
            near = resample(mask, sub_src, sub_tgt, order=0)
            keep |= tie & (near > 0.5)
        out[tgt_box][keep] = value
    return out


def _grow(box: tuple[slice, ...], shape: tuple[int, int, int]) -> tuple[slice, slice, slice]:
    s = [slice(max(b.start - 1, 0), min(b.stop + 1, n)) for b, n in zip(box, shape, strict=True)]
    return (s[0], s[1], s[2])
