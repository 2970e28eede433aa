"""The review page's form: what the reader chose for each finding, as posted, and the
:class:`~preread.reviews.ReviewDraft` it makes.

One plain HTML form carries the whole review, so that it works without script and the script
only fills it in (``static/review.js``). Its fields, ``n`` being the AI finding's number:

=====================  =====================================================================
``job_id``             the reading reviewed (a newer reading of the study: a conflict)
``replaces``           the current review the reader saw ("" when none: a conflict if one
                       was signed meanwhile)
``verdict-n``          ``accept``, ``reject`` or ``correct``
``reason-n``           a :class:`~preread.reviews.RejectReason` value (with ``reject``)
``reason_text-n``      free text (required with the reason ``other``)
``type-n``             ``solid``, ``part-solid``, ``ground-glass`` or "" (with ``correct``)
``long-n``/``short-n`` the corrected axial long / short axis in mm, or "" (with ``correct``)
``added``              a nodule the reader added: the point clicked, ``x,y,z`` (LPS mm);
                       measured again from the pixels at signing (the same answer as shown)
``keep``               the tracking UID of a nodule added by the review being replaced, kept
=====================  =====================================================================
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from preread.domain import NoduleType, Vec3
from preread.reviews import (
    Accepted,
    Assessment,
    Modified,
    Rejected,
    RejectReason,
    Review,
    ReviewError,
    ReviewTarget,
)
from preread.reviews.domain import NODULE_TYPES

__all__ = [
    "MAX_ADDED",
    "Choice",
    "ReviewForm",
    "VerdictChoice",
    "assessments",
    "prefill",
    "read_form",
]

MAX_ADDED = 50
"""Most nodules one review may add (each is measured again at signing)."""
_FIELD = re.compile(r"^(verdict|reason|reason_text|type|long|short)-([1-9][0-9]{0,5})$")
_MAX_VALUE = 1000


class VerdictChoice(StrEnum):
    ACCEPT = "accept"
    REJECT = "reject"
    CORRECT = "correct"


@dataclass(frozen=True)
class Choice:
    """One finding's fields as the reader filled them in (strings as posted)."""

    verdict: VerdictChoice | None = None
    reason: str = ""
    text: str = ""
    nodule_type: str = ""
    long: str = ""
    short: str = ""


@dataclass(frozen=True)
class ReviewForm:
    """The posted review form (the module docstring)."""

    job_id: str = ""
    replaces: str | None = None
    choices: Mapping[int, Choice] = field(default_factory=dict)
    clicks: tuple[Vec3, ...] = ()
    keep: tuple[str, ...] = ()


def read_form(items: Iterable[tuple[str, object]]) -> ReviewForm:
    """The form's fields (``FormData.multi_items()``) as a :class:`ReviewForm`; unknown
    fields are ignored, values are cut at 1000 characters.

    Raises:
        ReviewError: an ``added`` point that is not three finite numbers, or too many.
    """
    fields: dict[int, dict[str, str]] = {}
    job_id, replaces = "", None
    clicks: list[Vec3] = []
    keep: list[str] = []
    for name, raw in items:
        if not isinstance(raw, str):
            continue  # an uploaded file: not ours
        value = raw.strip()[:_MAX_VALUE]
        if name == "job_id":
            job_id = value
        elif name == "replaces":
            replaces = value or None
        elif name == "added":
            clicks.append(_point(value))
        elif name == "keep":
            keep.append(value)
        elif found := _FIELD.match(name):
            fields.setdefault(int(found.group(2)), {})[found.group(1)] = value
    if len(clicks) + len(keep) > MAX_ADDED:
        raise ReviewError(f"a review adds at most {MAX_ADDED} nodules")
    choices = {
        n: Choice(
            verdict=_verdict(f.get("verdict", "")),
            reason=f.get("reason", ""),
            text=f.get("reason_text", ""),
            nodule_type=f.get("type", ""),
            long=f.get("long", ""),
            short=f.get("short", ""),
        )
        for n, f in fields.items()
    }
    return ReviewForm(job_id, replaces, choices, tuple(clicks), tuple(dict.fromkeys(keep)))


def assessments(target: ReviewTarget, form: ReviewForm) -> tuple[Assessment, ...]:
    """One assessment per AI finding of ``target`` from ``form``.

    Raises:
        ReviewError: naming every finding without a verdict, a rejection without a reason,
            a correction that changes nothing or gives an impossible size.
    """
    out: list[Assessment] = []
    problems: list[str] = []
    for finding in target.findings:
        choice = form.choices.get(finding.number, Choice())
        try:
            verdict = _verdict_of(choice)
        except ReviewError as exc:
            problems.append(f"finding {finding.number}: {exc}")
            continue
        out.append(Assessment(finding.tracking_uid, finding.number, verdict))
    if problems:
        raise ReviewError("; ".join(problems))
    return tuple(out)


def prefill(review: Review | None) -> dict[int, Choice]:
    """The choices of ``review`` (the current one), to start a new review from."""
    if review is None:
        return {}
    out: dict[int, Choice] = {}
    for a in review.assessments:
        v = a.verdict
        if isinstance(v, Accepted):
            out[a.finding_number] = Choice(VerdictChoice.ACCEPT)
        elif isinstance(v, Rejected):
            out[a.finding_number] = Choice(VerdictChoice.REJECT, v.reason.value, v.text or "")
        else:
            out[a.finding_number] = Choice(
                VerdictChoice.CORRECT,
                nodule_type=v.nodule_type or "",
                long=_mm(v.long_axis_mm),
                short=_mm(v.short_axis_mm),
            )
    return out


def _verdict_of(choice: Choice) -> Accepted | Rejected | Modified:
    if choice.verdict is None:
        raise ReviewError("choose accept, reject or correct")
    if choice.verdict is VerdictChoice.ACCEPT:
        return Accepted()
    if choice.verdict is VerdictChoice.REJECT:
        try:
            reason = RejectReason(choice.reason)
        except ValueError:
            raise ReviewError(
                "a rejection needs a reason (" + ", ".join(r.value for r in RejectReason) + ")"
            ) from None
        return Rejected(reason, choice.text or None)
    kind: NoduleType | None = next((t for t in NODULE_TYPES if t == choice.nodule_type), None)
    if choice.nodule_type and kind is None:
        raise ReviewError(f"unknown nodule type {choice.nodule_type!r}")
    return Modified(kind, _number(choice.long, "long axis"), _number(choice.short, "short axis"))


def _verdict(value: str) -> VerdictChoice | None:
    try:
        return VerdictChoice(value)
    except ValueError:
        return None


def _number(value: str, what: str) -> float | None:
    if not value:
        return None
    try:
        number = float(value.replace(",", "."))
    except ValueError:
        raise ReviewError(f"the {what} must be a number of mm, got {value!r}") from None
    if not math.isfinite(number):
        raise ReviewError(f"the {what} must be a number of mm, got {value!r}")
    return number


def _point(value: str) -> Vec3:
    parts = value.split(",")
    try:
        x, y, z = (float(p) for p in parts)
    except ValueError:
        raise ReviewError(f"an added nodule's point must be x,y,z in mm, got {value!r}") from None
    if not all(math.isfinite(v) for v in (x, y, z)):
        raise ReviewError(f"an added nodule's point must be finite, got {value!r}")
    return (x, y, z)


def _mm(value: float | None) -> str:
    return "" if value is None else f"{value:g}"
