"""Train a phantom detector config on one GPU inside a fixed wall-clock budget: how
lung-nodule 2.3.0's detector was trained (one H200; docs/model-lung-nodule.md).

    python deploy/gpu/train_detector.py CONFIG SECONDS [--out DIR] [--device cuda]

1. prepares the config's phantom cases, one process per core;
2. measures the steady training rate with a 300-iteration probe of the same config;
3. writes into CONFIG the number of iterations (a multiple of 500) that fits in what is left of
   SECONDS and trains it as ``preread train --device cuda --loader-workers N`` would: the same
   ``training.train.train``, never a CPU fallback, batches drawn by a process per core;
4. with ``--out``, the run folder (checkpoint, weights, metrics, dataset.json) and CONFIG live
   in DIR, so a run cut short still leaves its last checkpoint there.

The CONFIG it leaves is the one that trained the weights: commit it with them. It does not go
through the ``preread`` CLI, which imports the whole service (store, report formats); a
training machine needs only what training imports.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from preread.settings import Settings  # noqa: E402
from training.config import TrainConfig, load_config  # noqa: E402
from training.data import Case, training_cases  # noqa: E402
from training.provenance import DatasetProvenance  # noqa: E402
from training.train import METRICS, train  # noqa: E402

PROBE_ITERATIONS = 300
RESERVE_S = 30.0  # the final save and copies


def steady_rate(metrics: Path, batch_size: int) -> float:
    """Iterations per second between the probe's 100th and last iteration (the loader's and
    the GPU's start-up excluded)."""
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    a, b = rows[99], rows[-1]

    def elapsed(r: dict[str, float]) -> float:
        return r["iteration"] * batch_size / r["patches_per_s"]

    return float(b["iteration"] - a["iteration"]) / (elapsed(b) - elapsed(a))


def run(cfg: TrainConfig, cases: list[Case], device: str, workers: int) -> None:
    def step(it: int, loss: float, rate: float) -> None:
        if it % 250 == 0 or it == cfg.optim.iterations:
            print(f"  iteration {it}: loss {loss:.4f}, {rate:.0f} patches/s", flush=True)

    result = train(cfg, cases, device=device, on_step=step, loader_workers=workers)
    DatasetProvenance(cfg.data.source).write(result.output_dir)
    print(
        f"trained {result.iterations} iterations on {result.device} in {result.seconds:.0f} s: "
        f"final loss {result.final_loss:.4f}, {result.patches_per_second:.0f} patches/s",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("seconds", type=float, help="wall-clock budget of the whole run")
    parser.add_argument("--out", type=Path, help="keep the run folder and CONFIG here")
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()
    start = time.monotonic()
    cores = os.cpu_count() or 1
    config = args.config.resolve()
    cfg = load_config(config)
    if cfg.data.source != "phantoms":
        sys.exit(f"{config}: this trains phantom configs; `preread train` trains {cfg.data.source}")
    t = time.monotonic()
    cases = training_cases(
        cfg.data, cfg.input, Settings().data_dir / "cache" / "cases", workers=cores
    )
    print(f"{len(cases)} cases prepared in {time.monotonic() - t:.0f} s", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        probe = cfg.model_copy(
            update={
                "optim": cfg.optim.model_copy(
                    update={"iterations": PROBE_ITERATIONS, "checkpoint_every": PROBE_ITERATIONS}
                ),
                "output_dir": Path(tmp) / "probe",
            }
        )
        run(probe, cases, args.device, cores - 1 if cores > 2 else 1)
        its_per_s = steady_rate(Path(tmp) / "probe" / METRICS, cfg.optim.batch_size)
    left = args.seconds - (time.monotonic() - start) - RESERVE_S
    iterations = int(its_per_s * left) // 500 * 500
    print(f"probe: {its_per_s:.2f} it/s; {left:.0f} s left: {iterations} iterations", flush=True)
    if iterations < 500:
        sys.exit("too little time left for 500 iterations")

    text = config.read_text()
    text, n = re.subn(r"(?m)^(  iterations:) \d+$", rf"\g<1> {iterations}", text)
    if n != 1:
        sys.exit(f"{config}: expected one 'optim.iterations' line to set")
    config.write_text(text)
    cfg = load_config(config)
    assert cfg.optim.iterations == iterations
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        shutil.copy(config, args.out / config.name)
        (args.out / "run").mkdir(exist_ok=True)
        if cfg.output_dir.is_symlink() or cfg.output_dir.exists():
            sys.exit(f"{cfg.output_dir} exists: move it away first")
        cfg.output_dir.parent.mkdir(parents=True, exist_ok=True)
        cfg.output_dir.symlink_to((args.out / "run").resolve())
    run(cfg, cases, args.device, cores - 1 if cores > 2 else 1)
    print(f"done in {time.monotonic() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
