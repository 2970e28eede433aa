"""Training cases on the model grid, from phantoms or from (CT series + DICOM SEG) pairs.

Both sources go through the serving side's own preprocessing (:func:`inference.preprocess.
to_model_grid`), so the network sees in training exactly what it will see when it serves.
Prepared cases are cached in ``<data_dir>/cache/cases/`` (the key covers the generator version,
the seed and the input settings), so a resumed or repeated run does not regenerate them.
"""

from __future__ import annotations

import functools
import hashlib
import json
import zlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from dicom_gateway.source import StudySource
from inference.card import InputSpec, IntensityWindow
from inference.preprocess import labels_to_model_grid, to_model_grid
from preread.domain import Geometry, Volume
from training.config import DataConfig, InputConfig, PhantomSource
from training.errors import TrainingError
from training.orthanc_data import Admit, Deidentify, PullResult

#: Sampling classes: where a training patch may be centred. BONE and VESSEL are the explicit
#: hard negatives, found from the HU of the image itself (so folder and Orthanc data get them
#: too): bone is dense (> 250 HU) anywhere outside the nodules; vessel is soft tissue
#: (> −500 HU) inside the generous lung region — pulmonary vessels, branch points, bronchial
#: walls, the chest-wall edge and the hila, where 1.0.0's false positives were.
OUTSIDE_LUNG, LUNG, NODULE, BONE, VESSEL = 0, 1, 2, 3, 4
N_SAMPLING_CLASSES = 5
BONE_HU = 250.0
VESSEL_HU = -500.0
_MAX_INDICES_PER_CLASS = 50_000
#: Bump when the preparation of cases changes (it is part of the cache key).
PREPARATION_VERSION = "3"


@dataclass(frozen=True)
class Case:
    """One training case on the model grid, cropped to the lungs with a margin."""

    case_id: str
    image: npt.NDArray[np.float16]  # windowed to [0, 1]
    label: npt.NDArray[np.uint8]  # 1 = nodule
    sampling: npt.NDArray[np.uint8]  # OUTSIDE_LUNG / LUNG / NODULE
    geometry: Geometry

    @functools.cached_property
    def nodule_indices(self) -> list[npt.NDArray[np.int64]]:
        """Flat indices of each nodule's voxels (26-connected components of the label), so
        that patches can be drawn per nodule rather than per voxel (a voxel-uniform draw gives
        the large nodules nearly all the nodule patches)."""
        comps, n = ndimage.label(self.label > 0, structure=np.ones((3, 3, 3), dtype=bool))
        flat = np.asarray(comps).reshape(-1)
        order = np.argsort(flat, kind="stable")
        bounds = np.searchsorted(flat[order], np.arange(1, n + 2))
        return [order[bounds[c] : bounds[c + 1]].astype(np.int64) for c in range(n)]

    @functools.cached_property
    def class_indices(self) -> list[npt.NDArray[np.int64]]:
        """Flat indices of each sampling class (at most 50,000 per class, a seeded choice)."""
        rng = np.random.default_rng(zlib.crc32(self.case_id.encode()))
        flat = self.sampling.reshape(-1)
        out: list[npt.NDArray[np.int64]] = []
        for cls in range(N_SAMPLING_CLASSES):
            idx = np.flatnonzero(flat == cls)
            if idx.size > _MAX_INDICES_PER_CLASS:
                idx = np.sort(rng.choice(idx, _MAX_INDICES_PER_CLASS, replace=False))
            out.append(idx.astype(np.int64))
        return out


def input_spec(inp: InputConfig) -> InputSpec:
    """The card's input section for these training settings (what serving will use)."""
    return InputSpec(
        spacing_mm=inp.spacing_mm,
        orientation="LPS",
        intensity=IntensityWindow(window_min_hu=inp.window_min_hu, window_max_hu=inp.window_max_hu),
    )


