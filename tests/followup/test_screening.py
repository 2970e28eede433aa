"""PREREAD_LUNG_RADS: which studies are screening exams (by sender or procedure code)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from pydicom.dataset import Dataset

from preread.followup.screening import LungRadsPolicy, LungRadsPolicyError
from preread.settings import Settings


def _with_codes(**sequences: list[str]) -> Dataset:
    ds = Dataset()
    for keyword, values in sequences.items():
        items = []
        for value in values:
            item = Dataset()
            item.CodeValue = value
            items.append(item)
        if keyword == "RequestedProcedureCodeSequence":
            request = Dataset()
            request.RequestedProcedureCodeSequence = items
            ds.RequestAttributesSequence = [request]
        else:
            setattr(ds, keyword, items)
    return ds


def test_off_and_all() -> None:
    for value in ("", "off", "OFF", "none"):
        assert not LungRadsPolicy.parse(value).enabled
        assert not LungRadsPolicy.parse(value).applies("CT1", Dataset())
    every = LungRadsPolicy.parse("all")
    assert every.enabled and every.applies("", None)


def test_by_sender_and_by_procedure_code() -> None:
    policy = LungRadsPolicy.parse("aet:LDCT_CT1, code:RPID16,code:87039-6")
    assert policy.aets == {"LDCT_CT1"} and policy.codes == {"RPID16", "87039-6"}
    assert policy.applies("LDCT_CT1 ", None)
    assert not policy.applies("DIAG_CT", Dataset())
    assert policy.applies("DIAG_CT", _with_codes(ProcedureCodeSequence=["RPID16"]))
    assert policy.applies("DIAG_CT", _with_codes(RequestedProcedureCodeSequence=["87039-6"]))
    assert policy.applies("DIAG_CT", _with_codes(PerformedProtocolCodeSequence=["RPID16"]))
    assert not policy.applies("DIAG_CT", _with_codes(ProcedureCodeSequence=["RPID17"]))


@pytest.mark.parametrize("value", ["yes please", "aet:", "site:X", "aet:A,,code:B"])
def test_bad_values_are_refused_with_the_entry(value: str) -> None:
    with pytest.raises(LungRadsPolicyError, match="PREREAD_LUNG_RADS"):
        LungRadsPolicy.parse(value)


def test_settings_refuse_a_bad_value_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREREAD_LUNG_RADS", "scanner:CT1")
    with pytest.raises(ValidationError, match="aet:TITLE or code:VALUE"):
        Settings()
    monkeypatch.setenv("PREREAD_LUNG_RADS", "aet:CT1")
    assert Settings().lung_rads_policy() == LungRadsPolicy(aets=frozenset({"CT1"}))
