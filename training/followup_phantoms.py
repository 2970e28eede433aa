"""Follow-up pairs: two chest CTs of the same synthetic patient, months apart, with the truth
of every nodule across both (issue 14: follow-up reading).

:func:`follow_up_pair` builds, from one seed, a **baseline** and a **follow-up**
:class:`~training.phantoms.Phantom` of the same patient (same anatomy, same scanner: a phantom
seed fixes both) and the truth a comparison is scored against:

* **Nodules** are spheres (:class:`~training.nodules.NoduleSpec`), drawn like the random
  nodules of :mod:`training.placement` (size bands, types, attachments) and placed by its
  :class:`~training.placement.Placer` at the largest size they reach in either study, so they
  stay in the lungs and apart from each other after growth. 2–5 per pair, plus the patient's
  calcified nodules (stable, never in the truth's statuses: not reported).
* **Fates** (seeded by ``SeedSequence([seed, 1])``): one nodule (two in a third of the pairs
  with four or more) is held back from the baseline and is **new**; each other one is
  *stable* (35 %), *grown* (35 %: volume × 1.3–3.0), *shrunk* (10 %: volume × 0.5–0.9) or
  *resolved* (20 %: absent from the follow-up). Stable, grown and shrunk ones are
  **persistent**. A part-solid nodule keeps its solid fraction.
* **Interval** 60–400 days; the baseline is dated as a phantom of that seed
  (:func:`training.phantom_dicom.default_study_date`).
* **Repositioning**: the follow-up patient lies a little turned and shifted: a rigid motion
  about the middle of the scan (rotation ≤ 4° about the table axis z and ≤ 1° about x and y,
  shift ≤ 12 mm, at most 4 mm along z) applied by resampling the follow-up volume (linear) and
  label map (nearest) on the scanner's grid, the edge slices repeated where the motion brings
  in anatomy from beyond the scanned range (:func:`move_array`); the DICOM geometry stays the
  scanner's. Nodules
  are placed where they stay inside the scanned z range after the motion. The truth centres
  are mapped by the same motion (:attr:`FollowUpPair.motion`, baseline LPS → follow-up LPS).
* **Truth per nodule** (:class:`TrackedNodule`, key ``N1``, ``N2`` … shared by both studies):
  status, labels and centres in each study, diameters and analytic volumes, the volume
  change, the expected volume doubling time (:func:`preread.followup.growth.
  volume_doubling_time`: None under 25 % change) and Lung-RADS v2022 per study with the
  context the comparison should give (baseline rows at the baseline; new, growing — mean
  diameter up > 1.5 mm within 12 months — or stable at the follow-up, stepped management from
  the baseline category). For a sphere the axial long and short axes are its diameter; a
  part-solid nodule's solid component is its core's diameter.

Limits: the same seed gives the follow-up the baseline's noise pattern (moved with the
patient), and the linear resampling smooths the follow-up's noise a little (its standard
deviation drops by up to a third between voxel centres).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from preread.domain import (
    Geometry,
    LungRadsCategory,
    NoduleStatus,
    NoduleType,
    Vec3,
    Volume,
)
from preread.followup.growth import diameter_change_mm, volume_change_pct, volume_doubling_time
from preread.followup.lungrads import Context, NoduleInput, categorize, exam_category, is_growing
from preread.followup.registration import RigidTransform
from training.nodules import Attachment, NoduleShape, NoduleSpec
from training.phantom_dicom import (
    StudyFiles,
    default_study_date,
    safe_name,
    write_phantom_study,
)
from training.phantoms import Phantom, ProfileName, generate_phantom, lung_mask, nodule_placer
from training.placement import (
    _ATTACH,
    _ATTACH_P,
    _BAND_P,
    _BANDS,
    _RECORDED,
    _TYPE_P,
    _TYPES,
    Placer,
    calcified_nodules,
)

__all__ = [
    "FollowUpPair",
    "TrackedNodule",
    "follow_up_pair",
    "move_array",
    "tracked_truth",
    "truth_document",
    "write_follow_up_pair",
]

Fate = Literal["stable", "grown", "shrunk", "resolved", "new"]
_FATES: tuple[Fate, ...] = ("stable", "grown", "shrunk", "resolved")
_FATE_P = (0.35, 0.35, 0.10, 0.20)
MIN_DAYS, MAX_DAYS = 60, 400
MAX_ROTATION_Z_DEG, MAX_TILT_DEG = 4.0, 1.0
MAX_SHIFT_MM, MAX_SHIFT_Z_MM = 12.0, 4.0
_MAX_DIAMETER_MM = 30.0


@dataclass(frozen=True)
class TrackedNodule:
    """One (non-calcified) nodule of a pair, followed across both studies.

    Labels are the nodule's values in each study's label map (None where it is absent);
    centres are in each study's own patient coordinates (the follow-up's = the baseline's
    mapped by the motion); diameters in mm (sphere: long = short axis = mean diameter);
    volumes analytic (π/6·d³). ``vdt_days``: the expected doubling time (None under 25 %
    change or when not persistent); ``*_lung_rads``: the nodule's Lung-RADS v2022 category in
    each study, ``follow_up_context`` the context it has there (new / growing / stable).
    """

    key: str
    status: NoduleStatus
    fate: Fate
    type: NoduleType
    attached_to: Attachment
    baseline_label: int | None
    follow_up_label: int | None
    baseline_center_lps_mm: Vec3 | None
    follow_up_center_lps_mm: Vec3 | None
    baseline_diameter_mm: float | None
    follow_up_diameter_mm: float | None
    baseline_volume_mm3: float | None
    follow_up_volume_mm3: float | None
    solid_fraction: float | None = None  # part-solid: solid core diameter / diameter
    volume_change_pct: float | None = None
    vdt_days: float | None = None
    diameter_change_mm: float | None = None
    baseline_lung_rads: LungRadsCategory | None = None
    follow_up_lung_rads: LungRadsCategory | None = None
    follow_up_context: Context | None = None

    def diameter(self, study: Study) -> float | None:
        return self.baseline_diameter_mm if study == "baseline" else self.follow_up_diameter_mm

    def label(self, study: Study) -> int | None:
        return self.baseline_label if study == "baseline" else self.follow_up_label

    def solid_mm(self, study: Study) -> float | None:
        d = self.diameter(study)
        if self.type != "part-solid" or d is None or self.solid_fraction is None:
            return None
        return d * self.solid_fraction


Study = Literal["baseline", "follow-up"]


@dataclass(frozen=True, eq=False)
class FollowUpPair:
    """A baseline and a follow-up study of one synthetic patient, with the truth across both
    (see the module docstring). ``motion`` maps baseline LPS to follow-up LPS."""

    seed: int
    patient_id: str
    baseline: Phantom
    follow_up: Phantom
    baseline_date: datetime.date
    follow_up_date: datetime.date
    motion: RigidTransform
    nodules: tuple[TrackedNodule, ...]
    baseline_exam: LungRadsCategory | None
    follow_up_exam: LungRadsCategory | None

    @property
    def days(self) -> int:
        return (self.follow_up_date - self.baseline_date).days

    def phantom(self, study: Study) -> Phantom:
        return self.baseline if study == "baseline" else self.follow_up

    def lung_masks(self) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
        """The analytic lungs of the baseline (:func:`training.phantoms.lung_mask`) and of the
        follow-up (the same lungs moved by :attr:`motion`: ``lung_mask(self.follow_up)``
        would give them unmoved)."""
        base = lung_mask(self.baseline)
        g = self.baseline.volume.geometry
        moved = move_array(base.view(np.uint8), g, self.motion, order=0) > 0
        return base, np.asarray(moved, dtype=bool)


def move_array(
    array: npt.NDArray[Any],
    geometry: Geometry,
    motion: RigidTransform,
    *,
    order: int,
    cval: float = 0.0,
    mode: str = "nearest",
) -> npt.NDArray[Any]:
    """``array`` (on ``geometry``) with its content moved by ``motion`` (LPS → LPS), resampled
    on the same grid: ``out(p) = array(motion⁻¹(p))`` at every voxel centre ``p``.

    Where ``motion⁻¹(p)`` leaves the grid, ``mode`` ``"nearest"`` (default) repeats the edge:
    the anatomy beyond the scanned range is there in the patient, and the edge slice stands in
    for it. A ``"constant"`` fill (``cval``) would put a slab of air across the first or last
    slices of a shifted scan, which joins the lungs to the air outside the body (an image lung
    mask then finds no lungs) and gives an analytic lung mask a flat face that is no anatomy.
    """
    a = geometry.affine
    a3, origin = a[:3, :3], a[:3, 3]
    r, t = motion.rotation_matrix, np.asarray(motion.translation)
    inv = np.linalg.inv(a3)
    matrix = inv @ r.T @ a3
    offset = inv @ (r.T @ (origin - t) - origin)
    out = ndimage.affine_transform(array, matrix, offset=offset, order=order, mode=mode, cval=cval)
    return np.asarray(out, dtype=array.dtype)


def _rotation(axis: int, deg: float) -> npt.NDArray[np.float64]:
    a = np.radians(deg)
    c, s = np.cos(a), np.sin(a)
    i, j = [(1, 2), (2, 0), (0, 1)][axis]
    m = np.eye(3)
    m[i, i], m[i, j], m[j, i], m[j, j] = c, -s, s, c
    return m


def _motion(rng: np.random.Generator, centre: npt.NDArray[np.float64]) -> RigidTransform:
    """The repositioning: x ↦ R·(x − c) + c + t (see the module docstring)."""
    r = (
        _rotation(2, rng.uniform(-MAX_ROTATION_Z_DEG, MAX_ROTATION_Z_DEG))
        @ _rotation(0, rng.uniform(-MAX_TILT_DEG, MAX_TILT_DEG))
        @ _rotation(1, rng.uniform(-MAX_TILT_DEG, MAX_TILT_DEG))
    )
    while True:
        t = rng.uniform(-MAX_SHIFT_MM, MAX_SHIFT_MM, 3)
        t[2] = rng.uniform(-MAX_SHIFT_Z_MM, MAX_SHIFT_Z_MM)
        if np.linalg.norm(t) <= MAX_SHIFT_MM:
            break
    return RigidTransform.from_arrays(r, centre - r @ centre + t)


def _sphere(diameter: float, kind: NoduleType, attached: Attachment) -> NoduleShape:
    return NoduleShape(
        centre=np.zeros(3),
        rotation=np.eye(3),
        semi=np.full(3, diameter / 2.0),
        lobe_dirs=np.zeros((0, 3)),
        lobe_amps=np.zeros(0),
        type=kind,
        attached_to=attached,
        hu=0.0,
    )


@dataclass(frozen=True)
class _Drawn:
    centre: Vec3
    base_d: float | None
    fu_d: float | None
    fate: Fate
    type: NoduleType
    attached_to: Attachment
    solid_fraction: float | None


def _draw_nodules(placer: Placer, rng: np.random.Generator, target: int) -> list[_Drawn]:
    """``target`` spheres (fewer if they do not fit), drawn as :func:`training.placement.
    random_nodules` draws nodules, each placed at its largest size over both studies."""
    n_new = 2 if target >= 4 and rng.uniform() < 1.0 / 3.0 else 1
    out: list[_Drawn] = []
    for _ in range(3 * target):
        if len(out) >= target:
            break
        lo, hi = _BANDS[int(rng.choice(len(_BANDS), p=_BAND_P))]
        size = float(rng.uniform(lo, hi))
        kind = _TYPES[int(rng.choice(len(_TYPES), p=_TYPE_P))]
        how = _ATTACH[int(rng.choice(len(_ATTACH), p=_ATTACH_P))]
        fate: Fate = "new" if len(out) < n_new else _FATES[int(rng.choice(len(_FATES), p=_FATE_P))]
        factor = {"grown": rng.uniform(1.3, 3.0), "shrunk": rng.uniform(0.5, 0.9)}.get(fate, 1.0)
        growth = float(factor) ** (1.0 / 3.0)
        solid = float(rng.uniform(0.35, 0.65)) if kind == "part-solid" else None
        room = placer.z_hi - placer.z_lo - 4.0
        largest = min(size * max(growth, 1.0), room, _MAX_DIAMETER_MM)
        if largest < 3.0 * max(growth, 1.0):  # its smaller size would be under 3 mm
            continue
        placed = placer.place(_sphere(largest, kind, _RECORDED.get(how)), how)
        if placed is None:
            continue
        d_max = 2.0 * float(placed.semi[0])
        first = d_max / max(growth, 1.0)
        second = first * growth
        c = placed.centre
        out.append(
            _Drawn(
                centre=(float(c[0]), float(c[1]), float(c[2])),
                base_d=None if fate == "new" else round(first, 2),
                fu_d=None if fate == "resolved" else round(first if fate == "new" else second, 2),
                fate=fate,
                type=kind,
                attached_to=_RECORDED.get(how),
                solid_fraction=None if solid is None else round(solid, 3),
            )
        )
    return out


def _sphere_volume(d: float) -> float:
    return float(np.pi / 6.0 * d**3)


def _category(
    kind: NoduleType,
    mean: float,
    solid: float | None,
    context: Context,
    prior: LungRadsCategory | None,
) -> LungRadsCategory | None:
    return categorize(
        NoduleInput(
            label=0,
            nodule_type=kind,
            mean_diameter_mm=round(mean, 1),
            solid_component_mm=solid,
            context=context,
            prior_category=prior,
        )
    ).category


def _track(
    d: _Drawn, key: str, labels: tuple[int | None, int | None], days: int, motion: RigidTransform
) -> TrackedNodule:
    """The truth of drawn nodule ``d`` (``labels``: its label in each study)."""
    status: NoduleStatus = (
        "new" if d.fate == "new" else "resolved" if d.fate == "resolved" else "persistent"
    )
    v1 = None if d.base_d is None else _sphere_volume(d.base_d)
    v2 = None if d.fu_d is None else _sphere_volume(d.fu_d)
    base_c = None if d.base_d is None else d.centre
    fu_c = None if d.fu_d is None else motion.apply(d.centre)

    def solid(diameter: float) -> float | None:
        if d.type != "part-solid" or d.solid_fraction is None:
            return None
        return diameter * d.solid_fraction

    cat1 = (
        None if d.base_d is None else _category(d.type, d.base_d, solid(d.base_d), "baseline", None)
    )
    change = vdt = pct = None
    cat2: LungRadsCategory | None = None
    context: Context | None = None
    if d.fu_d is not None:
        if d.base_d is None:
            context = "new"
        else:
            assert v1 is not None and v2 is not None
            change = diameter_change_mm(round(d.base_d, 1), round(d.fu_d, 1))
            context = "growing" if is_growing(change, days) else "stable"
            vdt_raw = volume_doubling_time(v1, v2, days)
            vdt = None if vdt_raw is None else round(vdt_raw, 1)
            pct = volume_change_pct(v1, v2)
        cat2 = _category(d.type, d.fu_d, solid(d.fu_d), context, cat1)
    return TrackedNodule(
        key=key,
        status=status,
        fate=d.fate,
        type=d.type,
        attached_to=d.attached_to,
        baseline_label=labels[0],
        follow_up_label=labels[1],
        baseline_center_lps_mm=base_c,
        follow_up_center_lps_mm=fu_c,
        baseline_diameter_mm=d.base_d,
        follow_up_diameter_mm=d.fu_d,
        baseline_volume_mm3=None if v1 is None else round(v1, 3),
        follow_up_volume_mm3=None if v2 is None else round(v2, 3),
        solid_fraction=d.solid_fraction if d.type == "part-solid" else None,
        volume_change_pct=pct,
        vdt_days=vdt,
        diameter_change_mm=change,
        baseline_lung_rads=cat1,
        follow_up_lung_rads=cat2,
        follow_up_context=context,
    )


def _exam(categories: list[LungRadsCategory | None]) -> LungRadsCategory | None:
    from preread.domain import LungRadsNodule

    return exam_category(
        [LungRadsNodule(i, c, None if c is None else "truth") for i, c in enumerate(categories)]
    ).category


def follow_up_pair(
    seed: int,
    *,
    matrix: int = 512,
    max_slices: int | None = None,
    profile: ProfileName = "train",
) -> FollowUpPair:
    """The follow-up pair of ``seed`` (fully determined by the arguments; see the module
    docstring). ``matrix``, ``max_slices`` and ``profile`` as for
    :func:`training.phantoms.generate_phantom`."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
    placer = nodule_placer(seed, rng, matrix=matrix, max_slices=max_slices, profile=profile)
    z_lo, z_hi = placer.z_lo, placer.z_hi
    # the motion first: nodules go where they stay inside the scanned range after it
    centre = np.array([0.0, 0.0, 0.5 * (z_lo + z_hi)])
    motion = _motion(rng, centre)
    margin = abs(motion.translation[2] - (centre - motion.rotation_matrix @ centre)[2])
    margin += 150.0 * np.sin(np.radians(2.0 * MAX_TILT_DEG)) + 1.0
    placer.z_lo, placer.z_hi = z_lo + margin, z_hi - margin
    drawn = _draw_nodules(placer, rng, int(rng.integers(2, 6)))
    calcified = calcified_nodules(placer, rng)
    days = int(rng.integers(MIN_DAYS, MAX_DAYS + 1))

    persistent = [d for d in drawn if d.base_d is not None and d.fu_d is not None]
    base_only = [d for d in drawn if d.fu_d is None]
    fu_only = [d for d in drawn if d.base_d is None]
    calc = [
        NoduleSpec(
            tuple(float(v) for v in s.truth(0).center_lps_mm),  # type: ignore[arg-type]
            round(s.truth(0).long_axis_mm, 2),
            "solid",
            s.attached_to,
            calcified=True,
        )
        for s in calcified
    ]

    def spec(d: _Drawn, diameter: float | None) -> NoduleSpec:
        assert diameter is not None
        return NoduleSpec(d.centre, diameter, d.type, d.attached_to, core_scale=d.solid_fraction)

    # persistent nodules first in both studies: they draw the same HU from the seed's stream
    base_list = [*persistent, *base_only]
    fu_list = [*persistent, *fu_only]
    base_specs = [spec(d, d.base_d) for d in base_list] + calc
    fu_specs = [spec(d, d.fu_d) for d in fu_list] + calc
    kw: dict[str, Any] = {"matrix": matrix, "max_slices": max_slices, "profile": profile}
    baseline = generate_phantom(seed, nodules=base_specs, **kw)
    raw = generate_phantom(seed, nodules=fu_specs, **kw)
    g = raw.volume.geometry
    moved = move_array(raw.volume.array, g, motion, order=1)
    label = move_array(raw.label, g, motion, order=0, mode="constant")
    mapped = tuple(
        dataclasses.replace(n, center_lps_mm=motion.apply(n.center_lps_mm)) for n in raw.nodules
    )
    follow_up = dataclasses.replace(raw, volume=Volume(moved, g), label=label, nodules=mapped)

    base_labels = {id(d): n for n, d in enumerate(base_list, start=1)}
    fu_labels = {id(d): n for n, d in enumerate(fu_list, start=1)}
    tracked = [
        _track(d, f"N{i}", (base_labels.get(id(d)), fu_labels.get(id(d))), days, motion)
        for i, d in enumerate(drawn, start=1)
    ]
    start = default_study_date(seed)
    return FollowUpPair(
        seed=seed,
        patient_id=f"PHANTOM-FU-{seed:06d}",
        baseline=baseline,
        follow_up=follow_up,
        baseline_date=start,
        follow_up_date=start + datetime.timedelta(days=days),
        motion=motion,
        nodules=tuple(tracked),
        baseline_exam=_exam([n.baseline_lung_rads for n in tracked if n.baseline_label]),
        follow_up_exam=_exam([n.follow_up_lung_rads for n in tracked if n.follow_up_label]),
    )


