"""Decoding one instance's stored pixel values, by the measured fastest installed decoder.

pydicom decodes through plugins (``pydicom.pixels``); which are installed is a dependency
choice (pyproject.toml): GDCM, pyjpegls, pylibjpeg-openjpeg, pylibjpeg-rle, Pillow. Transfer
syntaxes: PS3.5 A.4 (encapsulated), 8.2 (native).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset
from pydicom.pixels.decoders.base import get_decoder
from pydicom.uid import UID, JPEGLSLossless, JPEGLSNearLossless

from dicom_gateway.checks import instance_label, transfer_syntax
from dicom_gateway.errors import SeriesError

__all__ = ["decode_frames"]

_PREFERRED_DECODER = {JPEGLSLossless: "pyjpegls", JPEGLSNearLossless: "pyjpegls"}
"""Decoders chosen by measurement where pydicom's first choice (GDCM) is slower: 512 x 512 CT
slices on 2 cores, JPEG-LS pyjpegls 7-9 ms vs GDCM 10-14 ms a slice. Elsewhere pydicom's order
is as fast as any: JPEG Lossless GDCM (the only one), RLE pylibjpeg-rle 2 ms (pydicom's own
11 ms), JPEG 2000 GDCM / openjpeg / Pillow 50-60 ms."""


def _pixels(ds: Dataset, syntax: UID | None) -> npt.NDArray[np.generic]:
    """The stored pixel values, by the measured fastest decoder when it is installed (then
    pydicom's own order: every installed plugin in turn)."""
    plugin = _PREFERRED_DECODER.get(syntax) if syntax else None
    if syntax and plugin and plugin in get_decoder(syntax).available_plugins:
        try:
            ds.pixel_array_options(decoding_plugin=plugin)
            return np.asarray(ds.pixel_array)
        except Exception:  # any plugin failure: let the others try
            ds.pixel_array_options(decoding_plugin="")
    return np.asarray(ds.pixel_array)


def decode_frames(ds: Dataset, index: int, uid: str) -> npt.NDArray[np.generic]:
    """Stored pixel values as (frames, rows, columns); SeriesError if they cannot be decoded."""
    syntax = transfer_syntax(ds)
    sop = instance_label(ds, index)
    try:
        array = _pixels(ds, syntax)
    except Exception as exc:  # any decoder or plugin failure
        name = f"{syntax.name} ({syntax})" if syntax else "unknown"
        raise SeriesError(
            uid,
            f"{sop}: cannot decode pixel data in transfer syntax {name}: "
            f"{type(exc).__name__}: {exc}",
        ) from exc
    frames = int(ds.get("NumberOfFrames") or 1)
    shape = (frames, int(ds.Rows), int(ds.Columns))
    if array.size != np.prod(shape):
        raise SeriesError(
            uid, f"{sop}: decoded pixel data has shape {array.shape}, expected {shape}"
        )
    return array.reshape(shape)
