"""The radiologists' worklist (preread.worklist) on SQLite and PostgreSQL: priority order (largest
solid nodule first), filters, paging without repeats, reviewed or not, and the tenant first."""

from __future__ import annotations

import pytest

from preread.domain import ModelRef
from preread.store import JobOutputs, JobState, JobStore, JobUpdate, StudyFingerprint
from preread.store.records import StudyFacts
from preread.store.sizes import largest_sizes
from preread.worklist import Reviewed, Worklist, WorklistQuery, WorklistSort
from tests.store.conftest import FakeClock
from tests.store.test_store import SEG, SR

MODEL = ModelRef(id="lung-nodule", version="2.1.0", name="Lung nodules", sha256="0" * 64)
FP = StudyFingerprint(120, "20250301T080000")


def _finding(size: float, kind: str) -> dict[str, object]:
    return {"long_axis_mm": size, "nodule_type": kind}


def seed_study(
    store: JobStore,
    uid: str,
    *,
    tenant: str,
    date: str,
    findings: list[dict[str, object]] | None,
) -> str:
    """A study of ``tenant`` whose current job is done with ``findings`` (None: still queued)."""
    store.record_study(
        StudyFacts(
            uid,
            f"o-{uid}",
            tenant,
            "CT1",
            f"P-{uid}",
            "",
            "Doe^Jane",
            "19600101",
            "F",
            f"A-{uid}",
            date,
            "101500",
            "CT chest",
        )
    )
    job = store.enqueue(uid, f"o-{uid}", MODEL, FP).job
    if findings is None:
        return job.id
    assert store.claim(job.id, "w1", 60) is not None
    store.advance(job.id, "w1", JobState.INFERRING, JobUpdate(series_instance_uid="1.2.3.9"))
    store.advance(job.id, "w1", JobState.WRITING, JobUpdate(outputs=JobOutputs(sr=SR, seg=SEG)))
    store.finish_done(job.id, "w1", {"findings": findings})
    return job.id


def test_largest_sizes_reads_solid_and_part_solid_as_solid() -> None:
    assert largest_sizes(None) == (None, None)
    assert largest_sizes({"findings": []}) == (None, None)
    found = [_finding(7.0, "solid"), _finding(12.0, "ground-glass"), _finding(9.0, "part-solid")]
    assert largest_sizes({"findings": found}) == (12.0, 9.0)
    assert largest_sizes({"findings": [{"long_axis_mm": "big"}, _finding(4.0, "")]}) == (4.0, None)


def test_worklist_orders_filters_pages_and_keeps_to_its_tenant(
    store: JobStore, clock: FakeClock
) -> None:
    solid_small = seed_study(
        store, "1.2.1", tenant="a", date="20250101", findings=[_finding(6.5, "solid")]
    )
    ggo_large = seed_study(
        store, "1.2.2", tenant="a", date="20250102", findings=[_finding(25.0, "ground-glass")]
    )
    solid_large = seed_study(
        store,
        "1.2.3",
        tenant="a",
        date="20241201",
        findings=[_finding(6.0, "solid"), _finding(14.0, "part-solid")],
    )
    clear = seed_study(store, "1.2.4", tenant="a", date="20250103", findings=[])
    queued = seed_study(store, "1.2.5", tenant="a", date="20250104", findings=None)
    seed_study(store, "1.2.6", tenant="b", date="20250105", findings=[_finding(30.0, "solid")])
    worklist = Worklist(store)

    page = worklist.page(WorklistQuery(tenant="a"))
    assert page.total == 5
    assert [r.job_id for r in page.rows] == [solid_large, solid_small, ggo_large, queued, clear]
    top = page.rows[0]
    assert (top.largest_solid_mm, top.largest_finding_mm, top.findings_count) == (14.0, 14.0, 2)
    assert top.patient_name == "Doe^Jane" and top.review_version is None

    by_date = worklist.page(WorklistQuery(tenant="a", sort=WorklistSort.DATE, descending=False))
    assert [r.study_date for r in by_date.rows] == sorted(r.study_date for r in by_date.rows)
    largest = worklist.page(WorklistQuery(tenant="a", sort=WorklistSort.LARGEST))
    assert largest.rows[0].job_id == ggo_large

    done = worklist.page(WorklistQuery(tenant="a", states=(JobState.DONE,), min_findings=1))
    assert {r.job_id for r in done.rows} == {solid_small, ggo_large, solid_large}
    january = worklist.page(WorklistQuery(tenant="a", date_from="20250101", date_to="20250102"))
    assert {r.job_id for r in january.rows} == {solid_small, ggo_large}

    seen = []
    for number in (1, 2, 3):
        part = worklist.page(WorklistQuery(tenant="a", page=number, page_size=2))
        assert part.pages == 3
        seen += [r.job_id for r in part.rows]
    assert sorted(seen) == sorted(r.job_id for r in page.rows)  # no repeat, none skipped

    assert worklist.page(WorklistQuery(tenant="a", reviewed=Reviewed.YES)).total == 0
    assert worklist.page(WorklistQuery(tenant="a", reviewed=Reviewed.NO)).total == 5
    assert worklist.page(WorklistQuery(tenant="c")).total == 0
    other = worklist.page(WorklistQuery(tenant="b"))
    assert [r.study_instance_uid for r in other.rows] == ["1.2.6"]


@pytest.mark.parametrize(
    "bad",
    [
        {"tenant": ""},
        {"tenant": "a", "page": 0},
        {"tenant": "a", "page_size": 500},
        {"tenant": "a", "date_from": "2025-01-01"},
        {"tenant": "a", "min_findings": -1},
    ],
)
def test_a_malformed_query_says_what_is_wrong(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"tenant|page|date_from|min_findings"):
        WorklistQuery(**bad)  # type: ignore[arg-type]
