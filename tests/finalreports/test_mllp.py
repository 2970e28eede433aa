"""The MLLP listener on a real TCP socket (a free port on 127.0.0.1), the real job store and
audit trail: a good ORU^R01 is answered AA once stored and matched; a bad one AE or AR, naming
what was wrong, with nothing stored."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from preread.audit import AuditAction, AuditLog, Outcome
from preread.finalreports import FinalReportStore
from preread.finalreports.mllp import FinalReportReceiver, MllpConfig, MllpListener
from preread.grants import GrantStore
from preread.store import JobStore
from tests.finalreports.conftest import done_study, finding, grant
from tests.finalreports.hl7_messages import END, framed, oru

SENDERS = {"HOSP_RIS": "hosp-a", "CLINIC_RIS": "clinic"}


@pytest.fixture
def listener(store: JobStore) -> Iterator[MllpListener]:
    audit = AuditLog(store.engine)
    config = MllpConfig("127.0.0.1", 0, SENDERS, "OBR-18", 5.0)
    receiver = FinalReportReceiver(
        config, FinalReportStore(store, audit=audit), GrantStore(store.engine), audit
    )
    with MllpListener(receiver) as running:
        yield running


def exchange(port: int, *frames: bytes) -> list[list[list[str]]]:
    """Send ``frames`` on one connection; each answer's segments, split into fields."""
    answers = []
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        for frame in frames:
            conn.sendall(frame)
            data = b""
            while END not in data:
                chunk = conn.recv(65536)
                assert chunk, f"the listener closed the connection; got {data!r}"
                data += chunk
            assert data.startswith(b"\x0b") and data.endswith(END)
            answers.append([s.split("|") for s in data[1:-2].decode("ascii").split("\r") if s])
    return answers


def msa(answer: list[list[str]]) -> tuple[str, str, str]:
    segment = next(s for s in answer if s[0] == "MSA")
    return segment[1], segment[2], segment[3]


def test_a_final_report_is_acknowledged_once_stored_and_matched(
    store: JobStore, listener: MllpListener
) -> None:
    grant(store, "hosp-a")
    facts, _ = done_study(store, "hosp-a", "ACC-77", (finding(1, 8.0),))
    done_study(store, "clinic", "ACC-77", (finding(1, 8.0),))  # another tenant's exam
    text = ("FINDINGS: 8 mm solid nodule in the right upper lobe.", "IMPRESSION: 8 mm RUL nodule.")
    corrected = ("FINDINGS: 8 mm solid nodule RUL; 12 mm nodule left lower lobe.",)
    first, second = exchange(
        listener.port,
        framed(oru(text)),
        framed(oru(corrected, status="C", control_id="MSG0002")),
    )
    assert msa(first) == ("AA", "MSG0001", "final report stored (version 1, matched to its study)")
    assert msa(second)[:2] == ("AA", "MSG0002") and "version 2" in msa(second)[2]
    assert first[0][8] == "ACK^R01^ACK" and first[0][4:6] == ["RIS", "HOSP_RIS"]
    stored = FinalReportStore(store).get("hosp-a", "ACC-77")
    assert stored is not None and stored.version == 2 and stored.text == corrected[0]
    assert stored.study_instance_uid == facts.study_instance_uid
    assert (stored.summary.count, stored.summary.largest_mm) == (2, 12.0)
    assert FinalReportStore(store).get("clinic", "ACC-77") is None
    records = [
        r.event
        for r in AuditLog(store.engine).records()
        if r.event.action is AuditAction.FINAL_REPORT_RECEIVE
    ]
    assert [(e.tenant, e.study_instance_uid, e.purpose, e.actor) for e in records] == [
        ("hosp-a", facts.study_instance_uid, "quality-review", "hl7:HOSP_RIS")
    ] * 2
    for event in records:
        assert "ACC-77" not in repr(event.detail) and "nodule" not in repr(event.detail)


@pytest.mark.parametrize("store", ["sqlite"], indirect=True)
def test_bad_messages_are_refused_naming_the_problem_and_nothing_is_stored(
    store: JobStore, listener: MllpListener
) -> None:
    grant(store, "hosp-a")
    cases = [
        (framed(oru(facility="NOBODY")), "AR", "sending facility 'NOBODY' (MSH-4)", "204"),
        (framed(oru(message_type="ADT^A01")), "AR", "ADT^A01 (MSH-9) is not ORU^R01", "200"),
        (framed(oru(accession="")), "AE", "no accession number in OBR-18", "101"),
        (framed(oru(value_type="NM")), "AE", "no report text", "101"),
        (framed(oru(status="P")), "AE", "result status 'P' (OBR-25)", "103"),
        (framed(oru(facility="CLINIC_RIS")), "AE", "no valid quality-review grant", "207"),
        (framed(oru(charset="KOI8-R")), "AR", "character set 'KOI8-R' (MSH-18)", "207"),
        (b"\x0bnot hl7 at all\r\x1c\r", "AR", "not an HL7 v2 message", "100"),
    ]
    answers = exchange(listener.port, *(frame for frame, _, _, _ in cases))
    for answer, (_, code, words, error_code) in zip(answers, cases, strict=True):
        got, _, text = msa(answer)
        assert (got, words in text.replace("\\S\\", "^")) == (code, True), answer
        err = next(s for s in answer if s[0] == "ERR")
        assert err[3].split("^")[0] == error_code and err[4] == "E", answer
    assert FinalReportStore(store).list("hosp-a") == []
    assert FinalReportStore(store).list("clinic") == []
    refused = [
        r.event
        for r in AuditLog(store.engine).records()
        if r.event.action is AuditAction.ACCESS_REFUSED
    ]
    assert [(e.tenant, e.outcome, e.actor) for e in refused] == [
        ("clinic", Outcome.REFUSED, "hl7:CLINIC_RIS")
    ]


@pytest.mark.parametrize("store", ["sqlite"], indirect=True)
def test_the_character_set_of_msh_18_is_used(store: JobStore, listener: MllpListener) -> None:
    grant(store, "hosp-a")
    text = "右肺上叶见一实性结节，大小约8mm×6mm。"
    message = oru((text,), charset="GB 18030-2000")
    (answer,) = exchange(listener.port, framed(message, "gb18030"))
    assert msa(answer)[0] == "AA"
    stored = FinalReportStore(store).get("hosp-a", "ACC-77")
    assert stored is not None and stored.text == text and stored.summary.largest_mm == 8.0
    (answer,) = exchange(listener.port, framed(oru((text,)), "gb18030"))  # says UTF-8: it is not
    assert msa(answer)[0] == "AR" and "not valid utf-8" in msa(answer)[2]
