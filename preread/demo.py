"""``preread demo``: phantom chest CTs, written as DICOM, read back and pre-read by the model.

Today the demo runs the model side end to end on files: phantoms are written as DICOM CT series
(with their truth SEG and truth.json), each series is read back from disk by the gateway's volume
assembly, and the installed lung-nodule package pre-reads it through ONNX Runtime. The table
compares what the model found with the phantom's truth. (Orthanc, the watcher and the SR/SEG
write-back join the demo with the pre-read pipeline.)
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from preread.settings import Settings


@dataclass(frozen=True)
class DemoRow:
    study: str
    slices: int
    truth_nodules: int
    truth_ge6mm: int
    found: int
    found_ge6mm_hit: int
    false_positives: int
    seconds: float
    provider: str


def run_demo(
    settings: Settings,
    *,
    count: int,
    seed: int,
    matrix: int = 512,
    model: str = "lung-nodule",
    on_row: Callable[[DemoRow], None] | None = None,
) -> list[DemoRow]:
    from dicom_gateway.volume import read_series_dir
    from inference.predict import Predictor
    from inference.registry import Registry
    from training.phantom_dicom import write_phantoms

    package = Registry(settings.models_dir).find(model)
    predictor = Predictor(
        package,
        providers=settings.providers,
        policy=settings.provider_policy,
        intra_op_threads=settings.intra_op_threads or None,
    )
    out = settings.data_dir / "demo"
    rows: list[DemoRow] = []
    for study in write_phantoms(out, count, seed, matrix=matrix):
        truth = json.loads(study.truth_path.read_text())["nodules"]
        t0 = time.perf_counter()
        volume = read_series_dir(study.ct_dir)
        prediction = predictor.predict(volume)
        seconds = time.perf_counter() - t0
        hits = set()
        fps = 0
        for f in prediction.findings:
            near = [
                i
                for i, n in enumerate(truth)
                if np.linalg.norm(np.subtract(f.center_lps_mm, n["center_lps_mm"]))
                <= max(n["long_axis_mm"] / 2, 2.0)
            ]
            if near:
                hits.update(near)
            else:
                fps += 1
        row = DemoRow(
            study=Path(study.study_dir).name,
            slices=volume.geometry.shape[0],
            truth_nodules=len(truth),
            truth_ge6mm=sum(1 for n in truth if n["long_axis_mm"] >= 6),
            found=len(prediction.findings),
            found_ge6mm_hit=sum(1 for i in hits if truth[i]["long_axis_mm"] >= 6),
            false_positives=fps,
            seconds=seconds,
            provider=prediction.session_info.provider,
        )
        rows.append(row)
        if on_row:
            on_row(row)
    return rows
