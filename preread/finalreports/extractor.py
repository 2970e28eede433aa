"""Lung nodules in a radiologist's report text: a rules-based extractor (no model, no network).

:func:`extract` reads one report (English, Simplified Chinese or both mixed) and returns the
:class:`~preread.finalreports.mentions.NoduleMention` s it finds; :func:`mentions_nodule_ge6mm`
and :func:`summarize_text` answer the comparison's questions. Pure functions: the same text
gives the same mentions. The words are in :mod:`preread.finalreports.lexicon`.

How, sentence by sentence (sentences end at 。 ; newline, and ". "):

1. **Terms** are found (:data:`~preread.finalreports.lexicon.TERMS`). A term is dropped when it
   names a diffuse pattern ("tree-in-bud nodules", "粟粒样结节", "patchy ground-glass
   opacities"), and it is not a lung nodule when its **site** is another organ: an explicit
   location after it ("nodule in the left lobe of the thyroid"), else the nearest site word
   before it in the sentence ("甲状腺左叶见低密度结节"), else the section header ("THYROID:"),
   else the lung (a chest report); a *lesion* needs a lung word.
2. **Sizes** (numbers with mm/cm/毫米/厘米, "8 x 6 mm", "6-7 mm", "0.8×0.6cm") go to the
   nearest anchor in the sentence — a term, or another thing that has sizes (lymph node, cyst,
   effusion, a solid component, the thyroid…): a size is a nodule's only when the nodule is
   the nearest. Slice thicknesses are not sizes; "previously 7 mm"/"原约5mm" is a prior size;
   "< 4 mm" is an upper bound.
3. **Negation**: a cue before the term ("no", "without", "negative for", "未见", "无", "排除")
   negates the first term after it within the sentence and the terms coordinated with it
   ("no nodules, masses or consolidation"), unless "but/except/…" or a comma (Chinese) comes
   between; a cue after it ("is no longer seen", "has resolved", "已吸收", "消失") negates it.
4. A plural term with several sizes ("two nodules, 4 mm and 5 mm") gives one mention per size.
   Mentions of the same nodule in the findings and the impression are merged: present mentions
   of the same size (±0.5 mm) with compatible lobe and type; an unsized one merges into a sized
   one it is compatible with.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace

from preread.finalreports import lexicon as lx
from preread.finalreports.mentions import (
    NoduleMention,
    NoduleType,
    ReportSummary,
    Side,
    SizeBound,
    merge,
    summarize,
)

__all__ = ["EXTRACTOR_VERSION", "extract", "mentions_nodule_ge6mm", "summarize_text"]

EXTRACTOR_VERSION = "1"
"""Stored with each report's mentions: a report is re-extracted when the rules change."""

MAX_SIZE_GAP = 60  # characters between a size and the anchor it belongs to
MAX_NEGATION_REACH = 70  # characters from a negation cue to the first term it negates
MAX_NEGATION_REACH_ZH = 16
SITE_AFTER_REACH = 45


@dataclass(frozen=True)
class _Size:
    start: int
    end: int
    long_axis_mm: float
    bound: SizeBound
    prior: bool


@dataclass
class _Term:
    start: int
    end: int
    kind: str
    text: str
    lung: bool = True
    pattern: bool = False
    negated: bool = False
    sizes: list[_Size] = field(default_factory=list)


@dataclass(frozen=True)
class _Anchor:
    start: int
    end: int
    term: _Term | None  # None: a thing that is not a lung nodule


def extract(text: str) -> tuple[NoduleMention, ...]:
    """The lung nodule mentions of one report text (negated ones included, flagged)."""
    mentions: list[NoduleMention] = []
    section_lung: bool | None = None
    for sentence in _sentences(lx.normalize(text)):
        header = lx.HEADER.match(sentence)
        if header:
            section_lung = _site_class(header.group(1))
        mentions.extend(_sentence_mentions(sentence, section_lung))
    return merge(mentions)


def mentions_nodule_ge6mm(text: str) -> bool:
    """Whether the report mentions a lung nodule of 6 mm or more (present, with a size)."""
    return any(m.ge6 for m in extract(text))


def summarize_text(text: str) -> ReportSummary:
    """:func:`~preread.finalreports.mentions.summarize` of :func:`extract`."""
    return summarize(extract(text))


# --- sentences ------------------------------------------------------------------------------


def _sentences(text: str) -> Iterator[str]:
    start = 0
    for end in lx.SENTENCE_END.finditer(text):
        if end.group().startswith(".") and lx.ABBREVIATION.search(text[start : end.start()]):
            continue
        if text[start : end.start()].strip():
            yield text[start : end.start()]
        start = end.end()
    if text[start:].strip():
        yield text[start:]


