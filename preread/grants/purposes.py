"""Purposes of use: what a grant authorizes and what an access token declares."""

from __future__ import annotations

from enum import StrEnum


class Purpose(StrEnum):
    CLINICAL_PREREAD = "clinical-preread"
    """AI pre-reads for the radiologists of the hospital that sent the study."""
    QUALITY_REVIEW = "quality-review"
    """Review of PreRead's results (e.g. by the hospital's quality team)."""
    MODEL_TRAINING = "model-training"
    """De-identified training and evaluation data for models."""
    RESEARCH = "research"


PURPOSES: tuple[str, ...] = tuple(p.value for p in Purpose)


def purpose(value: str) -> Purpose:
    """``value`` as a :class:`Purpose`; ValueError naming the known ones otherwise."""
    try:
        return Purpose(value)
    except ValueError:
        raise ValueError(f"unknown purpose {value!r} (known: {', '.join(PURPOSES)})") from None
