"""Benchmark the shipped lung-nodule models side by side, in one run, on one 512×512×300 phantom.

1. **End to end, baseline vs new model** (default 1.0.0 vs the newest package):
   ``Predictor.predict`` as served (preprocessing, lung mask, sliding window, post-processing
   and, for the staged 2.x packages, the candidate classifier), each run in a fresh process
   (so that its peak RSS is its own), the two models alternated over ``--reps`` repetitions;
   medians, their ratio, and the windows each ran and skipped (2.x tiles only the lungs' box
   and skips windows without lung).
2. **Engines on the same windows**: the new model's detector on exactly the windows its
   serving path runs, with ONNX Runtime (the serving settings, then each graph optimisation
   level) and with torch eager (the same weights, ``weights.pt``), alternated over the
   repetitions in fresh processes; median seconds, ratio to torch, peak RSS, and the Dice of
   each engine's foreground against ONNX Runtime fp32.
3. **int8 static quantisation** (ONNX Runtime QDQ, per-channel weights, calibrated on windows
   of another phantom) on the same windows: time and Dice against fp32. PreRead ships it only
   if that Dice is ≥ 0.99 and the FROC does not drop (see docs/model-lung-nodule.md).

Run: ``./run bench model`` (or ``.venv/bin/python bench/model_inference.py --help``). Prints
tables; asserts nothing: the figures go into the closing note and the model doc.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import pickle
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

#: ONNX Runtime graph optimisation levels (``GraphOptimizationLevel`` member names).
LEVELS = ("ORT_DISABLE_ALL", "ORT_ENABLE_BASIC", "ORT_ENABLE_EXTENDED", "ORT_ENABLE_ALL")


def _peak_rss_mb() -> float:
    """This process's peak RSS since its ``exec`` (``VmHWM``: ``ru_maxrss`` would carry over
    the parent's peak from before the fork)."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


#: the registry folder the packages are read from (``--models-dir``)
MODELS_DIR = ROOT / "models"


def _package(ref: str) -> Any:
    from inference.registry import Registry

    model_id, _, version = ref.partition("@")
    return Registry(MODELS_DIR).find(model_id, version or None)


def serving_windows(volume: Any, package: Any) -> npt.NDArray[np.float32]:
    """The ``[N, 1, d, h, w]`` windows ``Predictor.predict`` runs for ``package`` on ``volume``
    (the same region, lung mask and padding as :mod:`inference.predict`)."""
    from inference.body import find_body, intersect
    from inference.grid import model_grid_geometry
    from inference.lungs import lung_mask
    from inference.preprocess import to_model_grid
    from inference.resample import resample
    from inference.sliding_window import plan_windows

    card = package.card
    mi = to_model_grid(volume, card.input)
    region = find_body(mi.hu, mi.geometry).box
    mask = None
    if card.pipeline.lung_mask:
        lungs = lung_mask(mi.hu, mi.geometry)
        mask = lungs.mask
        region = None if region is None or lungs.box is None else intersect(region, lungs.box)
    if region is None:
        raise SystemExit("the phantom has no body or no lungs: choose another seed")
    image = mi.array
    coarse_mm = card.pipeline.detector_spacing_mm
    if coarse_mm is not None:  # the detector reads the region on its own grid
        fine = mi.geometry.crop(region)
        coarse = model_grid_geometry(fine, (coarse_mm, coarse_mm, coarse_mm))
        image = resample(image[region], fine, coarse)
        mask = None if mask is None else resample(mask[region], fine, coarse, order=0)
        region = None
    spec = card.inference
    plan = plan_windows(
        image.shape, spec.roi_size_vox, spec.overlap, region=region, window_mask=mask
    )
    box = np.pad(image[plan.box], plan.pads, mode="constant", constant_values=0.0)
    return np.stack([box[s][None] for s, run in zip(plan.slices, plan.run, strict=True) if run])


# --- child processes ------------------------------------------------------------------------


def child_end_to_end(work: Path, ref: str, threads: int) -> dict[str, Any]:
    from inference.grid import model_grid_geometry
    from inference.predict import Predictor
    from inference.sliding_window import plan_windows

    with (work / "volume.pkl").open("rb") as f:
        volume = pickle.load(f)  # written by our parent
    package = _package(ref)
    predictor = Predictor(package, intra_op_threads=threads)
    prediction = predictor.predict(volume)
    spec = package.card.inference
    grid = prediction.model_geometry
    coarse_mm = package.card.pipeline.detector_spacing_mm
    if coarse_mm is not None:  # the windows tile the detector's own grid
        grid = model_grid_geometry(grid, (coarse_mm, coarse_mm, coarse_mm))
    whole = plan_windows(grid.shape, spec.roi_size_vox, spec.overlap)
    w = prediction.windows
    return {
        **{k: round(v, 3) for k, v in prediction.timings.items()},
        "windows_run": w.run if w else None,
        "windows_skipped": w.skipped if w else None,
        "windows_whole_volume": len(whole.slices),
        "roi": list(spec.roi_size_vox),
        "findings": len(prediction.findings),
        "peak_rss_mb": _peak_rss_mb(),
    }