def truth_document(
    pair: FollowUpPair, studies: tuple[StudyFiles, StudyFiles] | None = None
) -> dict[str, Any]:
    """The pair's truth as JSON-ready data (``followup-truth.json``)."""
    uids = (
        {}
        if studies is None
        else {
            "baseline_study_instance_uid": studies[0].study_instance_uid,
            "follow_up_study_instance_uid": studies[1].study_instance_uid,
        }
    )
    return {
        "seed": pair.seed,
        "patient_id": pair.patient_id,
        "baseline_date": pair.baseline_date.isoformat(),
        "follow_up_date": pair.follow_up_date.isoformat(),
        "days_between": pair.days,
        **uids,
        "motion": {
            "maps": "baseline patient LPS (mm) to follow-up patient LPS (mm): x -> R x + t",
            "rotation": [list(r) for r in pair.motion.rotation],
            "translation": list(pair.motion.translation),
            "rotation_deg": round(pair.motion.rotation_deg, 3),
        },
        "lung_rads_version": "v2022",
        "baseline_exam_lung_rads": pair.baseline_exam,
        "follow_up_exam_lung_rads": pair.follow_up_exam,
        "nodules": [dataclasses.asdict(n) for n in pair.nodules],
        "calcified_nodules": [
            {
                "label": n.label,
                "center_lps_mm": list(n.center_lps_mm),
                "long_axis_mm": n.long_axis_mm,
            }
            for n in pair.baseline.nodules
            if n.calcified
        ],
    }


