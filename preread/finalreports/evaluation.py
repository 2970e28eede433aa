"""How well the extractor answers "does the report mention a lung nodule of 6 mm or more?",
measured on labelled report texts (``tests/finalreports/data/report_texts.jsonl``).

One JSON object a line: ``id``, ``lang`` (``en``, ``zh`` or ``mixed``), ``text``,
``nodule_ge6mm`` (the label), ``largest_mm`` (the largest present nodule's stated size, or
null) and ``split`` (``train``: the texts the rules were tuned on; ``test``: held out).
:func:`score` gives precision, recall and F1 per group; ``bench/extractor.py`` prints them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from preread.finalreports.extractor import extract
from preread.finalreports.mentions import summarize

__all__ = ["LabelledText", "Outcome", "Scores", "load_labelled", "run", "score"]


@dataclass(frozen=True)
class LabelledText:
    id: str
    lang: str
    text: str
    nodule_ge6mm: bool
    largest_mm: float | None
    split: str


@dataclass(frozen=True)
class Outcome:
    """The extractor's answer on one labelled text."""

    item: LabelledText
    predicted: bool
    largest_mm: float | None

    @property
    def correct(self) -> bool:
        return self.predicted == self.item.nodule_ge6mm

    @property
    def largest_agrees(self) -> bool:
        want, got = self.item.largest_mm, self.largest_mm
        return (want is None and got is None) or (
            want is not None and got is not None and abs(want - got) <= 0.05
        )


@dataclass(frozen=True)
class Scores:
    n: int
    tp: int
    fp: int
    fn: int
    tn: int
    largest_agree: int

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


def load_labelled(path: Path) -> list[LabelledText]:
    """The labelled texts of a JSON-lines file; ValueError names the line that is not one."""
    items = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            largest = raw["largest_mm"]
            items.append(
                LabelledText(
                    id=str(raw["id"]),
                    lang=str(raw["lang"]),
                    text=str(raw["text"]),
                    nodule_ge6mm=bool(raw["nodule_ge6mm"]),
                    largest_mm=None if largest is None else float(largest),
                    split=str(raw.get("split", "train")),
                )
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}:{number}: not a labelled report text ({exc!r})") from None
    return items


def run(items: Iterable[LabelledText]) -> list[Outcome]:
    """The extractor on each text."""
    out = []
    for item in items:
        summary = summarize(extract(item.text))
        out.append(Outcome(item, summary.nodule_ge6mm, summary.largest_mm))
    return out


def score(outcomes: Sequence[Outcome]) -> Scores:
    def count(predicted: bool, label: bool) -> int:
        return sum(1 for o in outcomes if o.predicted is predicted and o.item.nodule_ge6mm is label)

    return Scores(
        n=len(outcomes),
        tp=count(True, True),
        fp=count(True, False),
        fn=count(False, True),
        tn=count(False, False),
        largest_agree=sum(1 for o in outcomes if o.largest_agrees),
    )
