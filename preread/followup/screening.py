"""Which studies are lung-cancer screening exams, and so get a Lung-RADS category
(``PREREAD_LUNG_RADS``).

Lung-RADS is defined for screening low-dose CT only; a diagnostic chest CT read with the same
model gets its measurements but no category. Hospitals tell screening exams apart by the
modality that sends them (a screening scanner's AE title) or by the procedure code the RIS
ordered, so the policy names either:

* ``off`` (the default) — no Lung-RADS;
* ``all`` — every study the lung-nodule model reads (a screening-only deployment, the demo);
* a comma-separated list of ``aet:TITLE`` and ``code:VALUE`` entries — studies sent by one of
  those AE titles, or whose procedure code (Procedure Code Sequence, the requested procedure's
  code in Request Attributes Sequence, or Performed Protocol Code Sequence) is one of those
  values, e.g. ``aet:LDCT_CT1,code:RPID16,code:87039-6``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from pydicom.dataset import Dataset

from preread.errors import PrereadError


class LungRadsPolicyError(PrereadError, ValueError):
    """A ``PREREAD_LUNG_RADS`` value that is not off, all, or aet:/code: entries."""


@dataclass(frozen=True)
class LungRadsPolicy:
    """Parsed ``PREREAD_LUNG_RADS``: everything, nothing, or these senders / procedure codes."""

    every_study: bool = False
    aets: frozenset[str] = frozenset()
    codes: frozenset[str] = frozenset()

    @property
    def enabled(self) -> bool:
        return self.every_study or bool(self.aets or self.codes)

    @classmethod
    def parse(cls, value: str) -> LungRadsPolicy:
        text = value.strip()
        if text.lower() in ("", "off", "none", "false"):
            return cls()
        if text.lower() in ("all", "on", "true"):
            return cls(every_study=True)
        aets: set[str] = set()
        codes: set[str] = set()
        for entry in (e.strip() for e in text.split(",")):
            kind, sep, name = entry.partition(":")
            name = name.strip()
            if not sep or not name or kind.strip().lower() not in ("aet", "code"):
                raise LungRadsPolicyError(
                    f"PREREAD_LUNG_RADS: {entry!r} is not aet:TITLE or code:VALUE "
                    "(or give off / all)"
                )
            (aets if kind.strip().lower() == "aet" else codes).add(name)
        return cls(aets=frozenset(aets), codes=frozenset(codes))

    def applies(self, sender_aet: str, dataset: Dataset | None) -> bool:
        """Whether a study sent by ``sender_aet`` whose header is ``dataset`` is a screening
        exam under this policy."""
        if self.every_study:
            return True
        if sender_aet.strip() in self.aets:
            return True
        return dataset is not None and any(c in self.codes for c in procedure_codes(dataset))


def procedure_codes(ds: Dataset) -> Iterator[str]:
    """The code values of the study's procedure as the modality and the RIS recorded it."""
    for item in ds.get("ProcedureCodeSequence", []):
        yield str(item.get("CodeValue", "")).strip()
    for request in ds.get("RequestAttributesSequence", []):
        for item in request.get("RequestedProcedureCodeSequence", []):
            yield str(item.get("CodeValue", "")).strip()
    for item in ds.get("PerformedProtocolCodeSequence", []):
        yield str(item.get("CodeValue", "")).strip()
