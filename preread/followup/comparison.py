"""The current study against the patient's priors: register, match, measure growth.

:func:`compare` puts the pure pieces together for one pre-read: the prior's lung surface is
registered onto the current one (:func:`~preread.followup.registration.register_points`), the
prior's findings are matched to the current ones (:func:`~preread.followup.matching.
match_nodules`), and, when the earliest prior (the baseline) is another study, the persistent
nodules get their baseline figures too. A registration that does not fit (residual above
:data:`MAX_RESIDUAL_MM`, or a rotation no repositioning explains) gives an ``unavailable``
comparison with the reason, never a matching built on a wrong alignment.

Everything here is in memory: finding the priors (C-FIND), retrieving and reading them is the
job runner's (:mod:`preread.jobs`), which hands the readings in as :class:`PriorReading`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date

import numpy as np
import numpy.typing as npt

from preread.domain import Comparison, Finding, PriorStudy
from preread.followup.matching import add_baseline, match_nodules
from preread.followup.registration import RigidTransform, register_points

__all__ = ["MAX_RESIDUAL_MM", "MAX_ROTATION_DEG", "PriorReading", "compare"]

#: The median distance (mm) of the registered prior lung surface to the current one above
#: which the alignment is not trusted (a good fit of the same patient: ~0.5–1.5 mm, breathing
#: and the voxel staircase)
MAX_RESIDUAL_MM = 4.0
#: Repositioning on the table turns the patient a few degrees, not more
MAX_ROTATION_DEG = 15.0


@dataclass(frozen=True)
class PriorReading:
    """A prior study as PreRead read it: its findings with their tracking UIDs, and the
    surface points of its lung mask (patient LPS mm) for the registration."""

    study: PriorStudy
    findings: tuple[Finding, ...]
    tracking_uids: Mapping[int, str]
    lung_surface_lps_mm: npt.NDArray[np.float64]


def _register(
    prior: PriorReading, current_surface: npt.NDArray[np.float64]
) -> tuple[RigidTransform | None, float | None, str | None]:
    if len(prior.lung_surface_lps_mm) < 50 or len(current_surface) < 50:
        return None, None, "too few lung surface points to register the studies"
    transform, residual = register_points(prior.lung_surface_lps_mm, current_surface)
    if residual > MAX_RESIDUAL_MM:
        return (
            None,
            residual,
            (
                f"the prior {prior.study.study_instance_uid} does not register onto this study "
                f"(residual {residual:.1f} mm > {MAX_RESIDUAL_MM} mm)"
            ),
        )
    if transform.rotation_deg > MAX_ROTATION_DEG:
        return (
            None,
            residual,
            (
                f"the prior {prior.study.study_instance_uid} registers only with a "
                f"{transform.rotation_deg:.0f}° rotation (> {MAX_ROTATION_DEG}°)"
            ),
        )
    return transform, residual, None


def compare(
    findings: tuple[Finding, ...],
    lung_surface_lps_mm: npt.NDArray[np.float64],
    study_date: date,
    previous: PriorReading,
    baseline: PriorReading | None,
    new_tracking_uid: Callable[[Finding], str],
) -> Comparison:
    """The comparison of the current ``findings`` (read on ``study_date``, lungs' surface
    ``lung_surface_lps_mm``) with the ``previous`` (newest) prior and, when given and another
    study, the ``baseline`` (earliest) one. ``new_tracking_uid`` names a new nodule (the
    current result's own tracking UID)."""
    transform, residual, why = _register(previous, lung_surface_lps_mm)
    if transform is None:
        return Comparison(
            "unavailable",
            reason=why,
            retryable=False,  # the same scans register no better on a second try
            prior=previous.study,
            registration_residual_mm=residual,
        )
    rows = match_nodules(
        findings,
        previous.findings,
        transform,
        current_study_date=study_date,
        prior_study_date=previous.study.study_date,
        prior_study_uid=previous.study.study_instance_uid,
        prior_tracking_uids=previous.tracking_uids,
        new_tracking_uid=new_tracking_uid,
    )
    base_study = None
    if baseline is not None and (
        baseline.study.study_instance_uid != previous.study.study_instance_uid
    ):
        base_transform, _, _ = _register(baseline, lung_surface_lps_mm)
        if base_transform is not None:  # a baseline that does not register is left out
            rows = add_baseline(
                rows,
                findings,
                baseline.findings,
                base_transform,
                baseline_study_uid=baseline.study.study_instance_uid,
            )
            base_study = baseline.study
    return Comparison(
        "compared",
        prior=previous.study,
        baseline=base_study,
        nodules=rows,
        registration_residual_mm=None if residual is None else round(residual, 2),
    )
