"""Which DICOM objects a reading writes back into the study (``PREREAD_OUTPUTS``).

* ``SR`` — the TID 1500 Measurement Report (:func:`preread.reports.build_sr`);
* ``SEG`` — the findings' masks (:func:`preread.reports.build_seg`);
* ``SC`` — one Secondary Capture key image per finding, contour and text burned in
  (:func:`preread.reports.build_key_images`), for viewers that show neither SR nor SEG;
* ``KOS`` — one Key Object Selection document flagging the CT slice through each finding's
  centre (:func:`preread.reports.build_kos`).

All four are written by default. SR and SEG are always written: the SR is the result of
record (the API's JSON, FHIR and HL7 reports are served for a reading whose SR was stored, and
a later reading names it in its Predecessor Documents), and each of its findings references
its segment in the SEG. SC and KOS can be switched off, each on its own. Write-back has one
destination, the study in Orthanc (PreRead forwards nothing to other DICOM nodes), so the
setting is one list, not a list per destination.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from enum import StrEnum

from preread.errors import PrereadError

__all__ = ["ALL_OUTPUTS", "REQUIRED_OUTPUTS", "Output", "OutputsError", "parse_outputs"]


class Output(StrEnum):
    """One kind of DICOM object a reading writes into the study."""

    SR = "SR"
    SEG = "SEG"
    SC = "SC"
    KOS = "KOS"


ALL_OUTPUTS: frozenset[Output] = frozenset(Output)
REQUIRED_OUTPUTS: frozenset[Output] = frozenset({Output.SR, Output.SEG})


class OutputsError(PrereadError, ValueError):
    """A ``PREREAD_OUTPUTS`` value that names an unknown object or leaves out SR or SEG."""


def parse_outputs(value: object) -> list[Output]:
    """The outputs named by ``value``: a list of names, a JSON list (``'["SR","SEG"]'``) or a
    comma-separated string (``"SR,SEG,KOS"``); names are case-insensitive, repeats collapse.

    Raises:
        OutputsError: a name that is not one of SR, SEG, SC, KOS, a value of another shape,
            or a list without SR or SEG (both are always written: see the module docstring).
    """
    names: Iterable[object]
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                names = json.loads(text)
            except json.JSONDecodeError as exc:
                raise OutputsError(f"PREREAD_OUTPUTS={value!r} is not a JSON list: {exc}") from None
        else:
            names = [part for part in text.split(",") if part.strip()]
    else:
        names = value  # type: ignore[assignment]
    if not isinstance(names, list | tuple | set | frozenset):
        raise OutputsError(
            f"PREREAD_OUTPUTS must list outputs (SR, SEG, SC, KOS), got {type(names).__name__}"
        )
    known = ", ".join(o.value for o in Output)
    outputs: list[Output] = []
    for name in names:
        try:
            output = Output(str(name).strip().upper())
        except ValueError:
            raise OutputsError(
                f"PREREAD_OUTPUTS: unknown output {name!r}; known outputs: {known}"
            ) from None
        if output not in outputs:
            outputs.append(output)
    missing = [o.value for o in Output if o in REQUIRED_OUTPUTS and o not in outputs]
    if missing:
        raise OutputsError(
            f"PREREAD_OUTPUTS={','.join(o.value for o in outputs) or '(empty)'} leaves out "
            f"{' and '.join(missing)}: SR and SEG are always written (the SR is the result the "
            "reports and the next reading refer to, and it references the SEG's segments); "
            "only SC and KOS can be switched off"
        )
    return outputs
