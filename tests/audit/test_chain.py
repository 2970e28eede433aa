"""The hash chain as pure functions: canonical form, links, and what verify_chain reports."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest

from preread.audit.chain import (
    GENESIS,
    ORIGIN,
    Checkpoint,
    Fields,
    Link,
    ProblemKind,
    canonical,
    link_hash,
    normalize_detail,
    verify_chain,
)

AT = datetime(2025, 3, 1, 8, 0, 0, 123456, tzinfo=UTC)


def fields(n: int = 0, **changes: object) -> Fields:
    base = Fields(
        at=AT + timedelta(seconds=n),
        actor="worker-1",
        action="pixels.fetch",
        outcome="success",
        tenant="tenant-a",
        purpose="clinical-preread",
        study_instance_uid="1.2.3",
        detail={"n": n, "b": [1, 2.5]},
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def chain(count: int, anchor: Checkpoint = ORIGIN) -> list[Link]:
    links, prev = [], anchor.hash
    for seq in range(anchor.seq + 1, anchor.seq + 1 + count):
        f = fields(seq)
        digest = link_hash(prev, seq, f)
        links.append(Link(seq, f, prev, digest))
        prev = digest
    return links


def test_canonical_is_sorted_compact_json_with_utc_microseconds() -> None:
    shanghai = timezone(timedelta(hours=8))
    data = canonical(7, fields(at=datetime(2025, 3, 1, 16, 0, tzinfo=shanghai)))
    assert b" " not in data
    document = json.loads(data)
    assert list(document) == sorted(document)
    assert document["at"] == "2025-03-01T08:00:00.000000Z"
    assert document["seq"] == 7
    assert document["detail"] == {"b": [1, 2.5], "n": 0}


def test_canonical_refuses_naive_times() -> None:
    with pytest.raises(ValueError, match="naive"):
        canonical(1, fields(at=datetime(2025, 3, 1)))


def test_link_hash_covers_prev_hash_seq_and_every_field() -> None:
    base = link_hash(GENESIS, 1, fields())
    assert len(base) == 64 and base == link_hash(GENESIS, 1, fields())
    assert link_hash("1" * 64, 1, fields()) != base
    assert link_hash(GENESIS, 2, fields()) != base
    for change in (
        {"actor": "x"},
        {"outcome": "refused"},
        {"tenant": None},
        {"purpose": "research"},
        {"study_instance_uid": "1.2.4"},
        {"detail": {"n": 1, "b": [1, 2.5]}},
        {"at": AT + timedelta(microseconds=1)},
    ):
        assert link_hash(GENESIS, 1, fields(**change)) != base, change


def test_numbers_take_the_form_postgresql_jsonb_gives_back() -> None:
    # jsonb prints 1e+20 as 100000000000000000000 and keeps 1.0; both must hash alike
    assert normalize_detail({"a": 1e20, "b": 1.0, "c": 0.1, "d": (1, 2)}) == {
        "a": 10**20,
        "b": 1,
        "c": 0.1,
        "d": [1, 2],
    }
    assert canonical(1, fields(detail={"x": 1.0})) == canonical(1, fields(detail={"x": 1}))


@pytest.mark.parametrize(
    "detail", [{"x": float("nan")}, {"x": float("inf")}, {1: "a"}, {"x": {1, 2}}, {"x": "a\0"}]
)
def test_values_json_cannot_hold_are_refused(detail: dict[object, object]) -> None:
    with pytest.raises(ValueError):
        normalize_detail(detail)  # type: ignore[arg-type]


def test_an_intact_chain_verifies() -> None:
    result = verify_chain(chain(5), anchor=ORIGIN)
    assert result.ok and result.checked == 5 and result.head.seq == 5
    assert result.message == "audit trail intact: 5 records"
    assert verify_chain([], anchor=ORIGIN).ok


def test_changed_content_is_reported_with_its_seq() -> None:
    links = chain(5)
    links[2] = replace(links[2], fields=replace(links[2].fields, outcome="refused"))
    result = verify_chain(links, anchor=ORIGIN)
    assert not result.ok and result.checked == 2
    assert result.first_problem is not None
    assert (result.first_problem.seq, result.first_problem.kind) == (3, ProblemKind.CHANGED)
    assert "record 3 (changed)" in result.message


def test_a_rewritten_record_with_a_new_hash_breaks_the_next_link() -> None:
    links = chain(5)
    f = replace(links[1].fields, actor="someone-else")
    links[1] = replace(links[1], fields=f, hash=link_hash(links[1].prev_hash, 2, f))
    problem = verify_chain(links, anchor=ORIGIN).first_problem
    assert problem is not None
    assert (problem.seq, problem.kind) == (2, ProblemKind.CHANGED)


def test_a_gap_is_reported_as_removed_naming_the_missing_seqs() -> None:
    links = chain(6)
    del links[2:4]
    problem = verify_chain(links, anchor=ORIGIN).first_problem
    assert problem is not None
    assert (problem.kind, problem.missing) == (ProblemKind.REMOVED, (3, 4))
    assert "records 3-4 missing" in problem.message


def test_removed_and_renumbered_records_break_the_chain() -> None:
    links = chain(4)
    renumbered = [links[0], replace(links[2], seq=2), replace(links[3], seq=3)]
    problem = verify_chain(renumbered, anchor=ORIGIN).first_problem
    assert problem is not None and problem.seq == 2


def test_the_first_retained_record_must_chain_to_the_anchor() -> None:
    links = chain(6)
    anchor = Checkpoint(3, links[2].hash)
    assert verify_chain(links[3:], anchor=anchor).ok
    problem = verify_chain(links[3:], anchor=Checkpoint(3, "f" * 64)).first_problem
    assert problem is not None and (problem.seq, problem.kind) == (4, ProblemKind.ANCHOR)
    missing_first = verify_chain(links[4:], anchor=anchor).first_problem
    assert missing_first is not None and missing_first.missing == (4, 4)


def test_a_truncated_tail_is_caught_only_against_a_checkpoint() -> None:
    links = chain(5)
    head = Checkpoint(5, links[4].hash)
    assert verify_chain(links[:3], anchor=ORIGIN).ok  # the chain alone cannot tell
    result = verify_chain(links[:3], anchor=ORIGIN, expected_head=head)
    assert result.first_problem is not None
    assert result.first_problem.kind is ProblemKind.REMOVED
    assert result.first_problem.missing == (4, 5)
    assert verify_chain(links, anchor=ORIGIN, expected_head=head).ok
    assert verify_chain(links, anchor=ORIGIN, expected_head=Checkpoint(3, links[2].hash)).ok


def test_a_rewritten_history_does_not_match_the_checkpoint() -> None:
    links = chain(3)
    forged = [Link(1, fields(1, actor="x"), GENESIS, link_hash(GENESIS, 1, fields(1, actor="x")))]
    problem = verify_chain(
        forged, anchor=ORIGIN, expected_head=Checkpoint(1, links[0].hash)
    ).first_problem
    assert problem is not None and (problem.seq, problem.kind) == (1, ProblemKind.CHANGED)


def test_a_checkpoint_purged_by_retention_is_checked_against_the_anchor() -> None:
    links = chain(4)
    anchor = Checkpoint(2, links[1].hash)
    assert verify_chain(links[2:], anchor=anchor, expected_head=anchor).ok
    assert verify_chain(links[2:], anchor=anchor, expected_head=Checkpoint(1, "a" * 64)).ok
    bad = verify_chain(links[2:], anchor=anchor, expected_head=Checkpoint(2, "a" * 64))
    assert not bad.ok


def test_checkpoints_read_back_what_they_print() -> None:
    point = Checkpoint(42, "ab" * 32)
    assert Checkpoint.parse(str(point)) == point
    for bad in ("42", "x:" + "a" * 64, "1:" + "a" * 63, "1:" + "g" * 64):
        with pytest.raises(ValueError, match="checkpoint"):
            Checkpoint.parse(bad)
