"""Post-processing functions, by the name a model card gives in ``pipeline.postprocess``.

Each turns what the stages produced on the model grid (:class:`StageOutputs`) into measured
findings (:class:`inference.postprocess.Detections`). A model of a new kind ships a package
whose card names one of these, or adds at most one function here.

* ``components`` — connected components of the segmentation at the card's threshold, each a
  finding scored by its peak probability (lung-nodule 1.0.0, and any plain segmentation model).
* ``lung-nodule`` — the staged nodule pipeline of lung-nodule 2.0.0: the detector's components
  at the card's candidate threshold are candidates; those centred outside the dilated lungs are
  dropped; the candidate classifier scores the rest (averaged over views, :data:`TEST_VIEWS`),
  and what reaches its operating point is a finding, scored by the classifier's probability,
  segmented by the detector at the card's segmentation threshold (within the candidate; the
  candidate's own voxels when none reaches it), its edge then placed from the pixels
  (:mod:`inference.refine`), typed and measured (:mod:`inference.measure`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from functools import partial
from itertools import product

import numpy as np
import numpy.typing as npt
from scipy.special import expit

from inference.candidates import Candidate, CandidateMap, candidate_patches, find_candidates
from inference.card import ModelCard
from inference.lungs import LungMask
from inference.measure import TypeRule, axial_axes, nodule_type
from inference.postprocess import Detections, find_nodules, measure_component
from inference.refine import RefineRule, refine_nodule
from inference.session import StageSession
from preread.domain import Finding, Geometry

F32 = npt.NDArray[np.float32]
_STRUCTURE_26 = np.ones((3, 3, 3), dtype=bool)
_BATCH = 64
#: Candidates of a card with ``pipeline.lung_mask`` must lie within this of the lungs: a
#: juxtapleural nodule's centre sits inside the closed mask, a rib's or the chest wall's
#: centre beyond it (see inference.lungs).
LUNG_MARGIN_MM = 3.0
#: Above this a detector component is not one nodule (a sphere of 40 mm: larger than any
#: nodule, which is ≤ 30 mm by definition) and is split (inference.candidates).
MAX_NODULE_MM3 = 4.0 / 3.0 * np.pi * 20.0**3
#: A view of a ``[B, scales, z, y, x]`` batch of patches: the axes it is flipped along, and
#: whether y and x are swapped (after the flips).
View = tuple[tuple[int, ...], bool]
#: The views the candidate classifier scores each patch in (a stage's ``test_views``); their
#: logits are averaged. 4: as it is and flipped along each axis (every shipped card). 16: the
#: in-plane square's eight symmetries (rotations by 90° and their mirror images: every flip of
#: y and x, with and without swapping them), each as it is and flipped in z: the symmetries
#: the classifier is trained with (flips, in-plane rot90), so every view is one it has seen.
TEST_VIEWS: dict[int, tuple[View, ...]] = {
    4: (((), False), ((2,), False), ((3,), False), ((4,), False)),
    16: tuple(
        (tuple(a for a, on in zip((2, 3, 4), bits, strict=True) if on), swap)
        for swap in (False, True)
        for bits in product((False, True), repeat=3)
    ),
}


@dataclass(frozen=True)
class StageOutputs:
    """Everything a post-processing function may read, all on the model grid."""

    card: ModelCard
    geometry: Geometry
    image: F32  # the network's input (windowed to [0, 1])
    hu: F32
    probability: F32  # the first stage's foreground probability
    lungs: LungMask | None  # when the card asks for the lung mask
    midline_x_mm: float | None
    classifiers: Mapping[str, StageSession]
    #: evaluation: keep every candidate, whatever the classifier's operating point
    all_candidates: bool = False


Postprocess = Callable[[StageOutputs], Detections]


def components(out: StageOutputs) -> Detections:
    t = out.card.thresholds
    return find_nodules(
        out.probability,
        out.hu,
        out.geometry,
        threshold=t.probability,
        min_volume_mm3=t.min_volume_mm3,
        midline_x_mm=out.midline_x_mm,
    )


def lung_nodules(out: StageOutputs) -> Detections:
    card = out.card
    if len(card.stages) != 1 or card.pipeline.candidate_probability is None:
        raise ValueError(
            "post-processing 'lung-nodule' needs one candidate-classifier stage and "
            "pipeline.candidate_probability"
        )
    stage = card.stages[0]
    classifier = out.classifiers[stage.name]
    geometry = out.geometry
    found, cands = nodule_candidates(
        out.probability,
        out.lungs,
        geometry,
        threshold=card.pipeline.candidate_probability,
        min_volume_mm3=card.thresholds.min_volume_mm3,
    )
    scores = np.zeros(len(cands), dtype=np.float64)
    for start in range(0, len(cands), _BATCH):
        chunk = cands[start : start + _BATCH]
        patches = candidate_patches(out.image, [c.centre_kji for c in chunk], stage.patch_vox)
        scores[start : start + len(chunk)] = expit(
            view_averaged(classifier, patches, TEST_VIEWS[stage.test_views])
        )
    cut = 0.0 if out.all_candidates else stage.threshold
    kept = [(c, float(s)) for c, s in zip(cands, scores, strict=True) if s >= cut]
    kept.sort(key=lambda cs: -cs[1])
    rule_spec = card.pipeline.type_rule
    rule = TypeRule(**rule_spec.model_dump()) if rule_spec is not None else None
    labels = np.zeros(geometry.shape, dtype=np.int32)
    lungs = None if out.lungs is None else out.lungs.mask
    refine = card.pipeline.refine
    refine_rule = RefineRule() if refine is None else RefineRule(reach_mm=refine.reach_mm)
    findings: list[Finding] = []
    for c, score in kept:
        box = c.box
        comp = c.mask(found.components)
        seg = comp & (out.probability[box] >= card.thresholds.probability)
        if not seg.any():
            seg = comp
        seg &= labels[box] == 0
        if not seg.any():
            continue
        box, seg = refine_nodule(seg, box, out.hu, max(geometry.spacing), lungs, refine_rule)
        seg &= labels[box] == 0
        if not seg.any():
            continue
        label = len(findings) + 1
        labels[box][seg] = label
        finding = measure_component(
            label, box, labels, out.probability, out.hu, geometry, out.midline_x_mm
        )
        findings.append(_typed(replace(finding, probability=score), seg, box, out, rule))
    return Detections(findings=tuple(findings), label_map=labels)


def view_averaged(
    classifier: Callable[[F32], F32], patches: F32, views: tuple[View, ...]
) -> npt.NDArray[np.float64]:
    """The classifier's logit of each patch averaged over ``views`` of it."""
    logits = [classifier(_view(patches, view))[:, 0] for view in views]
    mean: npt.NDArray[np.float64] = np.mean(np.asarray(logits, dtype=np.float64), axis=0)
    return mean


