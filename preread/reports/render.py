"""Key images as pictures: a CT plane in a display window, a finding's contour, text beside it.

Pure functions on arrays (no DICOM, no I/O). The Secondary Capture encoder
(:mod:`preread.reports.keyimages`) draws the axial slice through each finding's centre; the
review page can draw axial, coronal and sagittal planes of the same volume with the same
function, since it takes any 2-D plane and its pixel spacing.

The picture is the plane on square display pixels (a plane with anisotropic spacing, e.g. a
coronal plane of 1.25 mm slices of 0.7 mm pixels, is stretched to its true proportions by
pixel replication), enlarged by a whole factor when it is narrower than ``min_width``, with
the contour of the mask drawn in :data:`CONTOUR_RGB` on the mask's boundary pixels, and a
black text band *below* the plane, so that the text never covers the finding or any anatomy.
An axial CT slice of 512 × 512 square pixels comes out at its own resolution: its pixel
``(r, c)`` is the source pixel ``(r, c)``, and the contour lies exactly on the boundary pixels
of the mask.

Windowing is the linear VOI function of PS3.3 C.11.2.1.2.1 with Window Center/Width; the
lung window is the usual W 1500 / L -600.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

__all__ = [
    "BAND_RGB",
    "CONTOUR_RGB",
    "LUNG_WINDOW",
    "TEXT_RGB",
    "RenderedImage",
    "Window",
    "boundary",
    "render_key_image",
]

RGB = tuple[int, int, int]
CONTOUR_RGB: RGB = (255, 255, 0)
"""The contour's colour: pure yellow, which no grey pixel of the plane or the text has."""
TEXT_RGB: RGB = (255, 255, 255)
BAND_RGB: RGB = (0, 0, 0)


@dataclass(frozen=True)
class Window:
    """A display window in the plane's units (HU for CT): PS3.3 C.11.2.1.2 Center / Width."""

    center: float
    width: float

    def __post_init__(self) -> None:
        if not self.width >= 1:
            raise ValueError(f"window width must be >= 1, got {self.width}")


LUNG_WINDOW = Window(center=-600.0, width=1500.0)


@dataclass(frozen=True)
class RenderedImage:
    """A rendered key image.

    ``rgb`` is ``(rows, columns, 3)`` uint8: the plane in rows ``0 .. image_rows - 1``, the
    text band below it. Display pixel ``(r, c)`` of the plane shows source pixel
    ``(source_rows[r], source_columns[c])``; ``pixel_spacing_mm`` (row, column spacing, as
    PixelSpacing) is that of the display pixels.
    """

    rgb: npt.NDArray[np.uint8]
    image_rows: int
    pixel_spacing_mm: tuple[float, float]
    source_rows: npt.NDArray[np.intp]
    source_columns: npt.NDArray[np.intp]


def boundary(mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    """The boundary pixels of a 2-D mask: pixels of the mask with a 4-neighbour outside it
    (the image edge counts as outside)."""
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"a mask must be 2-D, got shape {mask.shape}")
    inner = ndimage.binary_erosion(mask, structure=ndimage.generate_binary_structure(2, 1))
    return np.asarray(mask & ~inner, dtype=bool)