def _sentence_mentions(sentence: str, section_lung: bool | None) -> list[NoduleMention]:
    terms = _terms(sentence)
    if not terms:
        return []
    for term in terms:
        term.lung = _is_lung(sentence, term, section_lung)
        term.pattern = _is_pattern(sentence, term)
    terms = [t for t in terms if not t.pattern]
    anchors = [_Anchor(t.start, t.end, t) for t in terms] + [
        _Anchor(m.start(), m.end(), None)
        for regex in (lx.OTHER_ANCHORS, lx.OTHER_SITES)
        for m in regex.finditer(sentence)
        if not any(t.start <= m.start() < t.end for t in terms)
    ]
    for size in _sizes(sentence, terms):
        anchor = _nearest(sentence, anchors, size)
        if anchor is not None and anchor.term is not None:
            anchor.term.sizes.append(size)
    _negate(sentence, terms)
    out: list[NoduleMention] = []
    for term in terms:
        if term.lung:
            out.extend(_to_mentions(sentence, term, terms))
    return out


# --- terms and their sites --------------------------------------------------------------------


def _terms(sentence: str) -> list[_Term]:
    found: list[_Term] = []
    for kind, regex in lx.TERMS:
        for m in regex.finditer(sentence):
            overlap = next((t for t in found if m.start() < t.end and t.start < m.end()), None)
            if overlap is None:
                found.append(_Term(m.start(), m.end(), kind, m.group()))
            elif m.end() - m.start() > overlap.end - overlap.start:  # the longer wins
                overlap.start, overlap.end, overlap.text = m.start(), m.end(), m.group()
    return sorted(found, key=lambda t: t.start)


def _site_class(text: str) -> bool | None:
    """True: a lung word; False: another organ; None: neither (the nearest one counts)."""
    best: tuple[int, bool] | None = None
    for regex, lung in ((lx.LUNG_SITES, True), (lx.OTHER_SITES, False)):
        for m in regex.finditer(text):
            if best is None or m.end() > best[0]:
                best = (m.end(), lung)
    return None if best is None else best[1]


def _is_lung(sentence: str, term: _Term, section_lung: bool | None) -> bool:
    after = re.split(r"[,;，]", sentence[term.end : term.end + SITE_AFTER_REACH])[0]
    where = lx.PREPOSITION_BEFORE.search(after)
    if where:
        site = _first_site(after[where.end() :])
        if site is not None:
            return site
    before = _site_class(sentence[: term.start])
    if before is not None:
        return before
    if section_lung is not None:
        return section_lung
    return term.kind != "lesion"


def _first_site(text: str) -> bool | None:
    lung = lx.LUNG_SITES.search(text)
    other = lx.OTHER_SITES.search(text)
    if lung is None and other is None:
        return None
    if other is None:
        return True
    return lung is not None and lung.start() < other.start()


def _is_pattern(sentence: str, term: _Term) -> bool:
    before = re.split(r"[,;，:]", sentence[max(0, term.start - 25) : term.start])[-1]
    after = re.split(r"[,;，]", sentence[term.end : term.end + 25])[0]
    return bool(lx.PATTERNS.search(before) or lx.PATTERNS.search(after))


# --- sizes -------------------------------------------------------------------------------------


def _sizes(sentence: str, terms: Sequence[_Term]) -> Iterator[_Size]:
    numbers = list(lx.NUMBER.finditer(sentence))
    i = 0
    while i < len(numbers):
        group = [numbers[i]]
        ranged = False
        while i + 1 < len(numbers):
            between = sentence[group[-1].end() : numbers[i + 1].start()]
            if lx.CROSS.match(between):
                group.append(numbers[i + 1])
            elif lx.RANGE.match(between) and group[-1].group(2) is None:
                group.append(numbers[i + 1])
                ranged = True
            else:
                break
            i += 1
        i += 1
        size = _size(sentence, group, terms)
        if size is not None and not (ranged and len(group) > 2):
            yield size


def _size(sentence: str, group: list[re.Match[str]], terms: Sequence[_Term]) -> _Size | None:
    unit = group[-1].group(2)
    if unit is None:
        return None
    values = []
    for m in group:
        factor = 10.0 if (m.group(2) or unit).startswith(("c", "厘", "公")) else 1.0
        values.append(float(m.group(1)) * factor)
    start, end = group[0].start(), group[-1].end()
    before = sentence[max(0, start - 24) : start]
    if lx.NOT_A_SIZE_BEFORE.search(before) or lx.NOT_A_SIZE_AFTER.match(sentence[end:]):
        return None
    since = max([t.end for t in terms if t.end <= start], default=0)
    near = sentence[max(since, start - 24) : start]
    bound = lx.BOUND_BEFORE.search(near)
    kind: SizeBound = "exact"
    if bound is not None:
        kind = "at-most" if bound.group("most") else "at-least"
    prior = lx.PRIOR_BEFORE.search(near) is not None
    return _Size(start, end, max(values), kind, prior)