def lung_region(hu: npt.NDArray[np.float32]) -> npt.NDArray[np.bool_]:
    """A generous lung mask from HU alone: air inside the body, holes closed, dilated.

    Air connected to the in-plane border of the image is outside the body; what remains below
    −400 HU is lung or airway. Solid nodules are holes in that mask, so it is closed and
    dilated (at half resolution, which is plenty for choosing patch centres).
    """
    small = hu[::2, ::2, ::2] < -400.0
    lab, _ = ndimage.label(small)
    border = np.unique(
        np.concatenate(
            [
                lab[:, 0, :].ravel(),
                lab[:, -1, :].ravel(),
                lab[:, :, 0].ravel(),
                lab[:, :, -1].ravel(),
            ]
        )
    )
    inside = small & ~np.isin(lab, border[border > 0])
    # Close with edge padding: scipy erodes from a zero border, which would eat lungs that
    # run off the top or bottom of the scan.
    pad = 4
    padded = np.pad(inside, pad, mode="edge")
    closed = ndimage.binary_closing(
        padded, structure=ndimage.generate_binary_structure(3, 1), iterations=pad
    )
    inside = closed[pad:-pad, pad:-pad, pad:-pad]
    inside = ndimage.binary_dilation(inside, iterations=2)
    full = np.repeat(np.repeat(np.repeat(inside, 2, 0), 2, 1), 2, 2)
    return np.asarray(full[: hu.shape[0], : hu.shape[1], : hu.shape[2]], dtype=bool)


def make_case(
    case_id: str,
    volume: Volume,
    nodule_labels: npt.NDArray[np.uint8],
    inp: InputConfig,
    *,
    margin: int = 32,
) -> Case:
    """Preprocess a CT volume and its nodule labels (source grid) into a cropped training case."""
    spec = input_spec(inp)
    model_input = to_model_grid(volume, spec)
    label = (
        labels_to_model_grid(nodule_labels > 0, volume.geometry, model_input.geometry) > 0
    ).astype(np.uint8)
    hu = model_input.hu
    lungs = lung_region(hu)
    sampling = np.where(lungs, LUNG, OUTSIDE_LUNG).astype(np.uint8)
    sampling[lungs & (hu > VESSEL_HU)] = VESSEL
    sampling[hu > BONE_HU] = BONE
    sampling[label > 0] = NODULE
    crop = _bbox(lungs | (label > 0), margin, sampling.shape)
    cropped_geometry = model_input.geometry.crop(crop)
    return Case(
        case_id=case_id,
        image=model_input.array[crop].astype(np.float16),
        label=label[crop],
        sampling=sampling[crop],
        geometry=cropped_geometry,
    )


def _bbox(
    mask: npt.NDArray[np.bool_], margin: int, shape: tuple[int, ...]
) -> tuple[slice, slice, slice]:
    if not mask.any():
        return (slice(0, shape[0]), slice(0, shape[1]), slice(0, shape[2]))
    out = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        nz = np.flatnonzero(mask.any(axis=other))
        out.append(slice(max(0, int(nz[0]) - margin), min(shape[axis], int(nz[-1]) + 1 + margin)))
    return (out[0], out[1], out[2])


def phantom_case(seed: int, source: PhantomSource, inp: InputConfig) -> Case:
    """Generate phantom ``seed`` on its native scanner grid and prepare it like a real scan."""
    from training.phantoms import generate_phantom

    ph = generate_phantom(
        seed, matrix=source.matrix, max_slices=source.max_slices, profile=source.profile
    )
    return make_case(f"phantom-{seed}", ph.volume, ph.label, inp)


