"""The comparison with the priors in words, the same in every report (SR, FHIR, HL7, HTML).

One sentence for the exam (what it was compared with, or why not) and one per nodule (new,
persistent with its growth, resolved). Plain ASCII ("mm3", "->"): the sentences go into DICOM
text values whose character set is Latin-1 as well as into HL7 fields and HTML.
"""

from __future__ import annotations

from datetime import date

from preread.reports.json import ComparisonOut, NoduleComparisonOut

__all__ = ["comparison_sentence", "nodule_sentence"]


def _signed(value: float, unit: str) -> str:
    return f"{value:+.1f}{unit}"


def comparison_sentence(c: ComparisonOut) -> str:
    """The exam's comparison with the patient's priors, or why there is none."""
    if c.status == "not-configured":
        return "Not compared with earlier CTs (no PACS is configured for priors)."
    if c.status == "no-prior":
        return "No earlier CT of the patient was found: a baseline exam."
    if c.status == "unavailable":
        return f"Comparison with earlier CTs unavailable: {c.reason or 'no reason given'}."
    counts = {s: sum(1 for n in c.nodules if n.status == s) for s in ("persistent", "new")}
    resolved = sum(1 for n in c.nodules if n.status == "resolved")
    prior = f"the prior CT of {c.prior.study_date.isoformat()}" if c.prior else "the prior CT"
    base = f" (baseline {c.baseline.study_date.isoformat()})" if c.baseline else ""
    return (
        f"Compared with {prior}{base}: {counts['persistent']} persistent, "
        f"{counts['new']} new, {resolved} resolved nodule(s)."
    )


def nodule_sentence(row: NoduleComparisonOut, prior_date: date | None) -> str:
    """One nodule against the prior: new, persistent with its growth, or resolved."""
    since = f" since {prior_date.isoformat()}" if prior_date else ""
    if row.status == "new":
        return f"New{since}."
    if row.status == "resolved":
        size = (
            f"{row.prior_mean_diameter_mm:.1f} mm "
            if row.prior_mean_diameter_mm is not None
            else ""
        )
        return f"Resolved: the {size}nodule of the prior CT is not found."
    parts = [f"Persistent{since}" + (f" ({row.days_between} days)" if row.days_between else "")]
    if row.prior_volume_mm3 is not None and row.volume_mm3 is not None:
        change = (
            f" ({_signed(row.volume_change_pct, ' %')})"
            if row.volume_change_pct is not None
            else ""
        )
        parts.append(f"volume {row.prior_volume_mm3:.0f} -> {row.volume_mm3:.0f} mm3{change}")
    if row.vdt_days is not None:
        parts.append(f"volume doubling time {row.vdt_days:.0f} days ({row.vdt_band} d)")
    if row.prior_mean_diameter_mm is not None and row.mean_diameter_mm is not None:
        change = (
            f" ({_signed(row.diameter_change_mm, ' mm')})"
            if row.diameter_change_mm is not None
            else ""
        )
        parts.append(
            f"mean diameter {row.prior_mean_diameter_mm:.1f} -> {row.mean_diameter_mm:.1f} mm"
            f"{change}"
        )
    if row.baseline_volume_mm3 is not None:
        parts.append(f"baseline volume {row.baseline_volume_mm3:.0f} mm3")
    return "; ".join(parts) + "."
