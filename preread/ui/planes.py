"""The review page's pictures: axial, coronal and sagittal planes of a series as PNG.

Pure functions on arrays. A series (any axis-aligned orientation, :func:`dicom_gateway.volume.
assemble_volume`'s ``array[k, j, i]``) is seen through :class:`Oriented`, a view of the same
voxels in patient order ``[z, y, x]`` (each index increasing towards Superior, Posterior, Left:
PS3.3 C.7.6.2.1.1), without a copy. The planes are shown as radiologists read them:

* **axial** — rows anterior → posterior, columns the patient's right → left (the patient's
  right on the image's left);
* **coronal** — rows superior → inferior, columns right → left;
* **sagittal** — rows superior → inferior, columns anterior → posterior.

Axial slices are numbered for scrolling from the top of the series: slice 0 is the most
superior (:meth:`Oriented.axial_index`).

A key image (:func:`key_png`) is a square field of :data:`FIELD_MM` around a finding's centre
(padded with air at the series' edge, so the finding stays in the middle), in the lung window,
enlarged by a whole factor to at least :data:`KEY_IMAGE_MIN_WIDTH` pixels, with the contour of
the finding's voxels drawn by :func:`preread.reports.render.render_key_image` in its contour
colour. A slice (:func:`slice_png`) is a whole axial plane with the contours of every finding on
it.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import numpy.typing as npt
from PIL import Image

from inference.errors import PreprocessError
from inference.grid import axis_alignment
from preread.domain import Geometry, Vec3
from preread.reports.render import LUNG_WINDOW, render_key_image

__all__ = [
    "AIR_HU",
    "FIELD_MM",
    "KEY_IMAGE_MIN_WIDTH",
    "SLICE_MIN_WIDTH",
    "Oriented",
    "Plane",
    "key_png",
    "png",
    "slice_png",
]

FIELD_MM = 90.0
"""Side of a key image's field around the finding's centre (mm)."""
KEY_IMAGE_MIN_WIDTH = 360
SLICE_MIN_WIDTH = 512
AIR_HU = -1024.0
DISPLAY_TOLERANCE = 0.3
"""How far (length of the off-axis components) a series' axes may tilt from the patient axes
and still be shown as axial/coronal/sagittal planes (a tilted gantry)."""

Voxels = npt.NDArray[np.int32]
"""(n, 3) voxel indices ``[z, y, x]`` in :class:`Oriented` order."""


class Plane(StrEnum):
    AXIAL = "axial"
    CORONAL = "coronal"
    SAGITTAL = "sagittal"


@dataclass(frozen=True)
class Oriented:
    """A series' voxels in patient order ``hu[z, y, x]`` (a view of the source array) and how
    its indices map back to the source grid (``geometry``)."""

    hu: npt.NDArray[np.float32]
    geometry: Geometry
    axes: tuple[int, int, int]
    """For each of z, y, x: the source array axis (0 = k, 1 = j, 2 = i)."""
    flipped: tuple[bool, bool, bool]
    """For each of z, y, x: whether the source axis runs the other way."""

    @classmethod
    def of(cls, array: npt.NDArray[np.float32], geometry: Geometry) -> Oriented:
        """``array`` on ``geometry`` in patient order.

        Raises:
            ValueError: the series is oblique beyond :data:`DISPLAY_TOLERANCE`.
        """
        try:
            align = axis_alignment(geometry, DISPLAY_TOLERANCE)
        except PreprocessError as exc:
            raise ValueError(str(exc)) from exc
        axes = tuple(align.patient_axis.index(2 - c) for c in range(3))
        flipped = tuple(align.sign[a] < 0 for a in axes)
        view = np.transpose(array, axes)
        for c, flip in enumerate(flipped):
            if flip:
                view = np.flip(view, axis=c)
        return cls(
            view, geometry, (axes[0], axes[1], axes[2]), (flipped[0], flipped[1], flipped[2])
        )

    @property
    def shape(self) -> tuple[int, int, int]:
        z, y, x = self.hu.shape
        return (int(z), int(y), int(x))

    @property
    def spacing(self) -> tuple[float, float, float]:
        """(z, y, x) spacing in mm."""
        s = self.geometry.spacing
        return (s[self.axes[0]], s[self.axes[1]], s[self.axes[2]])

    def to_source(self, zyx: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """(…, 3) indices ``[z, y, x]`` (possibly fractional) → source ``[k, j, i]``."""
        p = np.asarray(zyx, dtype=np.float64)
        out = np.empty_like(p)
        for c in range(3):
            a = self.axes[c]
            n = self.geometry.shape[a]
            out[..., a] = (n - 1 - p[..., c]) if self.flipped[c] else p[..., c]
        return out

    def from_source(self, kji: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """(…, 3) source indices ``[k, j, i]`` → ``[z, y, x]``."""
        p = np.asarray(kji, dtype=np.float64)
        out = np.empty_like(p)
        for c in range(3):
            a = self.axes[c]
            n = self.geometry.shape[a]
            out[..., c] = (n - 1 - p[..., a]) if self.flipped[c] else p[..., a]
        return out

    def to_lps(self, zyx: npt.ArrayLike) -> Vec3:
        point = self.geometry.index_to_lps(self.to_source(zyx))
        return (float(point[0]), float(point[1]), float(point[2]))

    def from_lps(self, lps: Vec3) -> npt.NDArray[np.float64]:
        return self.from_source(self.geometry.lps_to_index(np.asarray(lps, dtype=np.float64)))

    @property
    def slices(self) -> int:
        """How many axial slices there are to scroll."""
        return self.shape[0]

    def axial_index(self, z: int) -> int:
        """The scroll index of axial plane ``z`` (0: the most superior); its own inverse."""
        return self.slices - 1 - z

    def plane(self, plane: Plane, at: int) -> tuple[npt.NDArray[np.float32], tuple[float, float]]:
        """The 2-D plane ``plane`` through index ``at`` (z, y or x) as displayed, with its
        (row, column) spacing."""
        sz, sy, sx = self.spacing
        if plane is Plane.AXIAL:
            return self.hu[at, :, :], (sy, sx)
        if plane is Plane.CORONAL:
            return self.hu[::-1, at, :], (sz, sx)
        return self.hu[::-1, :, at], (sz, sy)

    def plane_position(self, plane: Plane, zyx: npt.NDArray[np.int64]) -> tuple[int, int, int]:
        """(index of the plane through ``zyx``, row, column of ``zyx`` in it)."""
        z, y, x = (int(v) for v in zyx)
        top = self.shape[0] - 1 - z
        if plane is Plane.AXIAL:
            return z, y, x
        if plane is Plane.CORONAL:
            return y, top, x
        return x, top, y

    def plane_mask(self, plane: Plane, at: int, voxels: Iterable[Voxels]) -> npt.NDArray[np.bool_]:
        """The displayed plane ``plane`` through ``at`` with ``voxels`` (``[z, y, x]``) set."""
        nz, ny, nx = self.shape
        rows, cols = {Plane.AXIAL: (ny, nx), Plane.CORONAL: (nz, nx), Plane.SAGITTAL: (nz, ny)}[
            plane
        ]
        mask = np.zeros((rows, cols), dtype=bool)
        axis = {Plane.AXIAL: 0, Plane.CORONAL: 1, Plane.SAGITTAL: 2}[plane]
        for v in voxels:
            on = v[v[:, axis] == at]
            if not len(on):
                continue
            if plane is Plane.AXIAL:
                mask[on[:, 1], on[:, 2]] = True
            elif plane is Plane.CORONAL:
                mask[nz - 1 - on[:, 0], on[:, 2]] = True
            else:
                mask[nz - 1 - on[:, 0], on[:, 1]] = True
        return mask


def _field(
    values: npt.NDArray[np.float32],
    mask: npt.NDArray[np.bool_],
    centre: tuple[int, int],
    half: tuple[int, int],
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_]]:
    """The ``(2 half + 1)``-sided window of ``values`` and ``mask`` around ``centre``, padded
    with air and nothing where it leaves the plane."""
    rows, cols = 2 * half[0] + 1, 2 * half[1] + 1
    out = np.full((rows, cols), AIR_HU, dtype=np.float32)
    out_mask = np.zeros((rows, cols), dtype=bool)
    r0, c0 = centre[0] - half[0], centre[1] - half[1]
    src_r = slice(max(r0, 0), min(r0 + rows, values.shape[0]))
    src_c = slice(max(c0, 0), min(c0 + cols, values.shape[1]))
    dst_r = slice(src_r.start - r0, src_r.stop - r0)
    dst_c = slice(src_c.start - c0, src_c.stop - c0)
    if src_r.stop > src_r.start and src_c.stop > src_c.start:
        out[dst_r, dst_c] = values[src_r, src_c]
        out_mask[dst_r, dst_c] = mask[src_r, src_c]
    return out, out_mask


def png(rgb: npt.NDArray[np.uint8]) -> bytes:
    """An RGB array as PNG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buffer, format="PNG", compress_level=3)
    return buffer.getvalue()


