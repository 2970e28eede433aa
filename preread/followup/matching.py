"""Which current finding is which prior nodule: one-to-one matching and the growth of each.

The prior's nodule centres are mapped into the current study's patient coordinates by the
registration (:class:`~preread.followup.registration.RigidTransform`) and paired with the
current findings by the Hungarian algorithm on Euclidean distance (the pairing with the least
total distance, which a greedy nearest-first pairing can miss when two nodules lie close
together). A pair counts only within the gate :func:`gate_mm`: half the larger long axis of
the two, at least :data:`MIN_GATE_MM` (registration error, inspiration, the centre of a
growing nodule moving). Among pairings, the most pairs within the gate win, then the least
total distance.

A matched pair is ``persistent`` and keeps the prior's tracking UID, an unmatched current
finding is ``new`` with a tracking UID of its own, an unmatched prior nodule is ``resolved``.

Pure functions of domain objects: no I/O.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from datetime import date

import numpy as np
import numpy.typing as npt
from scipy.optimize import linear_sum_assignment

from preread.domain import Finding, NoduleComparison
from preread.followup.growth import (
    diameter_change_mm,
    vdt_band,
    volume_change_pct,
    volume_doubling_time,
)
from preread.followup.registration import RigidTransform

__all__ = ["MIN_GATE_MM", "add_baseline", "gate_mm", "match_nodules"]

#: The smallest distance (mm) within which a prior and a current nodule may match.
MIN_GATE_MM = 5.0


def gate_mm(current: Finding, prior: Finding) -> float:
    """How far apart (mm, after registration) ``current`` and ``prior`` may lie and still be
    one nodule: half the larger of their long axes, at least :data:`MIN_GATE_MM`."""
    return max(MIN_GATE_MM, max(current.long_axis_mm, prior.long_axis_mm) / 2.0)


def _by_label(findings: Sequence[Finding], name: str) -> list[Finding]:
    ordered = sorted(findings, key=lambda f: f.label)
    labels = [f.label for f in ordered]
    if len(set(labels)) != len(labels):
        raise ValueError(f"{name} findings have duplicate labels: {labels}")
    return ordered


def _centres(findings: Sequence[Finding]) -> npt.NDArray[np.float64]:
    return np.asarray([f.center_lps_mm for f in findings], dtype=np.float64).reshape(-1, 3)


def _assign(
    current: Sequence[Finding], prior: Sequence[Finding], transform: RigidTransform
) -> list[tuple[int, int]]:
    """(current index, prior index) pairs: the most pairs within the gate, then the least
    total distance. Pairs outside the gate cost more than all gated distances together, so
    the assignment takes one only where nothing better is left; those are dropped."""
    if not current or not prior:
        return []
    here = _centres(current)
    there = transform.apply_points(_centres(prior))
    distance = np.linalg.norm(here[:, None, :] - there[None, :, :], axis=2)
    gates = np.array([[gate_mm(c, p) for p in prior] for c in current])
    inside = distance <= gates
    if not inside.any():
        return []
    outside_cost = 1.0 + float(distance[inside].sum())
    rows, cols = linear_sum_assignment(np.where(inside, distance, outside_cost))
    return [(int(r), int(c)) for r, c in zip(rows, cols, strict=True) if inside[r, c]]


def _growth(row: NoduleComparison, prior: Finding, current: Finding, days: int) -> NoduleComparison:
    """``row`` with the volume and diameter changes from ``prior`` to ``current``."""
    vdt = volume_doubling_time(prior.volume_mm3, current.volume_mm3, days)
    vdt_days = None if vdt is None else round(vdt, 1)
    return dataclasses.replace(
        row,
        prior_volume_mm3=prior.volume_mm3,
        current_volume_mm3=current.volume_mm3,
        volume_change_pct=(
            volume_change_pct(prior.volume_mm3, current.volume_mm3)
            if prior.volume_mm3 > 0
            else None
        ),
        vdt_days=vdt_days,
        vdt_band=vdt_band(vdt_days),
        prior_mean_diameter_mm=prior.mean_diameter_mm,
        current_mean_diameter_mm=current.mean_diameter_mm,
        diameter_change_mm=diameter_change_mm(prior.mean_diameter_mm, current.mean_diameter_mm),
    )


def match_nodules(
    current: Sequence[Finding],
    prior: Sequence[Finding],
    transform: RigidTransform,
    *,
    current_study_date: date,
    prior_study_date: date,
    prior_study_uid: str,
    prior_tracking_uids: Mapping[int, str],
    new_tracking_uid: Callable[[Finding], str],
) -> tuple[NoduleComparison, ...]:
    """The comparison rows of the ``current`` findings against the ``prior`` study's.

    ``transform`` maps the prior's patient coordinates to the current's (the registration of
    the prior onto the current study). ``prior_tracking_uids`` gives the tracking UID of each
    prior finding by its label (ValueError if one is missing): a persistent or resolved
    nodule keeps it. ``new_tracking_uid`` gives a new finding its own (e.g.
    :func:`preread.reports.uids.tracking_uid` of the current result).

    Every row names the prior study and the days between the two; a persistent row has the
    volumes, volume change, doubling time (one decimal; the band is that of the rounded value
    shown) and mean diameters of both studies, a new row the current figures, a resolved row
    the prior figures and centre (in the prior's own coordinates, as are all
    ``prior_center_lps_mm``). A mean diameter the finding lacks stays None, and so does the
    diameter change. Rows come in current label order (new and persistent together), then
    the resolved ones in prior label order. Duplicate labels on either side are a ValueError.
    """
    cur = _by_label(current, "current")
    pri = _by_label(prior, "prior")
    missing = [p.label for p in pri if p.label not in prior_tracking_uids]
    if missing:
        raise ValueError(f"no tracking UID for prior findings {missing}")
    days = (current_study_date - prior_study_date).days
    matched = dict(_assign(cur, pri, transform))  # current index → prior index

    rows: list[NoduleComparison] = []
    for i, c in enumerate(cur):
        j = matched.get(i)
        if j is None:
            rows.append(
                NoduleComparison(
                    status="new",
                    tracking_uid=new_tracking_uid(c),
                    current_label=c.label,
                    prior_label=None,
                    prior_study_uid=prior_study_uid,
                    days_between=days,
                    current_volume_mm3=c.volume_mm3,
                    current_mean_diameter_mm=c.mean_diameter_mm,
                )
            )
            continue
        p = pri[j]
        row = NoduleComparison(
            status="persistent",
            tracking_uid=prior_tracking_uids[p.label],
            current_label=c.label,
            prior_label=p.label,
            prior_study_uid=prior_study_uid,
            prior_center_lps_mm=p.center_lps_mm,
            days_between=days,
        )
        rows.append(_growth(row, p, c, days))
    taken = set(matched.values())
    for j, p in enumerate(pri):
        if j in taken:
            continue
        rows.append(
            NoduleComparison(
                status="resolved",
                tracking_uid=prior_tracking_uids[p.label],
                current_label=None,
                prior_label=p.label,
                prior_study_uid=prior_study_uid,
                prior_center_lps_mm=p.center_lps_mm,
                days_between=days,
                prior_volume_mm3=p.volume_mm3,
                prior_mean_diameter_mm=p.mean_diameter_mm,
            )
        )
    return tuple(rows)


def add_baseline(
    rows: Sequence[NoduleComparison],
    current: Sequence[Finding],
    baseline: Sequence[Finding],
    transform: RigidTransform,
    *,
    baseline_study_uid: str,
) -> tuple[NoduleComparison, ...]:
    """``rows`` (from :func:`match_nodules`) with the baseline figures of their persistent
    nodules: ``baseline_study_uid``, ``baseline_volume_mm3`` and
    ``baseline_mean_diameter_mm``.

    The baseline is the patient's earliest prior, compared with when the newest prior is
    another study (the slow growth of a nodule shows over years, not between two
    neighbouring studies). ``transform`` maps the baseline's patient coordinates to the
    current's. The current findings of the persistent rows (found in ``current`` by label;
    ValueError if one is missing) are matched to the ``baseline`` findings as in
    :func:`match_nodules` (Hungarian, same gate); a persistent row whose nodule has no match
    in the baseline, and every new or resolved row, is returned unchanged. So are all rows
    when the baseline is the prior they were compared with. Row order is kept.
    """
    by_label = {f.label: f for f in current}
    persistent = [
        i
        for i, r in enumerate(rows)
        if r.status == "persistent" and r.prior_study_uid != baseline_study_uid
    ]
    wanted: list[Finding] = []
    for i in persistent:
        label = rows[i].current_label
        if label is None or label not in by_label:
            raise ValueError(f"no current finding with label {label} for a persistent row")
        wanted.append(by_label[label])
    base = _by_label(baseline, "baseline")
    out = list(rows)
    for w, b in _assign(wanted, base, transform):
        found = base[b]
        out[persistent[w]] = dataclasses.replace(
            rows[persistent[w]],
            baseline_study_uid=baseline_study_uid,
            baseline_volume_mm3=found.volume_mm3,
            baseline_mean_diameter_mm=found.mean_diameter_mm,
        )
    return tuple(out)
