"""The short human-readable evaluation report of a model package: evaluation.md + froc.png."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from inference.card import ModelCard

#: metric → (document path, comparison, goal)
GOALS: dict[str, tuple[tuple[str, ...], str, float]] = {
    "sensitivity_ge6mm": (("sensitivity_ge6mm",), ">=", 0.90),
    "fp_per_scan": (("fp_per_scan",), "<=", 1.0),
    "dice_median_ge6mm": (("dice_ge6mm", "median"), ">=", 0.80),
    "diameter_mae_mm_ge6mm": (("diameter_error_mm_ge6mm", "mae"), "<=", 1.0),
}
#: The comparison with the baseline: row → (path in this document, path in its
#: ``baseline.held_out`` / ``baseline`` section, comparison, goal). The goals are issue 11's.
COMPARED: dict[str, tuple[tuple[str, ...], tuple[str, ...], str, float]] = {
    "sensitivity ≥ 6 mm at the operating point": (
        ("sensitivity_ge6mm",),
        ("held_out", "sensitivity_ge6mm"),
        ">=",
        0.90,
    ),
    "false positives per scan": (("fp_per_scan",), ("held_out", "fp_per_scan"), "<=", 1.0),
    "FROC CPM": (("cpm",), ("held_out", "cpm"), ">=", 0.85),
    "robustness: sensitivity at ≤ 2 FP/scan": (
        ("robustness", "sensitivity_at_2_fp_per_scan"),
        ("robustness", "sensitivity_at_2_fp_per_scan"),
        ">=",
        0.85,
    ),
    "median Dice of detected nodules": (
        ("dice_ge6mm", "median"),
        ("held_out", "dice_median_ge6mm"),
        ">=",
        0.80,
    ),
    "long-axis MAE (mm)": (
        ("diameter_error_mm_ge6mm", "mae"),
        ("held_out", "diameter_mae_mm_ge6mm"),
        "<=",
        1.0,
    ),
    "median absolute volume error": (
        ("volume_error_rel_ge6mm", "median_abs"),
        ("held_out", "volume_median_abs_rel_error_ge6mm"),
        "<=",
        0.15,
    ),
    "type accuracy": (("type_accuracy",), ("held_out", "type_accuracy"), ">=", 0.90),
}
BREAKDOWNS = {"band": "long-axis band (mm)", "type": "type", "attachment": "attachment"}


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _get(doc: dict[str, Any], path: tuple[str, ...]) -> Any:
    v: Any = doc
    for key in path:
        if not isinstance(v, dict):
            return None
        v = v.get(key)
    return v


def _with_ci(entry: dict[str, Any] | None) -> str:
    """``0.912 (0.871–0.950)`` from ``{"value": …, "ci95": [lo, hi]}``."""
    if not entry:
        return "–"
    ci = entry.get("ci95")
    value = _fmt(entry.get("value"))
    return f"{value} ({_fmt(ci[0])}–{_fmt(ci[1])})" if ci else value


def plot_froc(doc: dict[str, Any], path: Path) -> None:
    curve = doc["froc_ge6mm"]["curve"]
    fps = [p["fp_per_scan"] for p in curve]
    sens = [p["sensitivity"] or 0.0 for p in curve]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.step(fps, sens, where="post")
    ax1.set_xscale("symlog", linthresh=0.125)
    ax1.set_xlabel("false positives per scan")
    ax1.set_ylabel("sensitivity (nodules ≥ 6 mm)")
    ax1.set_ylim(0, 1.02)
    ax1.axvline(1.0, color="grey", lw=0.5, ls="--")
    ax1.axhline(0.9, color="grey", lw=0.5, ls="--")
    ax1.set_title("FROC")
    bands = doc["sensitivity_by_band"]
    names = list(bands)
    vals = [bands[b]["sensitivity"] or 0.0 for b in names]
    ax2.bar([f"{b} mm\n(n={bands[b]['n']})" for b in names], vals)
    ax2.set_ylim(0, 1.02)
    ax2.set_ylabel("sensitivity")
    ax2.set_title("sensitivity by long-axis band")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _headline_lines(doc: dict[str, Any]) -> list[str]:
    ci = doc.get("confidence_intervals", {})
    lines = [
        "| metric | value (95 % CI) | goal | met |",
        "| --- | --- | --- | --- |",
    ]
    for key, (path, op, goal) in GOALS.items():
        v = _get(doc, path)
        met = v is not None and (v >= goal if op == ">=" else v <= goal)
        shown = _with_ci(ci[key]) if key in ci else _fmt(v)
        lines.append(f"| {key} | {shown} | {op} {goal} | {'yes' if met else 'no'} |")
    cpm = ci.get("cpm") or {"value": doc["froc_ge6mm"]["cpm"]}
    lines += [
        f"| CPM (FROC, ≥ 6 mm) | {_with_ci(cpm)} | | |",
        f"| type accuracy (detected ≥ 6 mm) | {_fmt(doc.get('type_accuracy'))} | | |",
        "| volume median abs. rel. error ≥ 6 mm | "
        f"{_fmt(_get(doc, ('volume_error_rel_ge6mm', 'median_abs')))} | | |",
        f"| false positives on calcified nodules | {_fmt(doc.get('fp_on_calcified'))} | | |",
        f"| duplicates (neither TP nor FP) | {_fmt(doc.get('duplicates'))} | | |",
    ]
    return lines


def _breakdown_lines(doc: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    for key, title in BREAKDOWNS.items():
        groups = doc.get("breakdown", {}).get(key)
        if not groups:
            continue
        scope = "non-calcified nodules" if key == "band" else "non-calcified nodules ≥ 6 mm"
        lines += [
            "",
            f"## By {title} ({scope})",
            "",
            "| group | nodules | detected | sensitivity | CPM |",
            "| --- | --- | --- | --- | --- |",
        ]
        for name, g in groups.items():
            lines.append(
                f"| {name} | {g['n']} | {g['detected']} | {_fmt(g['sensitivity'])} "
                f"| {_fmt(g['cpm'])} |"
            )
    confusion = doc.get("type_confusion")
    if confusion and confusion["n"]:
        labels = confusion["labels"]
        lines += [
            "",
            "## Type confusion (rows: true type, columns: the finding's type)",
            "",
            "| | " + " | ".join(labels) + " |",
            "| --- " * (len(labels) + 1) + "|",
        ]
        for name, row in zip(labels, confusion["matrix"], strict=True):
            lines.append(f"| {name} | " + " | ".join(str(v) for v in row) + " |")
    return lines


def _comparison_lines(doc: dict[str, Any]) -> list[str]:
    """This model beside the baseline evaluated in the same run (``doc["baseline"]``)."""
    base = doc.get("baseline")
    if not isinstance(base, dict):
        return []
    lines = [
        "",
        f"## Beside {base['model']} (same scans; {base.get('source', 'same run')})",
        "",
        f"| metric (nodules ≥ 6 mm unless said) | {base['model']} | this model | goal | met |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, (mine, theirs, op, goal) in COMPARED.items():
        v = _get(doc, mine)
        met = v is not None and (v >= goal if op == ">=" else v <= goal)
        lines.append(
            f"| {name} | {_fmt(_get(base, theirs))} | {_fmt(v)} | {op} {goal:g} "
            f"| {'yes' if met else 'no'} |"
        )
    return lines


def write_report(doc: dict[str, Any], card: ModelCard, folder: Path) -> None:
    """Write ``evaluation.md`` and ``froc.png`` into the package folder."""
    plot_froc(doc, folder / "froc.png")
    source = _get(doc, ("data", "source"))
    what = "synthetic chest-CT phantoms" if source == "phantoms" else "scans"
    cut = doc.get("min_probability") or 0.0
    points = doc["froc_ge6mm"]["points"]
    lines = [
        f"# {card.name} — {card.id} {card.version}",
        "",
        f"Held-out evaluation on {doc['n_scans']} {what} "
        f"({doc['n_nodules']} nodules, {doc['n_nodules_ge6mm']} of them non-calcified and "
        f"≥ 6 mm, {doc.get('n_calcified', 0)} calcified), run through the serving path "
        "(ONNX Runtime, CPU). A finding hits a nodule within max(long axis / 2, 2 mm) of its "
        "centre (LUNA16); confidence intervals are a percentile bootstrap over scans. "
        "Definitions are in evaluation.json under `definitions`.",
        "",
        f"Operating point: every finding with probability ≥ {cut:g}.",
        "",
        *_headline_lines(doc),
        *_comparison_lines(doc),
    ]
    robust = doc.get("robustness")
    if isinstance(robust, dict):
        lines += [
            "",
            "## Robustness set",
            "",
            "| sensitivity ≥ 6 mm | FP/scan | CPM | type accuracy | scans |",
            "| --- | --- | --- | --- | --- |",
            f"| {_fmt(robust.get('sensitivity_ge6mm'))} | {_fmt(robust.get('fp_per_scan'))} "
            f"| {_fmt(robust.get('cpm'))} | {_fmt(robust.get('type_accuracy'))} "
            f"| {_fmt(robust.get('n_scans'))} |",
        ]
    lines += _breakdown_lines(doc)
    lines += [
        "",
        "## FROC (≥ 6 mm)",
        "",
        "| FP/scan | " + " | ".join(points) + " | CPM |",
        "| --- " * (len(points) + 2) + "|",
        "| sensitivity | "
        + " | ".join(_fmt(v) for v in points.values())
        + f" | {_fmt(doc['froc_ge6mm']['cpm'])} |",
        "",
        "![FROC and sensitivity by band](froc.png)",
        "",
        f"ONNX: opset {card.onnx.opset}, max |torch − ONNX Runtime| = "
        f"{card.onnx.max_abs_diff_vs_torch:.2e} "
        f"over input shapes {card.training.extra.get('parity_shapes')}.",
        "",
    ]
    (folder / "evaluation.md").write_text("\n".join(lines))