def key_png(
    oriented: Oriented,
    plane: Plane,
    centre_lps: Vec3,
    voxels: Voxels,
    *,
    field_mm: float = FIELD_MM,
    min_width: int = KEY_IMAGE_MIN_WIDTH,
) -> bytes:
    """The key image of a finding (the module docstring) as PNG: ``plane`` through the voxel
    nearest ``centre_lps``, ``field_mm`` wide, with the contour of ``voxels``."""
    centre = np.rint(oriented.from_lps(centre_lps)).astype(np.int64)
    centre = np.clip(centre, 0, np.asarray(oriented.shape) - 1)
    at, row, col = oriented.plane_position(plane, centre)
    values, spacing = oriented.plane(plane, at)
    mask = oriented.plane_mask(plane, at, [voxels])
    half = (
        max(1, math.ceil(field_mm / 2 / spacing[0])),
        max(1, math.ceil(field_mm / 2 / spacing[1])),
    )
    window, window_mask = _field(values, mask, (row, col), half)
    rendered = render_key_image(
        window, window_mask, [], spacing, window=LUNG_WINDOW, min_width=min_width
    )
    return png(rendered.rgb)


def slice_png(
    oriented: Oriented, index: int, voxels: Iterable[Voxels], *, min_width: int = SLICE_MIN_WIDTH
) -> bytes:
    """Axial slice ``index`` (0: the most superior) in the lung window with the contours of
    ``voxels`` on it, as PNG (``min_width`` wide at least)."""
    z = oriented.axial_index(index)
    values, spacing = oriented.plane(Plane.AXIAL, z)
    mask = oriented.plane_mask(Plane.AXIAL, z, voxels)
    rendered = render_key_image(values, mask, [], spacing, window=LUNG_WINDOW, min_width=min_width)
    return png(rendered.rgb)
