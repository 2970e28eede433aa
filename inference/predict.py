"""One model package applied to one CT volume: preprocessing → ONNX Runtime sliding window →
findings. Used by the pipeline, the evaluator and ``preread read``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy.special import expit

from inference.body import box_from_lps, find_body, intersect
from inference.device_window import DeviceWindow, decide, device_window_for
from inference.errors import InferenceError
from inference.grid import MAX_GRID_VOXELS, Region, model_grid_geometry
from inference.harmonize import harmonize
from inference.lungs import LungMask, lung_mask
from inference.package import ModelPackage
from inference.postprocessors import StageOutputs, postprocessor
from inference.preprocess import ModelInput, to_model_grid, window
from inference.providers import CPU, ProviderEntry
from inference.resample import resample
from inference.session import (
    ProviderPolicy,
    SessionCache,
    SessionInfo,
    StageSession,
    shared_sessions,
)
from inference.sliding_window import WindowStats, sliding_window_box
from preread.domain import Finding, Geometry, Vec3, Volume

log = logging.getLogger(__name__)
LpsBox = tuple[Vec3, Vec3]
#: Where the sliding window is blended and thresholded: ``"auto"`` on the model's device when it
#: runs on CUDA or TensorRT (numpy on the host otherwise), ``"on"`` always through the device
#: graphs (also on the CPU provider), ``"off"`` always numpy on the host.
DeviceWindowMode = Literal["auto", "on", "off"]
BACKGROUND_LOGIT = 20.0  # voxels no window covers, inside the windows' box
#: The foreground probability outside the box the windows tile (the body's or the lungs'):
#: exactly 0, so that the volume-sized map is never written there.
BACKGROUND_PROBABILITY = 0.0


@dataclass(frozen=True)
class Prediction:
    """What one model found in one volume, on the model grid.

    ``probability`` is the foreground probability of the card's first label and ``labels`` the
    findings' voxels (``Finding.label``, 0 elsewhere), both on ``model_geometry`` (bring them to
    the series with :func:`inference.preprocess.to_source_grid`). When the window ran on the
    device (:attr:`Predictor.on_device`) without ``full_probability``, ``probability`` is exact
    where it reaches the card's threshold (a staged card's candidate threshold) and 0 below it
    (only those values leave the GPU):
    everything the findings are made of, but not a map to interpolate across the threshold
    (evaluation asks for ``full_probability``). ``region`` is the model-grid box
    the windows were asked to cover (before growing it to at least one window), None when no
    window ran (an all-air volume, or a hint outside it); ``timings`` holds seconds for
    ``preprocess``, ``infer``, ``postprocess`` and ``total``.
    """

    model_id: str
    model_version: str
    findings: tuple[Finding, ...]
    probability: npt.NDArray[np.float32]
    labels: npt.NDArray[np.int32]
    model_geometry: Geometry
    session_info: SessionInfo
    timings: dict[str, float]
    region: Region | None
    windows: WindowStats | None = None
    lungs: LungMask | None = None
    #: a card with ``pipeline.harmonize``: the scan's measured noise (HU) and the Gaussian it
    #: was smoothed with (mm; None: within the card's limit, not smoothed)
    noise: tuple[float | None, float | None] | None = None


class Predictor:
    """Runs a package's network on volumes.

    The ONNX Runtime session is taken from ``sessions`` (default: the process-wide
    :func:`~inference.session.shared_sessions`), created on first use, so a provider problem
    surfaces at construction: see :func:`inference.session.open_session` for ``providers`` and
    ``policy``.

    With ``crop_to_body`` (the default) windows run only inside the body's bounding box (HU >
    −500 on the model grid, grown by 10 mm; :func:`inference.body.find_body`): outside air is
    background by definition and costs nothing.

    ``device_window`` (see :data:`DeviceWindowMode`) chooses where windows are blended and
    thresholded: on a GPU, by default, on the device (:mod:`inference.device_window`), so that
    only the mask and its probabilities come back to the host; ``full_probability`` copies the
    whole probability map back too (for evaluation, which interpolates it). ``all_candidates``
    (evaluation) keeps a staged card's candidates below the classifier's operating point as
    findings, with their scores, so that the whole FROC curve can be drawn; serving never
    sets it. ``max_grid_voxels``: a series whose model grid would be larger is refused
    (:class:`~inference.errors.PreprocessError`) before anything is allocated.
    """

    def __init__(
        self,
        package: ModelPackage,
        providers: Sequence[ProviderEntry] = (CPU,),
        policy: ProviderPolicy = "fail",
        *,
        intra_op_threads: int | None = None,
        crop_to_body: bool = True,
        sessions: SessionCache | None = None,
        device_window: DeviceWindowMode = "auto",
        full_probability: bool = False,
        all_candidates: bool = False,
        max_grid_voxels: int = MAX_GRID_VOXELS,
    ) -> None:
        self.package = package
        self.max_grid_voxels = max_grid_voxels
        self.full_probability = full_probability
        self.all_candidates = all_candidates
        self.crop_to_body = crop_to_body
        cache = sessions if sessions is not None else shared_sessions()
        self.session = cache.get(package, providers, policy, intra_op_threads=intra_op_threads)
        labels = package.card.labels
        if len(labels) != 1:
            raise InferenceError(
                f"{package.card_path}: Predictor handles one foreground label, the card has "
                f"{len(labels)}"
            )
        self._channel = labels[0].value
        self._postprocess = postprocessor(package.card.pipeline.postprocess)
        self.stages: dict[str, StageSession] = {
            stage.name: cache.get_stage(
                package, stage.name, providers, policy, intra_op_threads=intra_op_threads
            )
            for stage in package.card.stages
        }
        use_device = device_window == "on" or (
            device_window == "auto" and self.session.device_type == "cuda"
        )
        if use_device and package.card.pipeline.detector_spacing_mm is not None:
            # the device graphs blend and threshold on the grid they were given; a detector on
            # its own grid is blended on the host and brought back to the model grid there
            if device_window == "on":
                raise InferenceError(
                    f"{package.card_path}: device_window 'on' cannot serve a detector read on "
                    "its own grid (pipeline.detector_spacing_mm); use 'auto' or 'off'"
                )
            log.info(
                "%s: the detector reads a %.2f mm grid: its windows are blended on the host",
                package.card.id,
                package.card.pipeline.detector_spacing_mm,
            )
            use_device = False
        self._window: DeviceWindow | None = device_window_for(self.session) if use_device else None

    @property
    def on_device(self) -> bool:
        """Whether windows are blended and thresholded by the device graphs."""
        return self._window is not None

    @property
    def session_info(self) -> SessionInfo:
        return self.session.info

    def predict(self, volume: Volume, *, region_hint: LpsBox | None = None) -> Prediction:
        """Find the card's label in ``volume``.

        Args:
            volume: a CT series in HU (axis-aligned; an oblique one raises
                :class:`~inference.errors.PreprocessError`).
            region_hint: two LPS corner points (mm) of a box to restrict the windows to (e.g.
                the lungs); intersected with the body box when ``crop_to_body``.
        """
        card = self.package.card
        t0 = time.perf_counter()
        model_input = to_model_grid(volume, card.input, max_voxels=self.max_grid_voxels)
        geometry = model_input.geometry
        noise: tuple[float | None, float | None] | None = None
        if card.pipeline.harmonize is not None:
            h = harmonize(model_input.hu, geometry, card.pipeline.harmonize.max_noise_hu)
            noise = (h.noise_hu, h.sigma_mm)
            if h.sigma_mm is not None:
                log.info(
                    "image noise %.0f HU above the model's %.0f HU: smoothed (Gaussian %.1f mm)",
                    h.noise_hu,
                    card.pipeline.harmonize.max_noise_hu,
                    h.sigma_mm,
                )
                model_input = ModelInput(
                    array=window(h.hu, card.input.intensity), hu=h.hu, geometry=geometry
                )
        body = find_body(model_input.hu, geometry)
        region: Region | None = (
            slice(0, geometry.shape[0]),
            slice(0, geometry.shape[1]),
            slice(0, geometry.shape[2]),
        )
        if self.crop_to_body:
            region = body.box
        if region is not None and region_hint is not None:
            hint = box_from_lps(region_hint[0], region_hint[1], geometry)
            region = None if hint is None else intersect(region, hint)
        lungs: LungMask | None = None
        if card.pipeline.lung_mask:
            lungs = lung_mask(model_input.hu, geometry)
            lung_box = lungs.box
            region = None if region is None or lung_box is None else intersect(region, lung_box)
        windows: WindowStats | None = None
        t1 = time.perf_counter()
        spec = card.inference
        if region is None:  # nothing to look at (all air, or a hint outside the volume)
            probability = np.zeros(geometry.shape, dtype=np.float32)
        elif self._window is not None:
            decision = decide(
                self._window,
                model_input.array,
                self.session,
                spec.roi_size_vox,
                spec.overlap,
                spec.batch_size,
                spec.mode,
                sigma_scale=spec.sigma_scale,
                # what the post-processing reads: a staged card's candidates lie below the
                # segmentation threshold
                threshold=min(
                    card.thresholds.probability,
                    card.pipeline.candidate_probability or card.thresholds.probability,
                ),
                channel=self._channel,
                region=None if _is_whole(region, geometry.shape) else region,
                background_probability=BACKGROUND_PROBABILITY,
                full_probability=self.full_probability,
            )
            probability = decision.probability()
        elif card.pipeline.detector_spacing_mm is not None:
            windows = WindowStats()
            probability = self._on_detector_grid(
                model_input.array,
                geometry,
                region,
                None if lungs is None else lungs.mask,
                card.pipeline.detector_spacing_mm,
                windows,
            )
        else:
            windows = WindowStats()
            probability = self._windows(
                model_input.array,
                None if _is_whole(region, geometry.shape) else region,
                None if lungs is None else lungs.mask,
                windows,
            )
        t2 = time.perf_counter()
        detections = self._postprocess(
            StageOutputs(
                card=card,
                geometry=geometry,
                image=model_input.array,
                hu=model_input.hu,
                probability=probability,
                lungs=lungs,
                midline_x_mm=body.midline_x_mm,
                classifiers=self.stages,
                all_candidates=self.all_candidates,
            )
        )
        t3 = time.perf_counter()
        return Prediction(
            model_id=card.id,
            model_version=card.version,
            findings=detections.findings,
            probability=probability,
            labels=detections.label_map,
            model_geometry=geometry,
            session_info=self.session.info,
            timings={
                "preprocess": t1 - t0,
                "infer": t2 - t1,
                "postprocess": t3 - t2,
                "total": t3 - t0,
            },
            region=region,
            windows=windows,
            lungs=lungs,
            noise=noise,
        )

    def _windows(
        self,
        image: npt.NDArray[np.float32],
        region: Region | None,
        window_mask: npt.NDArray[np.bool_] | None,
        stats: WindowStats,
    ) -> npt.NDArray[np.float32]:
        """The network's foreground probability on ``image``'s grid, the windows blended on the
        host (:func:`~inference.sliding_window.sliding_window_box`)."""
        spec = self.package.card.inference
        logits, box = sliding_window_box(
            image,
            self.session,
            spec.roi_size_vox,
            spec.overlap,
            spec.batch_size,
            spec.mode,
            sigma_scale=spec.sigma_scale,
            region=region,
            background_logit=BACKGROUND_LOGIT,
            window_mask=window_mask,
            num_channels=self.session.num_channels,
            stats=stats,
        )
        # background outside the windows' box: probability 0, never written (lazy zero pages)
        probability = np.zeros(image.shape, dtype=np.float32)
        probability[box] = foreground_probability(logits, self._channel)
        return probability

    def _on_detector_grid(
        self,
        image: npt.NDArray[np.float32],
        geometry: Geometry,
        region: Region,
        window_mask: npt.NDArray[np.bool_] | None,
        spacing_mm: float,
        stats: WindowStats,
    ) -> npt.NDArray[np.float32]:
        """The network's foreground probability on the model grid when it reads a coarser grid
        (``pipeline.detector_spacing_mm``): ``region`` of the image resampled (linear) onto an
        isotropic grid of ``spacing_mm`` starting at the region's first voxel, windows run
        there (those without a ``window_mask`` voxel, nearest-neighbour on that grid, skipped),
        and the probability brought back to the region by linear interpolation; 0 outside it.
        """
        fine = geometry.crop(region)
        coarse = model_grid_geometry(fine, (spacing_mm, spacing_mm, spacing_mm))
        on_coarse = self._windows(
            resample(image[region], fine, coarse),
            None,
            None if window_mask is None else resample(window_mask[region], fine, coarse, order=0),
            stats,
        )
        probability = np.zeros(geometry.shape, dtype=np.float32)
        # the region's last voxels lie up to one coarse voxel past the coarse grid's last centre
        probability[region] = resample(on_coarse, coarse, fine, edge_tolerance=1.0)
        return probability


def foreground_probability(
    logits: npt.NDArray[np.float32], channel: int
) -> npt.NDArray[np.float32]:
    """Softmax over the channel axis of ``[C, D, H, W]`` logits, channel ``channel``."""
    if logits.shape[0] == 2 and channel == 1:
        diff = np.subtract(logits[1], logits[0], dtype=np.float32)
        return np.asarray(expit(diff, out=diff), dtype=np.float32)
    shifted = logits - logits.max(axis=0, keepdims=True)
    np.exp(shifted, out=shifted)
    return np.asarray(shifted[channel] / shifted.sum(axis=0), dtype=np.float32)


def _is_whole(region: Region, shape: tuple[int, int, int]) -> bool:
    return all(s.start == 0 and s.stop == n for s, n in zip(region, shape, strict=True))
