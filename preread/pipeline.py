"""The pre-read of one series, as pure steps: volume → findings → SR + SEG.

The same functions serve ``preread read DIR`` (files in, files out, no Orthanc, no database) and
the job runner (:mod:`preread.jobs`, Orthanc in and out, every step recorded). Nothing here
talks to a network or a database.

Stages and their timing keys: ``decode`` (pixel data), ``volume`` (assembly and checks),
``preprocess``, ``infer``, ``postprocess`` (components, measurements, labels back on the source
slices), ``encode`` (SEG + SR, and the key images + KOS that ``outputs`` asks for). ``fetch`` and
``store`` are the runner's.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset

from dicom_gateway.checks import SeriesLimits
from dicom_gateway.errors import SeriesError
from dicom_gateway.selection import SeriesCandidate
from dicom_gateway.source import SeriesInfo
from dicom_gateway.volume import assemble_volume
from inference.predict import Prediction, Predictor
from inference.preprocess import labels_to_source_grid
from preread.domain import (
    LUNG_NODULE,
    Comparison,
    FindingConcept,
    LungRadsCategory,
    ModelRef,
    PreReadResult,
    Volume,
)
from preread.followup.lungrads import assess
from preread.outputs import ALL_OUTPUTS, Output
from preread.reports import (
    EncodedSeries,
    InstanceRef,
    KeyImageSeries,
    OrderedSources,
    build_key_images,
    build_kos,
    build_seg,
    build_sr,
)


@dataclass
class Analysis:
    """A series read by a model: the result, its labels on the source slices, and timings."""

    result: PreReadResult
    volume: Volume
    labels: npt.NDArray[np.uint8] | npt.NDArray[np.uint16]  # source grid; value = Finding.label
    prediction: Prediction
    timings: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Encoded:
    """What a reading writes into the study: the SR, the SEG (None without findings), and,
    when asked for and there are findings, the key images and the KOS."""

    sr: EncodedSeries
    seg: EncodedSeries | None
    key_images: KeyImageSeries | None = None
    kos: EncodedSeries | None = None

    @property
    def datasets(self) -> list[Dataset]:
        key_images = list(self.key_images.datasets) if self.key_images else []
        return [
            *(e.dataset for e in (self.seg, self.sr) if e is not None),
            *key_images,
            *([self.kos.dataset] if self.kos else []),
        ]


#: Lung-RADS applies to lung nodules only (another model kind's findings get no category)
NODULE = LUNG_NODULE.finding


def candidate(info: SeriesInfo) -> SeriesCandidate:
    """What the series rules look at, from the gateway's series record."""
    s = info.sample
    return SeriesCandidate(
        series_instance_uid=info.series_instance_uid,
        modality=info.modality,
        description=info.series_description,
        n_images=max(info.instance_count, s.number_of_frames),
        image_orientation=s.image_orientation,
        slice_thickness_mm=s.slice_thickness,
        image_type=s.image_type,
    )


def model_ref(predictor: Predictor) -> ModelRef:
    card = predictor.package.card
    return ModelRef(id=card.id, version=card.version, name=card.name, sha256=card.onnx.sha256)


def finding_concept(predictor: Predictor) -> FindingConcept:
    """What the model finds, as its card declares it (a Predictor has one label)."""
    return predictor.package.card.labels[0].concept


