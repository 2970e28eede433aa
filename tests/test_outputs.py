"""``PREREAD_OUTPUTS``: which objects a reading writes; unknown names and a list without SR or
SEG are refused with a clear error."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from preread.outputs import ALL_OUTPUTS, Output, OutputsError, parse_outputs
from preread.settings import Settings


def test_every_output_is_on_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PREREAD_OUTPUTS", raising=False)
    assert Settings().outputs == [Output.SR, Output.SEG, Output.SC, Output.KOS]
    assert frozenset(Settings().outputs) == ALL_OUTPUTS


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("SR,SEG", [Output.SR, Output.SEG]),
        (" sr, seg ,kos,", [Output.SR, Output.SEG, Output.KOS]),
        ('["SR", "SEG", "SC"]', [Output.SR, Output.SEG, Output.SC]),
        ("SR,SEG,SC,SC", [Output.SR, Output.SEG, Output.SC]),
    ],
)
def test_outputs_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: list[Output]
) -> None:
    monkeypatch.setenv("PREREAD_OUTPUTS", value)
    assert Settings().outputs == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("SR,SEG,PDF", "unknown output 'PDF'; known outputs: SR, SEG, SC, KOS"),
        ("SEG,SC,KOS", "leaves out SR: SR and SEG are always written"),
        ("SR", "leaves out SEG"),
        ("", "leaves out SR and SEG"),
        ('["SR", "SEG"', "is not a JSON list"),
        ('{"SR": 1}', "unknown output"),
    ],
)
def test_bad_outputs_are_refused_with_the_reason(
    monkeypatch: pytest.MonkeyPatch, value: str, message: str
) -> None:
    with pytest.raises(OutputsError, match=message):
        parse_outputs(value)
    monkeypatch.setenv("PREREAD_OUTPUTS", value)
    with pytest.raises(ValidationError, match=message):
        Settings()


def test_a_value_that_is_no_list_is_refused() -> None:
    with pytest.raises(OutputsError, match="must list outputs"):
        parse_outputs(5)
