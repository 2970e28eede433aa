"""The short human-readable evaluation report of a model package: evaluation.md + froc.png."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from inference.card import ModelCard

GOALS = {
    "sensitivity_ge6mm": (">=", 0.90),
    "fp_per_scan": ("<=", 1.0),
    "dice_median_ge6mm": (">=", 0.75),
    "diameter_mae_mm_ge6mm": ("<=", 1.5),
}


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def plot_froc(doc: dict[str, Any], path: Path) -> None:
    curve = doc["froc_ge6mm"]["curve"]
    fps = [p["fp_per_scan"] for p in curve]
    sens = [p["sensitivity"] for p in curve]
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


def write_report(doc: dict[str, Any], card: ModelCard, folder: Path) -> None:
    """Write ``evaluation.md`` and ``froc.png`` into the package folder."""
    plot_froc(doc, folder / "froc.png")
    m = card.metrics
    lines = [
        f"# {card.name} — {card.id} {card.version}",
        "",
        f"Held-out evaluation on {doc['n_scans']} synthetic chest-CT phantoms "
        f"({doc['n_nodules']} nodules, {doc['n_nodules_ge6mm']} of them ≥ 6 mm), seeds disjoint "
        "from training, run through the serving path (ONNX Runtime, CPU). Definitions are in "
        "evaluation.json under `definitions`.",
        "",
        "| metric | value | goal | met |",
        "| --- | --- | --- | --- |",
    ]
    for key, (op, goal) in GOALS.items():
        v = m.get(key)
        met = v is not None and (v >= goal if op == ">=" else v <= goal)
        lines.append(f"| {key} | {_fmt(v)} | {op} {goal} | {'yes' if met else 'no'} |")
    lines += [
        f"| froc_cpm_ge6mm | {_fmt(m.get('froc_cpm_ge6mm'))} | | |",
        "| volume_median_abs_rel_error_ge6mm | "
        f"{_fmt(m.get('volume_median_abs_rel_error_ge6mm'))} | | |",
        "",
        "## Sensitivity by long-axis band",
        "",
        "| band | nodules | sensitivity |",
        "| --- | --- | --- |",
    ]
    for band, v in doc["sensitivity_by_band"].items():
        lines.append(f"| {band} mm | {v['n']} | {_fmt(v['sensitivity'])} |")
    lines += ["", "## Sensitivity (≥ 6 mm) by type", "", "| type | sensitivity |", "| --- | --- |"]
    for t, v in doc["sensitivity_by_type"].items():
        lines.append(f"| {t} | {_fmt(v)} |")
    lines += [
        "",
        "## FROC (≥ 6 mm)",
        "",
        "| FP/scan | " + " | ".join(doc["froc_ge6mm"]["points"]) + " | CPM |",
        "| --- " * (len(doc["froc_ge6mm"]["points"]) + 2) + "|",
        "| sensitivity | "
        + " | ".join(_fmt(v) for v in doc["froc_ge6mm"]["points"].values())
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