def analyze(
    datasets: Sequence[Dataset],
    predictor: Predictor,
    *,
    created: datetime,
    limits: SeriesLimits | None = None,
    lung_rads: bool = False,
) -> Analysis:
    """Decode and assemble the series, run the model, measure the findings; with
    ``lung_rads`` (a screening exam: :mod:`preread.followup.screening`) and a lung-nodule
    model, their Lung-RADS v2022 categories too.

    Raises :class:`~dicom_gateway.errors.SeriesError` (naming the series) for a series that
    cannot be read as one volume, and the inference errors for a model that cannot run.
    """
    if not datasets:
        raise SeriesError("(none)", "the series has no instances")
    timings: dict[str, float] = {}
    series_uid = str(datasets[0].get("SeriesInstanceUID", ""))
    # the datasets' pixel data is released slice by slice: the encoders need headers only
    volume = assemble_volume(
        datasets, release_pixel_data=True, timings=timings, limits=limits or SeriesLimits()
    )
    prediction = predictor.predict(volume)
    t0 = time.perf_counter()
    n_labels = len(prediction.findings)
    top = max((f.label for f in prediction.findings), default=0)
    if top >= 2**16:
        raise SeriesError(series_uid, f"{n_labels} findings: more than a SEG should hold")
    # nearest-neighbour labels, box by box, in one byte a voxel when they fit (a 512×512×300
    # series: 79 MB, and a few milliseconds for a few nodules)
    labels = labels_to_source_grid(
        prediction.labels,
        prediction.model_geometry,
        volume.geometry,
        dtype=np.uint8 if top < 2**8 else np.uint16,
    )
    # Keep only findings that still have voxels on the source slices (a blob thinner than a
    # slice gap can vanish there): the SEG and the SR must describe the same findings.
    # counted over the labelled voxels only: a bincount of the whole map casts its 79 million
    # bytes to 64-bit integers first (~1 s on 2 cores), the nonzero few cost milliseconds
    counts = np.bincount(labels[labels != 0], minlength=top + 1)
    findings = tuple(f for f in prediction.findings if counts[f.label] > 0)
    if len(findings) < n_labels:
        labels[~np.isin(labels, [f.label for f in findings])] = 0
    t1 = time.perf_counter()
    timings["preprocess"] = prediction.timings.get("preprocess", 0.0)
    timings["infer"] = prediction.timings.get("infer", 0.0)
    timings["postprocess"] = prediction.timings.get("postprocess", 0.0) + (t1 - t0)
    first = datasets[0]
    concept = finding_concept(predictor)
    assessment = assess(findings, None) if lung_rads and concept.finding.same_code(NODULE) else None
    result = PreReadResult(
        study_instance_uid=str(first.StudyInstanceUID),
        series_instance_uid=series_uid,
        frame_of_reference_uid=str(first.get("FrameOfReferenceUID", "")),
        model=model_ref(predictor),
        provider=prediction.session_info.provider,
        findings=findings,
        created=created,
        concept=concept,
        lung_rads=assessment,
    )
    return Analysis(result, volume, labels, prediction, timings)


def with_comparison(
    analysis: Analysis,
    comparison: Comparison,
    prior_categories: Mapping[str, LungRadsCategory] | None = None,
    *,
    lung_rads: bool = False,
) -> Analysis:
    """``analysis`` with its result's comparison with the priors; with ``lung_rads`` (as given
    to :func:`analyze`) and a lung-nodule model, the Lung-RADS categories assessed again with
    it (``prior_categories``: the newest prior's category of each nodule by tracking UID)."""
    result = analysis.result
    assessment = result.lung_rads
    if lung_rads and result.concept.finding.same_code(NODULE):
        assessment = assess(result.findings, comparison, prior_categories=prior_categories)
    result = dataclasses.replace(result, comparison=comparison, lung_rads=assessment)
    return dataclasses.replace(analysis, result=result)


def content_uid_seed(
    study_instance_uid: str, model_id: str, model_version: str, fingerprint: str
) -> str:
    """The seed of a result's UIDs: the same content (``fingerprint``: the study's
    :class:`~preread.store.StudyFingerprint` token) read by the same model gives the same UIDs."""
    key = "|".join([study_instance_uid, model_id, model_version, fingerprint])
    return hashlib.sha256(key.encode()).hexdigest()


def encode(
    analysis: Analysis,
    datasets: Sequence[Dataset],
    *,
    uid_seed: str,
    supersedes: InstanceRef | None = None,
    outputs: Collection[Output] = ALL_OUTPUTS,
) -> Encoded:
    """The DICOM SEG (when there are findings) and SR of an analysis, UIDs fixed by ``uid_seed``;
    with findings also the key images (``Output.SC``) and the KOS (``Output.KOS``) when
    ``outputs`` names them. The key images take their pixels from the analysis' volume (one
    slice per finding): the source datasets hold headers only by now."""
    t0 = time.perf_counter()
    result, labels = analysis.result, analysis.labels
    sources = OrderedSources.of(result, datasets)  # ordered and checked once for all four
    seg = build_seg(result, sources, labels, uid_seed=uid_seed)
    sr = build_sr(result, sources, seg, supersedes=supersedes, uid_seed=uid_seed)
    key_images = kos = None
    if Output.SC in outputs:
        hu = analysis.volume.array
        key_images = build_key_images(result, sources, labels, hu, uid_seed=uid_seed)
    if Output.KOS in outputs:
        kos = build_kos(result, sources, labels, uid_seed=uid_seed)
    analysis.timings["encode"] = time.perf_counter() - t0
    return Encoded(sr=sr, seg=seg, key_images=key_images, kos=kos)