def _ort_runner(path: Path, threads: int, level: str | None) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    if level is not None:
        options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: np.asarray(session.run(None, {name: x})[0])


def child_engine(work: Path, ref: str, engine: str, threads: int) -> dict[str, Any]:
    """One engine over the saved windows, one window per call as served (batch size 1)."""
    windows = np.load(work / "windows.npy", mmap_mode="r")
    package = _package(ref)
    if engine == "torch":
        import torch

        from training.train import network_from_package

        torch.set_num_threads(threads)
        net = network_from_package(package.path, package.card.training.extra["network_config"])

        def run(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
            with torch.no_grad():
                out: npt.NDArray[np.float32] = net(torch.from_numpy(x)).numpy()
            return out

    elif engine == "int8":
        run = _ort_runner(work / "int8.onnx", threads, None)
    else:  # "onnxruntime" (serving settings) or "onnxruntime:<LEVEL>"
        _, _, level = engine.partition(":")
        run = _ort_runner(package.model_path, threads, level or None)
    run(np.ascontiguousarray(windows[:1]))  # warm-up (allocations, kernel choice)
    labels = []
    seconds = 0.0
    for i in range(len(windows)):
        x = np.ascontiguousarray(windows[i : i + 1])
        t0 = time.perf_counter()
        logits = run(x)
        seconds += time.perf_counter() - t0
        labels.append(logits[0, 1:].max(axis=0) > logits[0, 0])
    np.save(work / f"labels-{engine.replace(':', '-')}.npy", np.stack(labels))
    return {"seconds": seconds, "peak_rss_mb": _peak_rss_mb(), "windows": len(windows)}


# --- the parent -----------------------------------------------------------------------------


def _child(args: list[str]) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"child {args} failed:\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def alternated(tags: list[str], reps: int) -> Iterator[tuple[int, str]]:
    """Each repetition runs every tag once, starting one further along each time, so that no
    tag always runs first (or right after the same neighbour) on a shared machine."""
    for r in range(reps):
        k = r % len(tags)
        for tag in tags[k:] + tags[:k]:
            yield r, tag


def dice(a: npt.NDArray[np.bool_], b: npt.NDArray[np.bool_]) -> float:
    total = int(a.sum()) + int(b.sum())
    return 2.0 * float((a & b).sum()) / total if total else 1.0


def quantize(work: Path, package: Any, calibration: npt.NDArray[np.float32]) -> str | None:
    """Write ``work/int8.onnx`` calibrated on ``calibration`` (``[N, 1, d, h, w]`` windows);
    None, or why it could not be made."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    name = package.card.onnx.input_name

    class Reader(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self._it = iter(calibration)

        def get_next(self) -> dict[str, npt.NDArray[np.float32]] | None:
            x = next(self._it, None)
            return None if x is None else {name: np.ascontiguousarray(x[None])}

    pre = work / "pre.onnx"
    try:  # shape inference first, as ONNX Runtime advises; without it when it cannot finish
        quant_pre_process(str(package.model_path), str(pre))
    except Exception as exc:  # the quantisation below is still worth trying, said aloud
        print(
            f"int8: ONNX Runtime's shape-inference pre-processing failed "
            f"({type(exc).__name__}: {exc}); quantising the graph without it",
            file=sys.stderr,
        )
        pre = package.model_path
    try:
        quantize_static(
            str(pre),
            str(work / "int8.onnx"),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            weight_type=QuantType.QInt8,
            activation_type=QuantType.QUInt8,
        )
    except Exception as exc:  # reported in the table
        return f"{type(exc).__name__}: {exc}"
    return None


def main() -> None:
    global MODELS_DIR
    ap = argparse.ArgumentParser(description="lung-nodule models side by side (see docstring)")
    ap.add_argument("--baseline", default="lung-nodule@1.0.0", help="id@version")
    ap.add_argument("--model", default="lung-nodule", help="id@version (default: the newest)")
    ap.add_argument("--seed", type=int, default=424_242, help="phantom seed (512×512)")
    ap.add_argument("--slices", type=int, default=300)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--calibration-windows", type=int, default=16)
    ap.add_argument("--no-int8", action="store_true")
    ap.add_argument(
        "--models-dir", type=Path, default=None, help="registry folder (default: models/)"
    )
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--engine", help=argparse.SUPPRESS)
    ap.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.models_dir is not None:
        MODELS_DIR = args.models_dir.resolve()
    if args.child == "e2e":
        print(json.dumps(child_end_to_end(args.work, args.model, args.threads)))
        return
    if args.child == "engine":
        print(json.dumps(child_engine(args.work, args.model, args.engine, args.threads)))
        return

    from training.phantoms import generate_phantom

    new = _package(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        volume = generate_phantom(args.seed, matrix=512, max_slices=args.slices).volume
        with (work / "volume.pkl").open("wb") as f:
            pickle.dump(volume, f)
        windows = serving_windows(volume, new)
        np.save(work / "windows.npy", windows)
        int8_error: str | None = "skipped (--no-int8)"
        if not args.no_int8:
            calib = generate_phantom(args.seed + 1, matrix=512, max_slices=120).volume
            cw = serving_windows(calib, new)
            pick = np.linspace(0, len(cw) - 1, min(args.calibration_windows, len(cw)))
            with contextlib.chdir(work):  # ONNX Runtime's quantiser writes temporaries here
                int8_error = quantize(work, new, cw[pick.astype(int)])
        del volume

        common = ["--work", str(work), "--threads", str(args.threads)]
        common += ["--models-dir", str(MODELS_DIR)]
        e2e: dict[str, list[dict[str, Any]]] = {args.baseline: [], args.model: []}
        for _, ref in alternated([args.baseline, args.model], args.reps):
            e2e[ref].append(_child(["--child", "e2e", *common, "--model", ref]))
        engines = ["torch", "onnxruntime", *(f"onnxruntime:{lv}" for lv in LEVELS)]
        if int8_error is None:
            engines.append("int8")
        runs: dict[str, list[dict[str, Any]]] = {e: [] for e in engines}
        for _, engine in alternated(engines, args.reps):
            runs[engine].append(
                _child(["--child", "engine", *common, "--model", args.model, "--engine", engine])
            )
        reference = np.load(work / "labels-onnxruntime.npy")
        agreement = {
            e: dice(reference, np.load(work / f"labels-{e.replace(':', '-')}.npy")) for e in engines
        }

    def med(rows: list[dict[str, Any]], key: str) -> float:
        return float(statistics.median(r[key] for r in rows))

    print(
        f"phantom seed {args.seed}, 512×512×{args.slices}; {args.threads} threads; "
        f"{args.reps} repetitions, alternated; medians"
    )
    print("\n1. End to end (Predictor.predict, as served)")
    print(
        f"{'model':<22}{'total s':>9}{'infer s':>9}{'post s':>8}{'windows run':>13}"
        f"{'skipped':>9}{'of whole vol':>14}{'findings':>10}{'peak RSS MB':>13}"
    )
    for ref, rows in e2e.items():
        r0 = rows[0]
        run_s = "-" if r0["windows_run"] is None else str(r0["windows_run"])
        skip_s = "-" if r0["windows_skipped"] is None else str(r0["windows_skipped"])
        print(
            f"{ref:<22}{med(rows, 'total'):>9.2f}{med(rows, 'infer'):>9.2f}"
            f"{med(rows, 'postprocess'):>8.2f}{run_s:>13}{skip_s:>9}"
            f"{r0['windows_whole_volume']:>14}{r0['findings']:>10}"
            f"{med(rows, 'peak_rss_mb'):>13.0f}"
        )
    base_rows, new_rows = e2e[args.baseline], e2e[args.model]
    print(
        f"time ratio {args.model} / {args.baseline}: "
        f"{med(new_rows, 'total') / med(base_rows, 'total'):.2f}x (goal ≤ 0.6x)"
    )
    n0 = new_rows[0]
    if n0["windows_run"] is not None:
        whole = n0["windows_whole_volume"]
        print(
            f"{args.model}: {n0['windows_run']} of {whole} windows of "
            f"{'×'.join(map(str, n0['roi']))} over the whole volume run "
            f"({1 - n0['windows_run'] / whole:.0%} skipped: lungs' box and windows without "
            f"lung; {n0['windows_skipped']} skipped inside the box)"
        )

    print(f"\n2. {args.model} detector on the same {len(windows)} windows, one per call")
    torch_s = med(runs["torch"], "seconds")
    print(f"{'engine':<34}{'seconds':>9}{'/ torch':>9}{'peak RSS MB':>13}{'Dice vs ORT':>13}")
    for engine, rows in runs.items():
        s = med(rows, "seconds")
        print(
            f"{engine:<34}{s:>9.2f}{s / torch_s:>8.2f}x{med(rows, 'peak_rss_mb'):>13.0f}"
            f"{agreement[engine]:>13.4f}"
        )
    paired = [
        o["seconds"] / t["seconds"] for o, t in zip(runs["onnxruntime"], runs["torch"], strict=True)
    ]
    print(
        f"ONNX Runtime (serving settings) / torch eager: median of paired ratios "
        f"{statistics.median(paired):.2f}x over {len(paired)} pairs (goal ≤ 0.7x)"
    )
    if int8_error is None:
        ratio = med(runs["int8"], "seconds") / med(runs["onnxruntime"], "seconds")
        int8 = f"Dice vs fp32 {agreement['int8']:.4f}, {ratio:.2f}x the fp32 time"
    else:
        int8 = f"not measured: {int8_error}"
    print(f"\n3. int8 static quantisation: {int8}")


if __name__ == "__main__":
    main()
