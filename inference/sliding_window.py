"""Sliding-window inference in numpy, for any predictor callable (e.g. an ONNX Runtime session).

Numerically the same as MONAI's ``monai.inferers.sliding_window_inference`` (1.x) for one image,
constant padding with 0 and the same ``roi_size``, ``overlap``, ``sw_batch_size``, ``mode`` and
``sigma_scale``: identical window positions (``dense_patch_slices``), scan interval
``int(roi * (1 - overlap))``, importance map (``compute_importance_map``), window order and
float32 accumulation. Tested against MONAI in ``tests/inference/test_sliding_window.py``.

Memory: the output ``[C, d, h, w]`` of the windows' box and one weight map ``[d, h, w]``, both
float32, plus one batch of windows.

A ``window_mask`` (e.g. the lungs, :func:`inference.lungs.lung_mask`) skips every window whose box
holds none of its voxels (:func:`plan_windows`). A voxel where the mask is True is covered only
by windows that run, so its output is bit-for-bit the unmasked one; a voxel that no run window
covers gets the background output, as outside ``region``; any other voxel is the weighted mean
of the windows that ran over it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from inference.grid import Region

Predictor = Callable[[npt.NDArray[np.float32]], npt.NDArray[np.float32]]
BlendMode = Literal["gaussian", "constant"]


@dataclass(frozen=True)
class WindowPlan:
    """Which windows :func:`sliding_window_box` runs.

    ``box``: the grown region the windows tile (the whole image without ``region``); ``pads``:
    the zero padding (before, after) per axis that brings ``box`` up to ``roi_size``;
    ``slices``: the window positions in the padded box, in MONAI's order; ``run``: for each
    window, whether it runs (False: it holds no voxel of the window mask).
    """

    box: Region
    pads: tuple[tuple[int, int], tuple[int, int], tuple[int, int]]
    slices: tuple[Region, ...]
    run: tuple[bool, ...]

    @property
    def n_run(self) -> int:
        return sum(self.run)

    @property
    def n_skipped(self) -> int:
        return len(self.run) - self.n_run


@dataclass
class WindowStats:
    """Filled in by :func:`sliding_window_box` when passed as ``stats``: windows run and skipped."""

    run: int = 0
    skipped: int = 0


def sliding_window_box(
    image: npt.NDArray[np.float32],
    predictor: Predictor,
    roi_size: Sequence[int],
    overlap: float,
    batch_size: int,
    mode: BlendMode = "gaussian",
    *,
    sigma_scale: float = 0.125,
    region: Region | None = None,
    background_logit: float = 20.0,
    window_mask: npt.NDArray[np.bool_] | None = None,
    num_channels: int | None = None,
    stats: WindowStats | None = None,
) -> tuple[npt.NDArray[np.float32], Region]:
    """Run ``predictor`` over ``image`` in overlapping windows and blend the outputs, inside the
    box the windows tile (``region`` grown to at least one window; the whole image without it).

    Outside that box the output is background by definition and is not returned: a caller that
    needs a volume-sized map fills the rest (channel 0 = ``background_logit``, the others
    ``-background_logit``), and one that needs only the foreground (:mod:`inference.predict`)
    never writes the largest array of a read outside the box.

    Args:
        image: ``[D, H, W]`` float32.
        predictor: maps a batch ``[B, 1, d, h, w]`` to ``[B, C, d, h, w]`` (``(d, h, w)`` =
            ``roi_size``).
        roi_size: window size ``(d, h, w)``; an image smaller than it along an axis is padded
            with 0 (half before, half after, as MONAI does) and the output cropped back.
        overlap: fraction of a window shared with its neighbour, in [0, 1).
        batch_size: windows per predictor call.
        mode: ``"gaussian"`` weights each window's voxels by a Gaussian centred in the window
            (sigma = ``sigma_scale`` × window size); ``"constant"`` weighs all equally.
        region: only run windows inside this box (e.g. the body, to skip outside air). A box
            smaller than ``roi_size`` is grown, within the image, to at least ``roi_size``.
        window_mask: ``[D, H, W]`` bool; when given, only the windows (of ``region``) whose box
            holds a True voxel run (see the module docstring); voxels no run window covers
            get the background output.
        num_channels: ``C``, needed only when ``window_mask`` leaves no window to run.
        stats: when given, its ``run`` / ``skipped`` are set to the window counts.

    Returns:
        ``([C, d, h, w], box)``: the importance-weighted mean of the window outputs in the box,
        float32, and the box (a region of ``image``).

    Raises:
        ValueError: bad arguments, or no window runs and ``num_channels`` is None.
    """
    if image.ndim != 3:
        raise ValueError(f"image must be [D, H, W], got shape {image.shape}")
    roi = _triple(roi_size, "roi_size")
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    shape = (image.shape[0], image.shape[1], image.shape[2])
    if window_mask is not None and window_mask.shape != shape:
        raise ValueError(f"window_mask shape {window_mask.shape} differs from image {shape}")
    plan = plan_windows(shape, roi, overlap, region=region, window_mask=window_mask)
    if stats is not None:
        stats.run, stats.skipped = plan.n_run, plan.n_skipped
    if plan.n_run == 0 and num_channels is None:
        raise ValueError("window_mask leaves no window to run: pass num_channels")
    inner = _blend(
        image[plan.box],
        plan,
        predictor,
        batch_size,
        mode,
        sigma_scale,
        background_logit,
        num_channels,
    )
    return inner, plan.box


def plan_windows(
    shape: Sequence[int],
    roi_size: Sequence[int],
    overlap: float,
    *,
    region: Region | None = None,
    window_mask: npt.NDArray[np.bool_] | None = None,
) -> WindowPlan:
    """The windows :func:`sliding_window_box` places over an image of ``shape`` (see its
    arguments), and which of them hold a True voxel of ``window_mask`` (all, without it)."""
    roi = _triple(roi_size, "roi_size")
    size = _triple(shape, "shape")
    whole = (slice(0, size[0]), slice(0, size[1]), slice(0, size[2]))
    box = grow_region(whole if region is None else region, roi, size)
    inner = [b.stop - b.start for b in box]
    deficits = [max(r - n, 0) for r, n in zip(roi, inner, strict=True)]
    pads = tuple((d // 2, d - d // 2) for d in deficits)
    padded = [n + d for n, d in zip(inner, deficits, strict=True)]
    slices = window_slices(padded, roi, overlap)
    if window_mask is None:
        run = [True] * len(slices)
    else:
        m = np.asarray(window_mask, dtype=bool)[box]
        if any(d > 0 for d in deficits):
            m = np.pad(m, pads, mode="constant", constant_values=False)
        run = windows_holding(m, slices)
    return WindowPlan(
        box=box,
        pads=(pads[0], pads[1], pads[2]),
        slices=tuple(slices),
        run=tuple(run),
    )


def windows_holding(mask: npt.NDArray[np.bool_], slices: Sequence[Region]) -> list[bool]:
    """For each window, whether ``mask[window]`` has a True voxel (reduced one axis at a time,
    so each distinct window extent along an axis is scanned once)."""
    by_k: dict[tuple[int, int], npt.NDArray[np.bool_]] = {}
    by_kj: dict[tuple[int, int, int, int], npt.NDArray[np.bool_]] = {}
    out: list[bool] = []
    for sk, sj, si in slices:
        kk = (sk.start, sk.stop)
        if kk not in by_k:
            by_k[kk] = np.asarray(mask[sk].any(axis=0), dtype=bool)
        kj = (*kk, sj.start, sj.stop)
        if kj not in by_kj:
            by_kj[kj] = np.asarray(by_k[kk][sj].any(axis=0), dtype=bool)
        out.append(bool(by_kj[kj][si].any()))
    return out


def grow_region(region: Region, roi: Sequence[int], shape: tuple[int, int, int]) -> Region:
    """``region`` clipped to ``shape`` and grown symmetrically (within ``shape``) to at least
    ``roi`` along each axis.

    Raises:
        ValueError: the clipped region is empty.
    """
    out: list[slice] = []
    for sl, r, n in zip(region, roi, shape, strict=True):
        start, stop, step = sl.indices(n)
        if step != 1:
            raise ValueError("region slices must have step 1")
        if stop <= start:
            raise ValueError(f"empty region {region} for an image of shape {shape}")
        target = min(r, n)
        need = target - (stop - start)
        if need > 0:
            start = max(0, start - need // 2)
            stop = min(n, start + target)
            start = stop - target
        out.append(slice(start, stop))
    return (out[0], out[1], out[2])


def window_slices(
    image_size: Sequence[int], roi_size: Sequence[int], overlap: float
) -> list[Region]:
    """Window positions, in MONAI's order (``dense_patch_slices`` with its scan interval).

    ``image_size`` must be at least ``roi_size`` along every axis (pad first).
    """
    starts: list[list[int]] = []
    for n, r in zip(image_size, roi_size, strict=True):
        interval = r if r == n else max(int(r * (1 - overlap)), 1)
        count = math.ceil(n / interval)
        num = next((d for d in range(count) if d * interval + r >= n), None)
        num = 1 if num is None else num + 1
        starts.append([idx * interval - max(idx * interval + r - n, 0) for idx in range(num)])
    r0, r1, r2 = roi_size
    return [
        (slice(a, a + r0), slice(b, b + r1), slice(c, c + r2))
        for a in starts[0]
        for b in starts[1]
        for c in starts[2]
    ]


def importance_map(
    roi_size: Sequence[int], mode: BlendMode, sigma_scale: float = 0.125
) -> npt.NDArray[np.float32]:
    """Per-voxel window weights (MONAI ``compute_importance_map``): all ones, or an unnormalised
    Gaussian ``exp(-x² / 2σ²)`` per axis (x from the window centre, σ = ``sigma_scale`` × size),
    clipped below at max(its minimum, 1e-3)."""
    if mode == "constant":
        w = np.ones(tuple(roi_size), dtype=np.float32)
    elif mode == "gaussian":
        w = np.ones((), dtype=np.float32)
        for i, n in enumerate(roi_size):
            x = np.arange(-(n - 1) / 2.0, (n - 1) / 2.0 + 1, dtype=np.float32)
            sigma = np.float32(n * sigma_scale)
            g = np.exp(x**2 / (-2 * sigma**2)).astype(np.float32)
            w = w[..., None] * g[(None,) * i] if i > 0 else g
    else:
        raise ValueError(f"unknown blend mode {mode!r}")
    floor = max(float(w.min()), 1e-3)
    return np.maximum(w, np.float32(floor)).astype(np.float32)


def _blend(
    image: npt.NDArray[np.float32],
    plan: WindowPlan,
    predictor: Predictor,
    batch_size: int,
    mode: BlendMode,
    sigma_scale: float,
    background_logit: float,
    num_channels: int | None,
) -> npt.NDArray[np.float32]:
    shape = image.shape
    pads = plan.pads
    roi = (
        plan.slices[0][0].stop - plan.slices[0][0].start,
        plan.slices[0][1].stop - plan.slices[0][1].start,
        plan.slices[0][2].stop - plan.slices[0][2].start,
    )
    img = np.asarray(image, dtype=np.float32)
    if any(p != (0, 0) for p in pads):
        img = np.pad(img, pads, mode="constant", constant_values=0.0)
    size = img.shape
    slices = [sl for sl, run in zip(plan.slices, plan.run, strict=True) if run]
    weight = importance_map(roi, mode, sigma_scale)
    count = np.zeros(size, dtype=np.float32)
    for sl in slices:
        count[sl] += weight
    out: npt.NDArray[np.float32] | None = None
    if num_channels is not None and not slices:
        out = np.zeros((num_channels, *size), dtype=np.float32)
    for b0 in range(0, len(slices), batch_size):
        batch = slices[b0 : b0 + batch_size]
        x = np.stack([img[sl] for sl in batch])[:, None]
        y = np.asarray(predictor(x), dtype=np.float32)
        if y.ndim != 5 or y.shape[0] != len(batch) or y.shape[2:] != roi:
            raise ValueError(f"predictor returned shape {y.shape} for input {x.shape}")
        if out is None:
            out = np.zeros((y.shape[1], *size), dtype=np.float32)
        if not y.flags.writeable:
            y = y.copy()
        for yb, sl in zip(y, batch, strict=True):
            np.multiply(yb, weight, out=yb)
            out[(slice(None), *sl)] += yb
    assert out is not None  # a window ran, or num_channels was given
    if len(slices) == len(plan.slices):
        out /= count
    else:  # skipped windows: voxels no run window covers are background
        empty = count == 0
        np.divide(out, count, out=out, where=~empty)
        out[:, empty] = -background_logit
        out[0, empty] = background_logit
    crop = tuple(slice(lo, lo + n) for (lo, _), n in zip(pads, shape, strict=True))
    return np.ascontiguousarray(out[(slice(None), *crop)])


def _triple(values: Sequence[int], name: str) -> tuple[int, int, int]:
    if len(values) != 3 or any(int(v) < 1 for v in values):
        raise ValueError(f"{name} must be three positive integers, got {tuple(values)}")
    return (int(values[0]), int(values[1]), int(values[2]))
