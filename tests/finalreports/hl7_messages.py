"""ORU^R01 messages as a RIS sends them (HL7 v2.5.1 ER7), built for the tests."""

from __future__ import annotations

from collections.abc import Sequence

START, END = b"\x0b", b"\x1c\x0d"


def oru(
    text: Sequence[str] = ("FINDINGS: 8 mm solid nodule in the right upper lobe.",),
    *,
    accession: str = "ACC-77",
    facility: str = "HOSP_RIS",
    message_type: str = "ORU^R01^ORU_R01",
    control_id: str = "MSG0001",
    status: str = "F",
    accession_field: int = 18,
    value_type: str = "TX",
    charset: str = "UNICODE UTF-8",
) -> str:
    msh = (
        f"MSH|^~\\&|RIS|{facility}|PREREAD|PREREAD|20250110120000||{message_type}|{control_id}"
        f"|P|2.5.1|||||| {charset}".replace("| ", "|")
    )
    obr = ["OBR", "1", "", "", "24627-2^CT Chest^LN"] + [""] * 21
    obr[accession_field] = f"{accession}^RIS" if accession_field == 3 else accession
    obr[25] = status
    segments = [msh, "PID|1||PAT-1^^^HOSP^MR||DOE^JANE||19600101|F", "|".join(obr)]
    for n, line in enumerate(text, 1):
        segments.append(f"OBX|{n}|{value_type}|18782-3^Study observation^LN||{line}||||||F")
    return "\r".join(segments) + "\r"


def framed(message: str, encoding: str = "utf-8") -> bytes:
    return START + message.encode(encoding) + END