def _view(patches: F32, view: View) -> F32:
    axes, swap = view
    out = np.flip(patches, axis=axes) if axes else patches
    if swap:
        out = np.swapaxes(out, 3, 4)
    return np.ascontiguousarray(out)  # the patches themselves when already contiguous


def nodule_candidates(
    probability: F32,
    lung_mask: LungMask | None,
    geometry: Geometry,
    *,
    threshold: float,
    min_volume_mm3: float,
) -> tuple[CandidateMap, list[Candidate]]:
    """The detector's candidates the classifier scores: components at ``threshold`` (large ones
    split), centred within ``LUNG_MARGIN_MM`` of the lungs when a lung mask is given. Mining
    the classifier's training data uses the same function."""
    near = None if lung_mask is None else partial(lung_mask.near, margin_mm=LUNG_MARGIN_MM)
    min_voxels = max(1, int(np.ceil(min_volume_mm3 / geometry.voxel_volume_mm3)))
    found = find_candidates(
        probability,
        threshold=threshold,
        min_voxels=min_voxels,
        max_voxels=int(MAX_NODULE_MM3 / geometry.voxel_volume_mm3),
        within=near,
    )
    cands = list(found.candidates)
    if near is not None and cands:
        shape = np.asarray(probability.shape)
        centres = np.clip(np.rint([c.centre_kji for c in cands]).astype(np.intp), 0, shape - 1)
        cands = [c for c, keep in zip(cands, near(centres), strict=True) if keep]
    return found, cands


def _typed(
    finding: Finding,
    mask: npt.NDArray[np.bool_],
    box: tuple[slice, slice, slice],
    out: StageOutputs,
    rule: TypeRule | None,
) -> Finding:
    sub = out.geometry.crop(box)
    axes = axial_axes(mask, sub)
    updates: dict[str, object] = {}
    if axes is not None:
        updates["axial_long_axis_mm"] = round(axes.long_mm, 2)
        updates["short_axis_mm"] = round(axes.short_mm, 2)
    if rule is not None:
        typed = nodule_type(mask, out.hu[box], sub, rule)
        updates["nodule_type"] = typed.type
        if typed.solid_component_long_axis_mm is not None:
            updates["solid_component_long_axis_mm"] = round(typed.solid_component_long_axis_mm, 2)
    return replace(finding, **updates)  # type: ignore[arg-type]


POSTPROCESSORS: dict[str, Postprocess] = {
    "components": components,
    "lung-nodule": lung_nodules,
}


def postprocessor(name: str) -> Postprocess:
    try:
        return POSTPROCESSORS[name]
    except KeyError:
        known = ", ".join(sorted(POSTPROCESSORS))
        raise ValueError(f"unknown post-processing {name!r} (known: {known})") from None