def render_key_image(
    plane: npt.ArrayLike,
    mask: npt.ArrayLike,
    lines: Sequence[str],
    pixel_spacing_mm: tuple[float, float],
    *,
    window: Window = LUNG_WINDOW,
    min_width: int = 512,
    contour_rgb: RGB = CONTOUR_RGB,
) -> RenderedImage:
    """Render ``plane`` in ``window`` with the contour of ``mask`` and ``lines`` of text below.

    Args:
        plane: 2-D array of values (HU), ``[row, column]``.
        mask: boolean array of the plane's shape; its boundary pixels are drawn as the contour
            (an empty mask draws none).
        lines: text lines, drawn top to bottom in the band below the plane; a line too long
            for the width is wrapped at spaces.
        pixel_spacing_mm: (row spacing, column spacing) of ``plane`` in mm (PixelSpacing order).
        window: the display window.
        min_width: a plane narrower than this (after squaring its pixels) is enlarged by the
            smallest whole factor that reaches it, so that the text stays legible.
        contour_rgb: the contour's colour.

    Returns:
        The :class:`RenderedImage`.

    Raises:
        ValueError: a plane that is not 2-D or is empty, a mask of another shape, or a
            spacing that is not positive and finite.
    """
    values = np.asarray(plane)
    if values.ndim != 2 or values.size == 0:
        raise ValueError(f"a plane must be a non-empty 2-D array, got shape {values.shape}")
    region = np.asarray(mask, dtype=bool)
    if region.shape != values.shape:
        raise ValueError(f"mask shape {region.shape} differs from the plane's {values.shape}")
    dy, dx = (float(s) for s in pixel_spacing_mm)
    if not (math.isfinite(dy) and math.isfinite(dx) and dy > 0 and dx > 0):
        raise ValueError(f"pixel spacing must be positive and finite, got {pixel_spacing_mm}")
    rows, cols = values.shape
    side = min(dy, dx)  # square display pixels of the finer spacing
    out_rows, out_cols = max(1, round(rows * dy / side)), max(1, round(cols * dx / side))
    factor = max(1, math.ceil(min_width / out_cols))
    out_rows, out_cols = out_rows * factor, out_cols * factor
    src_r = _nearest(rows, out_rows)
    src_c = _nearest(cols, out_cols)
    grey = _windowed(values, window)[np.ix_(src_r, src_c)]
    rgb = np.repeat(grey[:, :, None], 3, axis=2)
    rgb[boundary(region[np.ix_(src_r, src_c)])] = contour_rgb
    band = _text_band(lines, out_cols)
    return RenderedImage(
        rgb=np.ascontiguousarray(np.concatenate([rgb, band], axis=0)),
        image_rows=out_rows,
        pixel_spacing_mm=(rows * dy / out_rows, cols * dx / out_cols),
        source_rows=src_r,
        source_columns=src_c,
    )


def _nearest(n_in: int, n_out: int) -> npt.NDArray[np.intp]:
    """For each of ``n_out`` display pixels the source pixel whose extent holds its centre
    (pixel replication; a whole factor ``f`` maps display pixel ``p`` to ``p // f``)."""
    centres = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out)
    return np.minimum(np.floor(centres).astype(np.intp), n_in - 1)


def _windowed(values: npt.NDArray[np.generic], window: Window) -> npt.NDArray[np.uint8]:
    """PS3.3 C.11.2.1.2.1 linear VOI to 0..255."""
    c, w = window.center, window.width
    x = np.asarray(values, dtype=np.float64)
    y = ((x - (c - 0.5)) / (w - 1) + 0.5) * 255.0
    return np.asarray(np.clip(np.rint(y), 0, 255), dtype=np.uint8)


def _font_size(width: int) -> int:
    return max(10, round(width / 36))


def _text_band(lines: Sequence[str], width: int) -> npt.NDArray[np.uint8]:
    """A black band as wide as the plane with ``lines`` in white (grey where antialiased)."""
    size = _font_size(width)
    font = ImageFont.load_default(size=size)
    pad = max(2, size // 2)
    wrapped = [part for line in lines for part in _wrap(line, font, width - 2 * pad)]
    ascent, descent = font.getmetrics() if isinstance(font, ImageFont.FreeTypeFont) else (size, 0)
    step = ascent + descent + max(1, size // 5)
    height = 2 * pad + step * len(wrapped) if wrapped else 0
    band = Image.new("RGB", (width, height), BAND_RGB)
    draw = ImageDraw.Draw(band)
    for n, line in enumerate(wrapped):
        draw.text((pad, pad + n * step), line, fill=TEXT_RGB, font=font)
    return np.asarray(band, dtype=np.uint8).reshape(height, width, 3)


def _wrap(line: str, font: ImageFont.FreeTypeFont | ImageFont.ImageFont, width: int) -> list[str]:
    """``line`` broken at spaces into parts no wider than ``width`` pixels (a single word
    wider than that stays whole and is clipped at the image's edge)."""
    parts: list[str] = []
    current = ""
    for word in line.split():
        candidate = f"{current} {word}" if current else word
        if current and font.getlength(candidate) > width:
            parts.append(current)
            current = word
        else:
            current = candidate
    if current:
        parts.append(current)
    return parts
