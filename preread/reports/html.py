"""A printable HTML page of one pre-read: what a clinician prints or attaches to a record.

Self-contained (inline CSS, no scripts, no external resources), every value escaped, and the
page says on top and at the bottom that the content is AI-generated and preliminary.
"""

from __future__ import annotations

from html import escape

from preread.domain import FindingConcept
from preread.reports.context import ReportInput
from preread.reports.followup_text import comparison_sentence, nodule_sentence
from preread.reports.json import ComparisonOut, FindingOut, LungRadsOut
from preread.reports.review import AssessmentOut, ReviewOut
from preread.reports.series import AI_NOTICE

__all__ = ["HTML_MEDIA_TYPE", "to_html"]

HTML_MEDIA_TYPE = "text/html; charset=utf-8"
_NONE = "—"  # a value the model does not give (nodule type and mean diameter before 2.0.0)

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;color:#111;max-width:60em}
h1{font-size:1.4em;margin-bottom:.2em} .notice{border:2px solid #b45309;background:#fffbeb;
padding:.6em 1em;font-weight:600} table{border-collapse:collapse;margin:1em 0;width:100%}
th,td{border:1px solid #999;padding:.3em .6em;text-align:left} th{background:#eee}
td.n{text-align:right} dl{display:grid;grid-template-columns:max-content auto;gap:.2em 1em}
dt{font-weight:600} footer{margin-top:2em;font-size:.85em;color:#444}
@media print{.notice{border-color:#000;background:none}}
"""


def _pn(name: str) -> str:
    """DICOM PN ``Family^Given^Middle^Prefix^Suffix`` as ``Family, Given Middle``."""
    parts = name.split("=")[0].split("^")
    family = parts[0].strip()
    given = " ".join(p.strip() for p in parts[1:3] if p.strip())
    return f"{family}, {given}" if family and given else family or given


def _da(value: str) -> str:
    return (
        f"{value[:4]}-{value[4:6]}-{value[6:8]}" if len(value) == 8 and value.isdigit() else value
    )


def _type(finding: FindingOut) -> str:
    """The nodule type, with the solid component's long axis when given; "—" if untyped."""
    solid = finding.solid_component_long_axis_mm
    if finding.nodule_type is None:
        return _NONE if solid is None else f"solid component {solid:.1f} mm"
    return finding.nodule_type + ("" if solid is None else f" (solid component {solid:.1f} mm)")


def _site(concept: FindingConcept, finding: FindingOut) -> str:
    """The concept's site, with the lung's side when known ("left lung")."""
    side = finding.lung_side if concept.in_lung else None
    return f"{side} {concept.site_name}" if side else concept.site_name


def _mm(value: float | None) -> str:
    return _NONE if value is None else f"{value:.1f}"


def _verdict(a: AssessmentOut) -> str:
    """One AI finding's assessment in words ("rejected: vessel", "modified: part-solid, …")."""
    if a.assessment == "rejected":
        reason = a.reason.replace("-", " ") if a.reason else ""
        return "rejected: " + ", ".join(x for x in (reason, a.reason_text or "") if x)
    if a.assessment == "modified":
        changes = [
            a.nodule_type or "",
            "" if a.axial_long_axis_mm is None else f"long axis {a.axial_long_axis_mm:.1f} mm",
            "" if a.short_axis_mm is None else f"short axis {a.short_axis_mm:.1f} mm",
        ]
        return "modified: " + ", ".join(c for c in changes if c)
    return "accepted"


def _review(review: ReviewOut | None) -> str:
    """The radiologist's review of this reading (none yet: a line saying so)."""
    if review is None:
        return "<h2>Radiologist's review</h2><p>Not reviewed yet.</p>"
    signed = review.signed_at.strftime("%Y-%m-%d %H:%M UTC")
    rows = "".join(
        f"<tr><td>AI nodule {a.label}</td><td>{escape(_verdict(a))}</td></tr>"
        for a in review.assessments
    ) + "".join(
        f"<tr><td>{escape(n.tracking_id)} (added by the reader)</td>"
        f"<td>{escape(n.nodule_type)}, {n.mean_diameter_mm:.1f} mm mean diameter, "
        f"{n.volume_mm3:.0f} mm³</td></tr>"
        for n in review.added
    )
    return (
        "<h2>Radiologist's review</h2>"
        f"<p>Verified by {escape(review.reviewer.name)} on {escape(signed)} "
        f"(version {review.version}{'' if review.stored else '; DICOM SR not stored yet'}).</p>"
        "<table><thead><tr><th>Finding</th><th>Assessment</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
    )


def _comparison(c: ComparisonOut | None) -> str:
    """The comparison with the priors: the sentence, and a row per nodule when compared."""
    if c is None:
        return ""
    head = f"<h2>Comparison with earlier CTs</h2><p>{escape(comparison_sentence(c))}</p>"
    if not c.nodules:
        return head
    prior_date = c.prior.study_date if c.prior else None
    rows = "".join(
        "<tr>"
        f"<td>{escape(str(n.label) if n.label is not None else '—')}</td>"
        f"<td>{escape(n.status)}</td>"
        f"<td>{escape(nodule_sentence(n, prior_date))}</td>"
        "</tr>"
        for n in c.nodules
    )
    return (
        f"{head}<table><thead><tr><th>Finding</th><th>Status</th><th>Against the prior CT</th>"
        f"</tr></thead><tbody>{rows}</tbody></table>"
    )


def _lung_rads(lung_rads: LungRadsOut | None) -> str:
    """The exam's Lung-RADS v2022 category and management (nothing when not assessed)."""
    if lung_rads is None:
        return ""
    if lung_rads.category is None:
        return (
            f"<h2>Lung-RADS {escape(lung_rads.version)}</h2>"
            f"<p>Not determinable: {escape(lung_rads.reason or '')}</p>"
        )
    return (
        f"<h2>Lung-RADS {escape(lung_rads.version)}: category {escape(lung_rads.category)}</h2>"
        f"<p>{escape(lung_rads.management or '')}</p>"
        + (f"<p>{escape(lung_rads.reason)}</p>" if lung_rads.reason else "")
        + "<p>Assigned by the AI from size, type and growth (preliminary); category 4X and "
        "the features the AI does not judge are the radiologist's.</p>"
    )


def to_html(report: ReportInput) -> str:
    """The page (UTF-8 text) of ``report``."""
    pre, study = report.preread, report.study
    concept = pre.concept.finding_concept()
    model = f"{pre.model.name} {pre.model.version}"
    lung_rads = pre.lung_rads
    categories = (
        {n.label: n.category or "not determinable" for n in lung_rads.nodules} if lung_rads else {}
    )
    rows = "".join(
        "<tr>"
        f"<td>{escape(f.tracking_id)}</td>"
        f"<td>{escape(_site(concept, f))}</td>"
        f"<td>{escape(_type(f))}</td>"
        f'<td class="n">{_mm(f.mean_diameter_mm)}</td>'
        f'<td class="n">{f.long_axis_mm:.1f}</td>'
        f'<td class="n">{f.volume_mm3:.0f}</td>'
        f'<td class="n">{f.mean_hu:.0f}</td>'
        f'<td class="n">{100 * f.probability:.0f} %</td>'
        f"<td>{', '.join(f'{c:.1f}' for c in f.center_lps_mm)}</td>"
        + (f"<td>{escape(categories.get(f.label, _NONE))}</td>" if lung_rads else "")
        + "</tr>"
        for f in pre.findings
    )
    count = len(pre.findings)
    if count:
        body = (
            f"<p>{count} {escape(concept.name(count))} found by {escape(model)}.</p>"
            "<table><thead><tr><th>Finding</th><th>Site</th><th>Type</th>"
            "<th>Mean diameter (mm)</th><th>Long axis, 3-D (mm)</th>"
            "<th>Volume (mm³)</th><th>Mean (HU)</th><th>AI probability</th>"
            "<th>Centre (LPS, mm)</th>"
            + ("<th>Lung-RADS</th>" if lung_rads else "")
            + f"</tr></thead><tbody>{rows}</tbody></table>"
        )
    else:
        body = f"<p>No {escape(concept.name())} was found by {escape(model)}.</p>"
    body += _comparison(pre.comparison) + _lung_rads(lung_rads)
    facts = [
        ("Patient", _pn(study.patient_name)),
        ("Patient ID", study.patient_id),
        ("Birth date", _da(study.patient_birth_date)),
        ("Accession number", study.accession_number),
        ("Study date", _da(study.study_date)),
        ("Study", study.study_description),
        ("Study Instance UID", study.study_instance_uid),
        ("Series read", pre.series_instance_uid),
        ("Model", f"{model} ({pre.model.id}, sha256 {pre.model.sha256[:12]}…)"),
        ("Ran on", pre.provider),
        ("Reported", report.finished_at.strftime("%Y-%m-%d %H:%M UTC")),
        ("Reading id", report.job_id),
    ]
    dl = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v) or '—'}</dd>" for k, v in facts)
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>AI pre-read (preliminary) — {escape(_da(study.study_date))}</title>"
        f"<style>{_STYLE}</style></head><body>"
        f'<p class="notice">{escape(AI_NOTICE)}</p>'
        f"<h1>AI pre-read: {escape(concept.name(2))} (preliminary)</h1>"
        f"<dl>{dl}</dl>{body}{_review(report.review)}"
        f"<footer>{escape(AI_NOTICE)} Measurements are automatic; the DICOM SR and SEG of this "
        "reading are stored in the study for review in the viewer.</footer>"
        "</body></html>"
    )
