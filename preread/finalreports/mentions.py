"""What a final report says about lung nodules: typed mentions and their summary.

A :class:`NoduleMention` is one lung nodule (or a group of them: "multiple nodules") that a
report names, with what the text gives of it. :func:`summarize` answers the questions the
comparison with the AI asks: how many nodules the report mentions, the largest size, and
whether it mentions one of 6 mm or more. The mentions are stored with the report as JSON
(:func:`mentions_to_json` / :func:`mentions_from_json`).

Rules (they are the extractor's, :mod:`preread.finalreports.extractor`):

* a **size** is the long axis, in mm: the largest number of "8 x 6 mm", "0.8×0.6cm" or a
  range "6-7 mm"; a size said to be earlier ("previously 7 mm", "原约5mm") is ``prior_size_mm``;
  "< 4 mm", "under 5 mm" give ``size_bound="at-most"``;
* a **mass** or a lung **lesion** is a mention (``kind``): a lung mass is a nodule over 30 mm;
* a **calcified granuloma** (or calcified nodule, 钙化结节/钙化灶) is a benign nodule: it is a
  mention with ``calcified=True`` and counts like any other, because it accounts for an AI
  finding of its size (the reader saw it and called it benign);
* a **negated** mention ("no nodules", "未见明显结节", "has resolved", "no longer seen",
  "to exclude a nodule") is kept with ``negated=True`` and counts for nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from enum import StrEnum
from typing import Any, Literal

__all__ = [
    "GE6_MM",
    "NoduleMention",
    "NoduleType",
    "ReportSummary",
    "mentions_from_json",
    "mentions_to_json",
    "merge",
    "summarize",
]

GE6_MM = 6.0
"""The size the comparison is about: a nodule of 6 mm or more calls for follow-up
(Fleischner 2017, Lung-RADS v2022)."""

SizeBound = Literal["exact", "at-most", "at-least"]
Side = Literal["left", "right"]


class NoduleType(StrEnum):
    """The attenuation a report says a nodule has (the AI's ``nodule_type`` values)."""

    SOLID = "solid"
    PART_SOLID = "part-solid"
    GROUND_GLASS = "ground-glass"


@dataclass(frozen=True)
class NoduleMention:
    """One lung nodule a report names (or a group: ``plural``, ``count`` None when the report
    says "multiple" without a number).

    ``size_mm``: the long axis now, in mm (None: no size given); ``at_most_mm``: an upper bound
    a word gives an unsized mention ("tiny", "micronodules": 4 mm; "subcentimeter": 10 mm).
    """

    kind: str = "nodule"
    size_mm: float | None = None
    size_bound: SizeBound = "exact"
    prior_size_mm: float | None = None
    at_most_mm: float | None = None
    nodule_type: NoduleType | None = None
    calcified: bool = False
    side: Side | None = None
    lobe: str | None = None
    plural: bool = False
    count: int | None = 1
    negated: bool = False

    @property
    def present(self) -> bool:
        """The report says the nodule is there (not negated)."""
        return not self.negated

    @property
    def ge6(self) -> bool:
        """A present nodule with a stated size of 6 mm or more ("< 8 mm" is not one)."""
        return (
            self.present
            and self.size_mm is not None
            and self.size_bound != "at-most"
            and self.size_mm >= GE6_MM
        )

    @property
    def nodules(self) -> int:
        """How many nodules this mention stands for, at least (a plural without a number: 2)."""
        if self.count is not None:
            return self.count
        return 2 if self.plural else 1


@dataclass(frozen=True)
class ReportSummary:
    """What :func:`summarize` says of a report's mentions (present ones only)."""

    count: int
    """Nodules the report mentions, at least ("multiple nodules" count as 2)."""
    largest_mm: float | None
    """The largest stated size (None: no present mention has a size); a bound ("< 6 mm")
    only where no size is exact."""
    ge6_count: int
    """Mentions of a nodule of 6 mm or more."""

    @property
    def nodule_ge6mm(self) -> bool:
        return self.ge6_count > 0


def summarize(mentions: Iterable[NoduleMention]) -> ReportSummary:
    present = [m for m in mentions if m.present]
    exact = [m.size_mm for m in present if m.size_mm is not None and m.size_bound == "exact"]
    sizes = exact or [m.size_mm for m in present if m.size_mm is not None]
    return ReportSummary(
        count=sum(m.nodules for m in present),
        largest_mm=max(sizes) if sizes else None,
        ge6_count=sum(1 for m in present if m.ge6),
    )


def mentions_to_json(mentions: Sequence[NoduleMention]) -> list[dict[str, Any]]:
    """The mentions as JSON objects (the stored form)."""
    return [asdict(m) for m in mentions]


def mentions_from_json(values: Iterable[Mapping[str, Any]]) -> tuple[NoduleMention, ...]:
    """Mentions from their stored form; ValueError names a value that is not one."""
    out = []
    for value in values:
        data = dict(value)
        kind = data.get("nodule_type")
        try:
            data["nodule_type"] = None if kind is None else NoduleType(kind)
            out.append(NoduleMention(**data))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"not a stored nodule mention: {exc}") from None
    return tuple(out)


def _compatible(a: NoduleMention, b: NoduleMention) -> bool:
    return (
        (a.lobe is None or b.lobe is None or a.lobe == b.lobe)
        and (a.side is None or b.side is None or a.side == b.side)
        and (a.nodule_type is None or b.nodule_type is None or a.nodule_type == b.nodule_type)
    )


def _fill(kept: NoduleMention, other: NoduleMention) -> NoduleMention:
    return replace(
        kept,
        lobe=kept.lobe or other.lobe,
        side=kept.side or other.side,
        nodule_type=kept.nodule_type or other.nodule_type,
        calcified=kept.calcified or other.calcified,
        prior_size_mm=kept.prior_size_mm or other.prior_size_mm,
    )


def merge(mentions: Sequence[NoduleMention]) -> tuple[NoduleMention, ...]:
    """One mention per nodule: present mentions of the same size (±0.5 mm) with compatible
    lobe, side and type are one (the findings and the impression name it twice); an unsized
    one merges into a compatible sized one (a plural only into a plural). Negated ones are
    kept as they are. Sized first, then unsized, then negated."""
    negated = [m for m in mentions if m.negated]
    sized: list[NoduleMention] = []
    for m in (m for m in mentions if m.present and m.size_mm is not None):
        same = next(
            (
                i
                for i, s in enumerate(sized)
                if s.size_mm is not None
                and m.size_mm is not None
                and abs(s.size_mm - m.size_mm) <= 0.5
                and _compatible(s, m)
            ),
            None,
        )
        if same is None:
            sized.append(m)
        else:
            sized[same] = _fill(sized[same], m)
    unsized: list[NoduleMention] = []
    for m in (m for m in mentions if m.present and m.size_mm is None):
        home = next((i for i, s in enumerate(sized) if _compatible(s, m)), None)
        if home is not None and (not m.plural or sized[home].plural):
            sized[home] = _fill(sized[home], m)
        elif not any(_compatible(u, m) and u.plural == m.plural for u in unsized):
            unsized.append(m)
    return (*sized, *unsized, *negated)
