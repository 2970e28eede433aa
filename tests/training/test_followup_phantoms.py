"""Follow-up pairs (issue 14): two studies of one synthetic patient, the rigid repositioning
between them, the truth across both, and the comparison measured end to end on the truth.

Small pairs (128 matrix, 60 slices) so the module runs in seconds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest

from preread.followup.growth import volume_doubling_time
from training.evaluate_followup import read_pair, summarize, truth_findings, truth_reader
from training.followup_phantoms import FollowUpPair, follow_up_pair, write_follow_up_pair

pytestmark = pytest.mark.train

SMALL = {"matrix": 128, "max_slices": 60}
PRESENT = {"new": (False, True), "resolved": (True, False), "persistent": (True, True)}
SEEDS = (970002, 970003)  # 4 and 5 nodules: new, stable, grown (and shrunk) ones


@pytest.fixture(scope="module")
def pairs() -> dict[int, FollowUpPair]:
    return {s: follow_up_pair(s, **SMALL) for s in SEEDS}  # type: ignore[arg-type]


def test_the_same_seed_gives_the_same_pair(pairs: dict[int, FollowUpPair]) -> None:
    again = follow_up_pair(SEEDS[0], **SMALL)  # type: ignore[arg-type]
    pair = pairs[SEEDS[0]]
    assert again.nodules == pair.nodules
    assert np.array_equal(again.follow_up.volume.array, pair.follow_up.volume.array)


def test_a_pair_is_one_patient_in_two_studies(
    pairs: dict[int, FollowUpPair], tmp_path: Path
) -> None:
    pair = pairs[SEEDS[0]]
    base, fu = write_follow_up_pair(pair, tmp_path)
    assert base.study_dir == tmp_path / "PHANTOM-FU-970002" / "baseline"
    assert fu.study_dir == tmp_path / "PHANTOM-FU-970002" / "follow-up"
    first = pydicom.dcmread(next(base.ct_dir.glob("*.dcm")), stop_before_pixels=True)
    second = pydicom.dcmread(next(fu.ct_dir.glob("*.dcm")), stop_before_pixels=True)
    assert first.PatientID == second.PatientID == pair.patient_id
    assert first.StudyInstanceUID != second.StudyInstanceUID
    assert first.SeriesInstanceUID != second.SeriesInstanceUID
    assert first.FrameOfReferenceUID != second.FrameOfReferenceUID
    assert first.StudyDate == pair.baseline_date.strftime("%Y%m%d")
    assert second.StudyDate == pair.follow_up_date.strftime("%Y%m%d")
    assert 60 <= pair.days <= 400 and second.StudyDate > first.StudyDate
    # the scanner's grid in both: the patient moved, not the scanner
    assert first.ImagePositionPatient == second.ImagePositionPatient
    doc = json.loads((tmp_path / "PHANTOM-FU-970002" / "followup-truth.json").read_text())
    assert doc["baseline_study_instance_uid"] == base.study_instance_uid
    assert doc["follow_up_study_instance_uid"] == fu.study_instance_uid
    assert doc["days_between"] == pair.days
    assert [n["key"] for n in doc["nodules"]] == [n.key for n in pair.nodules]


def test_the_motion_moves_image_label_and_truth_alike(pairs: dict[int, FollowUpPair]) -> None:
    for pair in pairs.values():
        m = pair.motion
        assert 0.3 < m.rotation_deg <= 4.5
        g = pair.follow_up.volume.geometry
        checked = 0
        for n in pair.nodules:
            if n.status != "persistent":
                continue
            assert n.baseline_center_lps_mm is not None and n.follow_up_center_lps_mm is not None
            mapped = m.apply(n.baseline_center_lps_mm)
            assert np.allclose(mapped, n.follow_up_center_lps_mm)
            idx = np.argwhere(pair.follow_up.label == n.follow_up_label)
            centroid = g.index_to_lps(idx.mean(axis=0))
            # a voxel is 2.7 mm in-plane here: the centroid of a few dozen voxels
            assert np.linalg.norm(centroid - np.asarray(mapped)) < 2.5
            idx0 = np.argwhere(pair.baseline.label == n.baseline_label)
            centroid0 = pair.baseline.volume.geometry.index_to_lps(idx0.mean(axis=0))
            assert np.linalg.norm(centroid0 - np.asarray(n.baseline_center_lps_mm)) < 2.5
            checked += 1
        assert checked >= 2
        # the truth of the follow-up phantom is the moved one
        by_label = {t.label: t for t in pair.follow_up.nodules}
        for n in pair.nodules:
            if n.follow_up_label is not None:
                assert by_label[n.follow_up_label].center_lps_mm == n.follow_up_center_lps_mm


def test_statuses_sizes_and_vdt_in_the_truth(pairs: dict[int, FollowUpPair]) -> None:
    fates = set()
    for pair in pairs.values():
        assert sum(n.status == "new" for n in pair.nodules) >= 1
        for n in pair.nodules:
            fates.add(n.fate)
            present = (n.baseline_label is not None, n.follow_up_label is not None)
            assert present == PRESENT[n.status]
            if n.status != "persistent":
                assert n.vdt_days is None
                continue
            assert n.baseline_volume_mm3 is not None and n.follow_up_volume_mm3 is not None
            assert n.baseline_diameter_mm is not None and n.follow_up_diameter_mm is not None
            ratio = n.follow_up_volume_mm3 / n.baseline_volume_mm3
            diameters = n.follow_up_diameter_mm / n.baseline_diameter_mm
            assert ratio == pytest.approx(diameters**3, rel=1e-4)  # volumes: 3 decimals
            if n.fate == "stable":
                assert ratio == pytest.approx(1.0) and n.vdt_days is None
            elif n.fate == "grown":
                assert 1.29 < ratio < 3.01
                expected = volume_doubling_time(
                    n.baseline_volume_mm3, n.follow_up_volume_mm3, pair.days
                )
                assert expected is not None and n.vdt_days == pytest.approx(expected, abs=0.05)
                assert n.vdt_days is not None and n.vdt_days > 0
            growing = (n.diameter_change_mm or 0.0) > 1.5 and pair.days <= 366
            assert n.follow_up_context == ("growing" if growing else "stable")
    assert {"new", "stable", "grown"} <= fates


def test_truth_mode_gives_the_true_statuses(pairs: dict[int, FollowUpPair]) -> None:
    """compare() end to end: registration of the lung surfaces, matching, growth, Lung-RADS."""
    reader = truth_reader()
    results = [read_pair(pair, reader) for pair in pairs.values()]
    for pair, r in zip(pairs.values(), results, strict=True):
        assert r.comparison_status == "compared", r.reason
        assert r.registration_error_mm is not None and r.registration_error_mm < 3.0
        assert {o.key: o.predicted_status for o in r.nodules} == {
            n.key: n.status for n in pair.nodules
        }
        assert r.exam == pair.follow_up_exam and r.baseline_exam == pair.baseline_exam
        assert len(truth_findings(pair, "follow-up")) == sum(
            n.follow_up_label is not None for n in pair.nodules
        )
    doc = summarize(results)
    assert doc["matching"]["f1"] == 1.0
    assert doc["status"]["accuracy"] == 1.0
    assert doc["vdt"]["n"] >= 1 and doc["vdt"]["max_abs_rel_error"] < 0.01
    assert doc["exam_category"]["agreement"] == 1.0


def test_the_moved_scan_keeps_its_lungs(pairs: dict[int, FollowUpPair]) -> None:
    """The motion brings in anatomy from beyond the scanned range as the edge slices, not as a
    slab of air that would join the lungs to the air outside the body."""
    from inference.lungs import lung_mask

    canonical = [p for p in pairs.values() if p.baseline.volume.geometry.slice_direction[2] > 0]
    assert canonical
    for pair in canonical:
        volumes = [
            lung_mask(v.array, v.geometry).volume_ml
            for v in (pair.baseline.volume, pair.follow_up.volume)
        ]
        assert volumes[0] > 100.0
        assert volumes[1] == pytest.approx(volumes[0], rel=0.1)
