"""The comparison of one pre-read with the patient's priors: registration, matching, growth,
the baseline, the tracking UID a nodule keeps, a registration that does not fit, and what
the JSON and Lung-RADS make of it."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime

import numpy as np
import numpy.typing as npt

from preread.domain import Finding, ModelRef, PreReadResult, PriorStudy
from preread.followup.comparison import PriorReading, compare
from preread.followup.lungrads import assess
from preread.reports.json import to_json
from preread.reports.uids import new_tracking_uid, tracking_uid

LUNGS = (((-70.0, 10.0, 0.0), (45.0, 60.0, 90.0)), ((65.0, 10.0, 5.0), (40.0, 58.0, 85.0)))


def surface(n: int, seed: int) -> npt.NDArray[np.float64]:
    """Points on two ellipsoidal lungs (LPS mm), a fresh random sample per ``seed``."""
    rng = np.random.default_rng(seed)
    out = []
    for centre, axes in LUNGS:
        d = rng.normal(size=(n, 3))
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        out.append(np.asarray(centre) + d * np.asarray(axes))
    return np.concatenate(out)


def rotation_z(deg: float) -> npt.NDArray[np.float64]:
    a = np.radians(deg)
    return np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])


ROTATION, SHIFT = rotation_z(4.0), np.array([18.0, -12.0, 25.0])


def moved(p: tuple[float, float, float]) -> tuple[float, float, float]:
    """Where a prior point lies in the current study (the patient repositioned)."""
    x, y, z = ROTATION @ np.asarray(p) + SHIFT
    return (float(x), float(y), float(z))


def nodule(label: int, centre: tuple[float, float, float], mean: float, volume: float) -> Finding:
    return Finding(
        label=label,
        center_lps_mm=centre,
        long_axis_mm=mean + 1.0,
        volume_mm3=volume,
        probability=0.9,
        mean_hu=-20.0,
        voxel_count=int(volume),
        nodule_type="solid",
        axial_long_axis_mm=mean + 0.5,
        short_axis_mm=mean - 0.5,
    )


PRIOR_FINDINGS = (
    nodule(1, (-80.0, 0.0, 20.0), 6.0, 113.0),  # grows to 8.0 mm: VDT
    nodule(2, (60.0, 30.0, -30.0), 9.0, 382.0),  # stays
    nodule(3, (70.0, -20.0, 40.0), 5.0, 65.0),  # resolves
)
CURRENT_FINDINGS = (
    nodule(1, moved((-80.0, 0.0, 20.0)), 8.0, 268.0),
    nodule(2, moved((60.5, 30.0, -30.0)), 9.1, 390.0),
    nodule(3, moved((-60.0, 40.0, -50.0)), 4.5, 48.0),  # new
)
PRIOR_UIDS = {1: "2.25.1001", 2: "2.25.1002", 3: "2.25.1003"}
PREVIOUS = PriorReading(
    PriorStudy("1.2.3.2024", date(2024, 7, 1), "previous"),
    PRIOR_FINDINGS,
    PRIOR_UIDS,
    surface(1500, 1),
)
CURRENT_SURFACE = (ROTATION @ surface(1500, 2).T).T + SHIFT


def result(comparison: object = None) -> PreReadResult:
    return PreReadResult(
        study_instance_uid="1.2.3.2025",
        series_instance_uid="1.2.3.2025.1",
        frame_of_reference_uid="1.2.3.2025.2",
        model=ModelRef("lung-nodule", "2.1.0", "PreRead Lung Nodule", "ab" * 32),
        provider="CPUExecutionProvider",
        findings=CURRENT_FINDINGS,
        created=datetime(2025, 1, 5, 9, 0, tzinfo=UTC),
        comparison=comparison,  # type: ignore[arg-type]
    )


def _new_uid(f: Finding) -> str:
    return str(new_tracking_uid(result(), f, uid_seed="job-1"))


def test_compare_registers_matches_and_measures_growth() -> None:
    c = compare(CURRENT_FINDINGS, CURRENT_SURFACE, date(2025, 1, 5), PREVIOUS, None, _new_uid)
    assert c.status == "compared" and c.prior == PREVIOUS.study and c.baseline is None
    assert c.registration_residual_mm is not None and c.registration_residual_mm < 2.0
    by = {(n.status, n.current_label, n.prior_label): n for n in c.nodules}
    assert set(by) == {
        ("persistent", 1, 1),
        ("persistent", 2, 2),
        ("new", 3, None),
        ("resolved", None, 3),
    }
    grown = by[("persistent", 1, 1)]
    assert grown.tracking_uid == "2.25.1001" and grown.days_between == 188
    assert grown.volume_change_pct == 137.2 and grown.diameter_change_mm == 2.0
    assert (
        grown.vdt_days is not None
        and abs(grown.vdt_days - 188 * np.log(2) / np.log(268 / 113)) < 0.1
    )
    assert grown.vdt_band == "<400"
    assert by[("persistent", 2, 2)].vdt_days is None  # 2 % is no growth to time
    assert by[("new", 3, None)].tracking_uid == _new_uid(CURRENT_FINDINGS[2])
    assert by[("resolved", None, 3)].tracking_uid == "2.25.1003"


def test_a_persistent_nodule_keeps_its_tracking_uid_in_every_report() -> None:
    c = compare(CURRENT_FINDINGS, CURRENT_SURFACE, date(2025, 1, 5), PREVIOUS, None, _new_uid)
    r = result(c)
    assert str(tracking_uid(r, CURRENT_FINDINGS[0], uid_seed="job-1")) == "2.25.1001"
    assert str(tracking_uid(r, CURRENT_FINDINGS[2], uid_seed="job-1")) == _new_uid(
        CURRENT_FINDINGS[2]
    )
    doc = to_json(r, uid_seed="job-1")
    assert [f["tracking_uid"] for f in doc["findings"]][:2] == ["2.25.1001", "2.25.1002"]
    rows = doc["comparison"]["nodules"]
    assert doc["comparison"]["prior"] == {
        "study_instance_uid": "1.2.3.2024",
        "study_date": "2024-07-01",
        "role": "previous",
    }
    assert {(n["status"], n["label"]) for n in rows} >= {("persistent", 1), ("new", 3)}
    # Lung-RADS from the comparison: nodule 1 grew 2.0 mm in 6 months → growing solid 8 mm:
    # 4B; nodule 2 stable 9.1 mm (prior category unknown): 4A; nodule 3 new 4.5 mm: 3
    rads = assess(r.findings, c)
    assert [(n.label, n.category) for n in rads.nodules] == [(1, "4B"), (2, "4A"), (3, "3")]
    assert rads.category == "4B" and rads.rule == "solid-growing-ge8"


def test_the_baseline_adds_its_figures_to_the_persistent_nodules() -> None:
    # the baseline was scanned in yet another position: its nodule 1, in its own frame
    rb, tb = rotation_z(-2.0), np.array([-5.0, 4.0, -10.0])
    x, y, z = rb @ np.array([-80.0, 0.0, 20.0]) + tb
    baseline = PriorReading(
        PriorStudy("1.2.3.2022", date(2022, 6, 1), "baseline"),
        (nodule(7, (float(x), float(y), float(z)), 4.0, 34.0),),
        {7: "2.25.0007"},
        (rb @ surface(1500, 3).T).T + tb,
    )
    c = compare(CURRENT_FINDINGS, CURRENT_SURFACE, date(2025, 1, 5), PREVIOUS, baseline, _new_uid)
    assert c.baseline == baseline.study
    by = {n.current_label: n for n in c.nodules}
    assert (by[1].baseline_study_uid, by[1].baseline_volume_mm3) == ("1.2.3.2022", 34.0)
    assert by[1].baseline_mean_diameter_mm == 4.0
    assert by[2].baseline_study_uid is None  # no match in the baseline
    # the previous prior as its own baseline adds nothing
    same = compare(
        CURRENT_FINDINGS, CURRENT_SURFACE, date(2025, 1, 5), PREVIOUS, PREVIOUS, _new_uid
    )
    assert same.baseline is None and all(n.baseline_study_uid is None for n in same.nodules)


def test_a_prior_that_does_not_register_makes_the_comparison_unavailable() -> None:
    other = replace(PREVIOUS, lung_surface_lps_mm=surface(1500, 4) * np.array([1.6, 0.7, 1.3]))
    c = compare(CURRENT_FINDINGS, CURRENT_SURFACE, date(2025, 1, 5), other, None, _new_uid)
    assert c.status == "unavailable" and c.nodules == () and c.retryable is False
    assert "does not register" in (c.reason or "") or "rotation" in (c.reason or "")
    rads = assess(CURRENT_FINDINGS, c)
    assert rads.category == "0"  # the prior is being located for comparison
