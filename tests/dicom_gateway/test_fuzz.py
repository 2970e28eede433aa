"""The DICOM fuzzer in CI (issue 12, "Fuzzing"): ``bench/fuzz_dicom.py`` with a fixed seed.

Every kind of mutation (bench/fuzz_mutations.py) is applied once, alone, to the 16-slice
phantom template and read by ``preread read`` (the CLI's code in a forked child under a time
and an address-space limit): no crash, no hang, nothing written outside ``--out`` or for a
refused study, every refusal with a printable reason on one ``error:`` line, nothing else on
stderr, and every series that a mutation makes wrong refused. The longer run is
``./run fuzz`` (README, "Fuzzing").
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from fuzz_dicom import run_fuzz
from fuzz_mutations import MUTATIONS
from fuzz_outcomes import FAILURES, KINDS, Limits, Outcome, classify, summary

SEED = 12


def test_every_mutation_is_read_or_refused_with_a_reason(tmp_path: Path) -> None:
    report = run_fuzz(len(MUTATIONS), SEED, tmp_path, limits=Limits(timeout_s=60))
    text = summary(report)

    assert report.failures == [], text
    counts = report.counts()
    assert counts["refused"] >= 25 and counts["read"] + counts["read-skipped"] >= 5, text
    for outcome in report.outcomes:
        assert outcome.noise == "", (outcome.case, outcome.noise)  # one line per study
        if outcome.kind == "refused":
            assert outcome.reasons and all(outcome.reasons), outcome
        if outcome.expect == "refuse":
            assert outcome.kind == "refused", outcome
    assert max(o.seconds for o in report.outcomes) < 30, text


def _outcome(code: int | None, expect: str = "either") -> Outcome:
    return Outcome(0, "slices", ["m: x"], expect, "", code, 0.1, 0.0, 1, 1)


DOC = (
    '{"study_instance_uid": "1.2.3", "status": "%s", "reason": %s, "files": [], '
    '"skipped_files": []}'
)


@pytest.mark.parametrize(
    ("code", "stdout", "stderr", "expect", "kind"),
    [
        (
            2,
            DOC % ("failed", '"slope 0"'),
            "error: study 1.2.3 refused: slope 0",
            "either",
            "refused",
        ),
        (2, DOC % ("failed", '""'), "error: study 1.2.3 refused: ", "either", "unclear"),
        (2, DOC % ("failed", '"slope 0"'), "", "either", "unclear"),
        (2, "", "error: /in: no DICOM study found", "either", "unclear"),  # names no file
        (2, "", "error: /in: no DICOM study found: f1: cut short", "either", "refused"),
        (1, "", "Traceback (most recent call last):\nValueError: x", "either", "crash"),
        (-11, "", "", "either", "crash"),
        (0, DOC % ("done", "null"), "", "either", "read"),
        (0, DOC % ("done", "null"), "", "refuse", "accepted"),
    ],
)
def test_outcomes_are_classified(
    code: int, stdout: str, stderr: str, expect: str, kind: str, tmp_path: Path
) -> None:
    outcome = _outcome(code, expect)

    classify(outcome, False, stdout, stderr, [], tmp_path, ["f1"])

    assert outcome.kind == kind, outcome


def test_hangs_escapes_and_files_for_refused_studies_are_failures(tmp_path: Path) -> None:
    hung = _outcome(None)
    classify(hung, True, "", "", [], tmp_path, ["f1"])
    escaped = _outcome(0)
    classify(escaped, False, DOC % ("done", "null"), "", ["/tmp/x"], tmp_path, ["f1"])
    (tmp_path / "1.2.3").mkdir()
    (tmp_path / "1.2.3" / "SR.dcm").write_bytes(b"x")
    written = _outcome(2)
    refused = DOC % ("failed", '"slope 0"')
    classify(written, False, refused, "error: study 1.2.3 refused: slope 0", [], tmp_path, ["f1"])

    assert [hung.kind, escaped.kind, written.kind] == ["hang", "escape", "written"]
    assert {"hang", "escape", "written", "crash", "unclear", "accepted"} == set(FAILURES)
    assert KINDS[:3] == ("read", "read-skipped", "refused")