def write_follow_up_pair(pair: FollowUpPair, out_dir: Path) -> tuple[StudyFiles, StudyFiles]:
    """Write both studies as DICOM (:func:`training.phantom_dicom.write_phantom_study`, same
    PatientID, their own dates and UIDs) under ``out_dir/<patient>/baseline/`` and
    ``out_dir/<patient>/follow-up/``, and ``followup-truth.json`` beside them."""
    folder = Path(out_dir) / safe_name(pair.patient_id)
    base = write_phantom_study(
        pair.baseline,
        folder,
        patient_id=pair.patient_id,
        study_date=pair.baseline_date,
        folder="baseline",
    )
    fu = write_phantom_study(
        pair.follow_up,
        folder,
        patient_id=pair.patient_id,
        study_date=pair.follow_up_date,
        folder="follow-up",
    )
    doc = truth_document(pair, (base, fu))
    (folder / "followup-truth.json").write_text(json.dumps(doc, indent=2) + "\n")
    return base, fu


def tracked_truth(pair: FollowUpPair, study: Study) -> dict[int, TrackedNodule]:
    """The tracked nodules present in ``study``, by their label there."""
    out: dict[int, TrackedNodule] = {}
    for n in pair.nodules:
        label = n.label(study)
        if label is not None:
            out[label] = n
    return out