def _cache_key(kind: str, ident: str, inp: InputConfig, extra: str) -> str:
    payload = json.dumps(
        [kind, ident, inp.model_dump(mode="json"), extra, PREPARATION_VERSION], sort_keys=True
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


def _save(case: Case, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    g = case.geometry
    np.savez(
        tmp,
        image=case.image,
        label=case.label,
        sampling=case.sampling,
        geometry=np.array(
            json.dumps(
                {
                    "shape": g.shape,
                    "origin": g.origin,
                    "row_direction": g.row_direction,
                    "column_direction": g.column_direction,
                    "slice_direction": g.slice_direction,
                    "spacing": g.spacing,
                }
            )
        ),
        case_id=np.array(case.case_id),
    )
    tmp.replace(path)  # atomic: a killed run never leaves a half-written cache entry


def _load(path: Path) -> Case:
    with np.load(path) as z:
        geo = json.loads(str(z["geometry"]))
        return Case(
            case_id=str(z["case_id"]),
            image=z["image"],
            label=z["label"],
            sampling=z["sampling"],
            geometry=Geometry(**geo),
        )


def _phantom_job(args: tuple[int, PhantomSource, InputConfig, str]) -> str:
    seed, source, inp, path = args
    _save(phantom_case(seed, source, inp), Path(path))
    return path


def phantom_cases(
    source: PhantomSource,
    inp: InputConfig,
    cache_dir: Path,
    *,
    workers: int = 1,
    progress: Callable[[int], None] | None = None,
) -> list[Case]:
    """Phantoms ``source.seed … source.seed + count − 1`` as cases, generated once and cached."""
    from training.phantoms import GENERATOR_VERSION

    jobs: list[tuple[int, PhantomSource, InputConfig, str]] = []
    paths: list[Path] = []
    for i in range(source.count):
        seed = source.seed + i
        extra = f"{GENERATOR_VERSION}/{source.matrix}/{source.max_slices}"
        if source.profile != "train":  # the train profile's cache entries keep their names
            extra += f"/{source.profile}"
        path = cache_dir / f"phantom-{seed}-{_cache_key('phantom', str(seed), inp, extra)}.npz"
        paths.append(path)
        if not path.exists():
            jobs.append((seed, source, inp, str(path)))
        elif progress:
            progress(1)
    if jobs:
        if workers > 1 and len(jobs) > 1:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                for _ in pool.map(_phantom_job, jobs):
                    if progress:
                        progress(1)
        else:
            for job in jobs:
                _phantom_job(job)
                if progress:
                    progress(1)
    return [_load(p) for p in paths]


def folder_cases(
    folder: Path, inp: InputConfig, label_segments: list[str] | None = None
) -> Iterator[Case]:
    """Cases from a folder of (CT series + DICOM SEG) pairs, checked by :mod:`training.annotations`.

    ``label_segments`` names the segments (SegmentLabel) that count as nodule; by default every
    segment does.
    """
    from training.annotations import labelled, load_annotated_pairs

    keep = labelled(*label_segments) if label_segments else None
    for pair in load_annotated_pairs(folder, segment_filter=keep):
        yield make_case(pair.case_id, pair.image, (pair.label.labels > 0).astype(np.uint8), inp)


def training_cases(
    data: DataConfig,
    inp: InputConfig,
    cache_dir: Path,
    *,
    workers: int = 1,
    progress: Callable[[int], None] | None = None,
    orthanc: StudySource | None = None,
    admit: Admit | None = None,
    deidentify: Deidentify | None = None,
    pulled: list[PullResult] | None = None,
    dataset_folders: Sequence[Path] = (),
) -> list[Case]:
    """All training cases named by a config's ``data`` section.

    ``dataset_folders``: the folders of ``data.datasets``' versions (``preread train``
    resolves and verifies them); their ``cases/`` are read like a folder of pairs.

    ``orthanc``: where to pull annotated studies from, with ``admit`` (the model-training grant
    check) and ``deidentify`` — both required for it; ``pulled`` receives the pull's result
    (its grants go into the model card).
    """
    if data.source == "phantoms":
        assert data.phantoms is not None  # checked by DataConfig
        return phantom_cases(data.phantoms, inp, cache_dir, workers=workers, progress=progress)
    if data.source == "datasets":
        if len(dataset_folders) != len(data.datasets or ()):
            raise TrainingError("data.source is 'datasets' but their folders were not given")
        found: list[Case] = []
        for folder in dataset_folders:
            if (folder / "cases").is_dir():
                found += folder_cases(folder / "cases", inp, data.label_segments)
        if progress:
            progress(len(found))
        if data.phantoms is not None:
            found += phantom_cases(data.phantoms, inp, cache_dir, workers=workers)
        if not found:
            raise TrainingError("the datasets hold no study with a positive nodule")
        return found
    if data.source == "orthanc":
        from training.orthanc_data import pull_annotated_studies

        if orthanc is None:
            raise TrainingError("data.source is 'orthanc' but no Orthanc was given")
        if admit is None or deidentify is None:
            raise TrainingError(
                "training data from Orthanc need a model-training grant check and "
                "de-identification (preread train supplies both)"
            )
        folder = cache_dir / "orthanc-pairs"
        result = pull_annotated_studies(orthanc, folder, admit=admit, deidentify=deidentify)
        if pulled is not None:
            pulled.append(result)
        if not result.cases:
            why = "; ".join(sorted({reason for _, reason in result.refused})[:3])
            raise TrainingError(
                f"no annotated study in Orthanc may be used for training: {len(result.refused)} "
                f"left out ({why or 'no annotated study at all'})"
            )
    else:
        assert data.folder is not None
        folder = data.folder
    cases = list(folder_cases(folder, inp, data.label_segments))
    if progress:
        progress(len(cases))
    return cases