def _nearest(sentence: str, anchors: Sequence[_Anchor], size: _Size) -> _Anchor | None:
    """The anchor a size belongs to: the nearest, where one after the size counts only when
    nothing ("," "with" "and" 伴…) separates them ("8 mm nodule", not "8 mm, with a cyst")."""

    def gap(anchor: _Anchor) -> tuple[int, int]:
        if anchor.end <= size.start:
            return size.start - anchor.end, 0
        if anchor.start >= size.end:
            if lx.SEPARATES.search(sentence[size.end : anchor.start]):
                return MAX_SIZE_GAP + 1, 1
            return anchor.start - size.end, 1
        return 0, 0

    near = [(gap(a), a) for a in anchors if gap(a)[0] <= MAX_SIZE_GAP]
    return min(near, key=lambda pair: pair[0])[1] if near else None


# --- negation ------------------------------------------------------------------------------------


def _negate(sentence: str, terms: list[_Term]) -> None:
    for cue in lx.NEGATION_BEFORE.finditer(sentence):
        chinese = not cue.group()[0].isascii()
        reach = MAX_NEGATION_REACH_ZH if chinese else MAX_NEGATION_REACH
        after = [t for t in terms if t.start >= cue.end()]
        if not after:
            continue
        first = after[0]
        between = sentence[cue.end() : first.start]
        if len(between) > reach or lx.CONTRAST.search(between):
            continue
        if chinese and re.search(r"[,，]|(?<!未)见", between):
            continue
        first.negated = True
        coordination = lx.COORDINATION_ZH if chinese else lx.COORDINATION_EN
        previous = first
        for term in after[1:]:
            if not coordination.match(sentence[previous.end : term.start]):
                break
            term.negated = True
            previous = term
    for i, term in enumerate(terms):
        stop = terms[i + 1].start if i + 1 < len(terms) else len(sentence)
        after_text = sentence[term.end : stop]
        if lx.NEGATION_AFTER_ZH.match(after_text):
            term.negated = True
            continue
        after_cue = lx.NEGATION_AFTER.search(after_text)
        if after_cue and not lx.CONTRAST.search(after_text[: after_cue.start()]):
            term.negated = True


# --- mentions ------------------------------------------------------------------------------


def _to_mentions(sentence: str, term: _Term, terms: Sequence[_Term]) -> list[NoduleMention]:
    previous_end = max([t.end for t in terms if t.end <= term.start], default=0)
    next_start = min([t.start for t in terms if t.start >= term.end], default=len(sentence))
    before = re.split(r"[,;，(]", sentence[max(previous_end, term.start - 40) : term.start])[-1]
    after = re.split(r"[,;，]", sentence[term.end : min(next_start, term.end + 40)])[0]
    around = before + " " + term.text + " " + after
    base = NoduleMention(
        kind=term.kind,
        nodule_type=_type(around),
        calcified=bool(lx.CALCIFIED.search(around)),
        side=None,
        lobe=None,
        negated=term.negated,
        at_most_mm=_at_most(before + " " + term.text),
    )
    lobe, side = _lobe(sentence, term)
    base = replace(base, lobe=lobe, side=side)
    count, plural = _count(sentence[previous_end : term.start], term)
    current = [s for s in term.sizes if not s.prior]
    prior = max((s.long_axis_mm for s in term.sizes if s.prior), default=None)
    base = replace(base, prior_size_mm=prior, plural=plural, count=count)
    if not current:
        return [base]
    exact = [s for s in current if s.bound == "exact"] or current
    if plural and len(exact) > 1:
        return [
            replace(base, size_mm=s.long_axis_mm, size_bound=s.bound, plural=False, count=1)
            for s in exact
        ]
    largest = max(exact, key=lambda s: s.long_axis_mm)
    return [replace(base, size_mm=largest.long_axis_mm, size_bound=largest.bound)]


def _type(text: str) -> NoduleType | None:
    if lx.PART_SOLID.search(text):
        return NoduleType.PART_SOLID
    if lx.GROUND_GLASS.search(text):
        return NoduleType.GROUND_GLASS
    if lx.SOLID.search(text):
        return NoduleType.SOLID
    return None


def _at_most(text: str) -> float | None:
    if lx.TINY.search(text):
        return 4.0
    if lx.SUBCENTIMETER.search(text):
        return 10.0
    return None


def _lobe(sentence: str, term: _Term) -> tuple[str | None, Side | None]:
    best: tuple[int, str] | None = None
    for lobe, regex in lx.LOBES:
        for m in regex.finditer(sentence):
            gap = term.start - m.end() if m.end() <= term.start else m.start() - term.end + 1
            if gap <= 40 and (best is None or gap < best[0]):
                best = (gap, lobe)
    if best is not None:
        side: Side = "right" if best[1].startswith("R") else "left"
        return best[1], side
    for name, regex in lx.SIDES:
        if regex.search(sentence[max(0, term.start - 40) : term.end + 40]):
            return None, "right" if name == "right" else "left"
    return None, None


def _count(before: str, term: _Term) -> tuple[int | None, bool]:
    plural = bool(lx.PLURAL_TERM.search(term.text))
    m = lx.COUNT_BEFORE.search(before)
    if m is None:
        return (None if plural else 1), plural
    if m.group("n"):
        return lx.EN_COUNT[m.group("n")], True
    if m.group("zh") in lx.ZH_COUNT:
        return lx.ZH_COUNT[m.group("zh")], True
    return None, True
