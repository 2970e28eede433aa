"""ORU^R01 read and ACKs written (pure): accession field, text, statuses, escapes, refusals."""

from __future__ import annotations

import pytest

from preread.finalreports import MessageRejectedError, ReportContentError
from preread.finalreports.hl7 import ack, parse_header, parse_report
from preread.finalreports.records import Channel, ReportStatus
from tests.finalreports.hl7_messages import oru


def test_a_final_report_is_read_from_obr_and_the_text_obx_segments() -> None:
    message = oru(("FINDINGS: 8 mm nodule RUL\\.br\\next line", "IMPRESSION: A \\T\\ B \\F\\ C"))
    message = message.replace("OBX|2|TX", "OBX|2|FT") + "OBX|3|NM|x^y||42||||||F\r"
    header = parse_header(message)
    assert (header.sending_facility, header.control_id, header.message_type) == (
        "HOSP_RIS",
        "MSG0001",
        "ORU^R01",
    )
    report = parse_report(message, header, "OBR-18")
    assert report.accession_number == "ACC-77" and report.channel is Channel.HL7
    assert report.text == "FINDINGS: 8 mm nodule RUL\nnext line\nIMPRESSION: A & B | C"
    assert report.status is ReportStatus.FINAL and report.sender == "HOSP_RIS"
    in_obr3 = oru(accession_field=3)
    assert parse_report(in_obr3, parse_header(in_obr3), "OBR-3").accession_number == "ACC-77"
    corrected = oru(status="C")
    assert parse_report(corrected, parse_header(corrected), "OBR-18").status is (
        ReportStatus.CORRECTED
    )


@pytest.mark.parametrize(
    ("message", "error", "words"),
    [
        (oru(message_type="ADT^A01"), MessageRejectedError, "ADT^A01 (MSH-9) is not ORU^R01"),
        (oru(accession=""), ReportContentError, "no accession number in OBR-18"),
        (oru(accession_field=3), ReportContentError, "no accession number in OBR-18"),
        (oru(value_type="NM"), ReportContentError, "no report text"),
        (oru(("",)), ReportContentError, "no report text"),
        (oru(status="P"), ReportContentError, "result status 'P' (OBR-25)"),
        (oru(accession="A" * 65), ReportContentError, "over 64 characters"),
    ],
)
def test_refusals_name_what_is_wrong(message: str, error: type[Exception], words: str) -> None:
    with pytest.raises(error) as info:
        parse_report(message, parse_header(message), "OBR-18")
    assert words in str(info.value)


def test_two_exams_in_one_message_are_refused() -> None:
    message = oru() + "OBR|2||||||||||||||||||OTHER-ACC|||||||F\r"
    with pytest.raises(ReportContentError, match="2 different accession numbers"):
        parse_report(message, parse_header(message), "OBR-18")


def test_not_hl7_is_refused() -> None:
    with pytest.raises(MessageRejectedError, match="does not begin with an MSH segment"):
        parse_header("hello")


def test_acks_echo_the_control_id_and_escape_their_text() -> None:
    header = parse_header(oru())
    accepted = ack(header, "AA", "stored", control_id="ACK1").split("\r")
    assert accepted[0].startswith("MSH|^~\\&|PREREAD|PREREAD|RIS|HOSP_RIS|")
    assert "|ACK^R01^ACK|ACK1|P|2.5.1" in accepted[0]
    assert accepted[1] == "MSA|AA|MSG0001|stored" and accepted[2] == ""
    refused = ack(header, "AE", "bad | field ^ 右", error_code="101").split("\r")
    assert refused[1] == "MSA|AE|MSG0001|bad \\F\\ field \\S\\ ?"
    assert refused[2].startswith("ERR|||101^^HL70357|E|")
    assert ack(None, "AR", "unreadable").split("\r")[1] == "MSA|AR||unreadable"
