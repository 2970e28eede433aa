"""Fuzz ``preread read`` with mutated DICOM series (issue 12, "Hostile and real-world DICOM").

Each case is one study folder: a small phantom CT series (or its multi-frame twin) after one
to three seeded mutations (fuzz_mutations.py: truncated files, forged lengths and VRs, hostile
values, missing or contradictory geometry, NaN and zero spacings, duplicate positions, mixed
series and studies, absurd sizes, a 100,000-frame header, sequences nested 100,000 deep,
junk files, path-like UIDs). The case is read by ``preread read IN --out OUT --json`` — the
CLI's own code (``preread.cli.app``) in a child process forked from this one, so the imports
are paid once — under a wall-clock limit (``--timeout``, then SIGKILL) and an address-space
limit (``--memory-mib`` above the parent's size, ``resource.RLIMIT_AS``). The child's working
folder, its ``PREREAD_DATA_DIR`` and the case's ``IN``/``OUT`` lie in one sandbox.

Every case ends in one class (fuzz_outcomes.py): ``read``, ``read-skipped``, ``refused``, or a
failure: ``crash``, ``hang``, ``escape``, ``written``, ``unclear``, ``accepted``.

Prints a summary (outcomes, time and memory per case, outcomes per mutation, the commonest
refusal reasons, every failure with its case number) and exits 1 on any failure. A failing
case's folder is kept under ``WORK/kept/``; ``--case N`` (with the same ``--seed``) runs one case
again and keeps it.

Run: ``./run fuzz [--count N] [--seed S]`` (``.venv/bin/python bench/fuzz_dicom.py --help``).
The model is the tests' threshold network (tests/inference/tiny_model.py) with series rules
relaxed to the 16-slice phantom: what is fuzzed is everything before and around the model.
"""

from __future__ import annotations

import argparse
import functools
import gc
import io
import json
import logging
import os
import resource
import shutil
import signal
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, NoReturn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # training, tests.inference.tiny_model

from fuzz_mutations import (  # noqa: E402
    ABSOLUTE_ESCAPE,
    Case,
    Template,
    build_template,
    make_case,
)
from fuzz_outcomes import (  # noqa: E402
    FAILURES,
    Limits,
    Outcome,
    Report,
    classify,
    files_under,
    summary,
)

MODEL = "fuzz-nodule"
_TAIL = 1 << 20  # bytes of the child's stdout / stderr kept


# -- the model ------------------------------------------------------------------------------


def fuzz_models(folder: Path) -> Path:
    """The tests' tiny threshold model as ``fuzz-nodule``, its rules relaxed to the phantom
    (4 slices, any description), a 4 mm grid and a 50 cm³ smallest finding, so that a read
    takes well under a second."""
    from inference.package import ModelPackage
    from tests.inference.tiny_model import write_tiny_package

    package = write_tiny_package(folder / MODEL / "1.0.0", model_id=MODEL)
    card = ModelPackage.load(package).card
    update = {
        "series_rules": card.series_rules.model_copy(
            update={"min_slices": 4, "description_include": []}
        ),
        "input": card.input.model_copy(update={"spacing_mm": (4.0, 4.0, 4.0)}),
        "thresholds": card.thresholds.model_copy(update={"min_volume_mm3": 50_000.0}),
    }
    card.model_copy(update=update).to_yaml(package / "model.yaml")
    return folder


def warm_up(template: Template, models: Path, work: Path) -> None:
    """Read the unmutated series once in this process: it must read, and every module the
    read imports lazily is then loaded before the children are forked."""
    _cli_command()  # what the children run
    from inference.package import ModelPackage
    from inference.predict import Predictor
    from inference.session import SessionCache
    from preread.read import read_folder

    folder = work / "warm-up"
    folder.mkdir(parents=True)
    for k, data in enumerate(template.slices):
        (folder / f"{k:04d}.dcm").write_bytes(data)
    # a cache of its own: the shared one would hand the children a session whose threads
    # were not forked with them
    predictor = Predictor(ModelPackage.load(models / MODEL / "1.0.0"), sessions=SessionCache())
    result = read_folder(folder, predictor, work / "warm-up-out")[0]
    if result.status != "done":
        raise SystemExit(f"the unmutated template does not read: {result.reason}")
    del predictor, result  # no ONNX Runtime session (nor its threads) left at the fork
    gc.collect()
    shutil.rmtree(folder)
    shutil.rmtree(work / "warm-up-out")


# -- one case -------------------------------------------------------------------------------


@functools.cache
def _cli_command() -> Any:
    """The ``preread`` command as ``preread.cli.app()`` builds it on every call (typer's
    ``get_command``): built once here, before the children are forked."""
    import typer.main

    from preread.cli import app

    return typer.main.get_command(app)


def _status_kib(field_name: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    return 0


def _child(args: list[str], env: dict[str, str], sandbox: Path, memory: int) -> NoReturn:
    """Run ``preread <args>`` in this forked child as the CLI would run it; never returns."""
    code = 70
    try:
        for fd, name in ((1, "stdout"), (2, "stderr")):
            target = os.open(sandbox / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.dup2(target, fd)
            os.close(target)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), encoding="utf-8")
        sys.stderr = io.TextIOWrapper(
            io.FileIO(2, "w", closefd=False), encoding="utf-8", errors="backslashreplace"
        )
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        os.chdir(sandbox / "cwd")
        for key in [k for k in os.environ if k.startswith("PREREAD_")]:
            del os.environ[key]
        os.environ.update(env)
        warnings.resetwarnings()  # Python's defaults, not the test runner's
        for action, category in (
            ("ignore", DeprecationWarning),
            ("ignore", PendingDeprecationWarning),
            ("ignore", ImportWarning),
            ("ignore", ResourceWarning),
        ):
            warnings.simplefilter(action, category)  # type: ignore[arg-type]
        logging.root.handlers.clear()
        try:
            _cli_command()(args, prog_name="preread")
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
        except BaseException:
            traceback.print_exc()
            code = 1
    except BaseException:
        try:
            traceback.print_exc()
        finally:
            code = 70
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


class Runner:
    """Runs cases in forked children under ``work/case`` (see the module docstring)."""

    def __init__(self, work: Path, models: Path, limits: Limits, template: Template) -> None:
        self.work = work
        self.models = models
        self.limits = limits
        self.template_digests = template.digests()
        self.sandbox = work / "case"

    def run(self, case: Case, seed: int) -> Outcome:
        sandbox = self.sandbox
        shutil.rmtree(sandbox, ignore_errors=True)
        for name in ("in", "out", "cwd", "data"):
            (sandbox / name).mkdir(parents=True)
        Path(ABSOLUTE_ESCAPE).unlink(missing_ok=True)
        written = _write_case(case, sandbox / "in", seed)
        before_in = files_under(sandbox / "in")
        top = set(self.work.iterdir())
        args = ["read", str(sandbox / "in"), "--out", str(sandbox / "out"), "--json"]
        args += ["--model", MODEL]
        env = {"PREREAD_MODELS_DIR": str(self.models), "PREREAD_DATA_DIR": str(sandbox / "data")}
        memory = _status_kib("VmSize") * 1024 + self.limits.memory_mib * 1024 * 1024
        sys.stdout.flush()
        sys.stderr.flush()
        started = time.monotonic()
        pid = os.fork()
        if pid == 0:
            _child(args, env, sandbox, memory)
        hung = False
        while True:
            done, status, usage = os.wait4(pid, os.WNOHANG)
            if done == pid:
                break
            if time.monotonic() - started > self.limits.timeout_s:
                os.kill(pid, signal.SIGKILL)
                _, status, usage = os.wait4(pid, 0)
                hung = True
                break
            time.sleep(0.01)
        seconds = time.monotonic() - started
        code = os.waitstatus_to_exitcode(status)
        stdout = _tail(sandbox / "stdout")
        stderr = _tail(sandbox / "stderr")
        escaped = _escapes(self.work, top, sandbox, before_in)
        mutated = sum(_digest_of(d) not in self.template_digests for d in case.files)
        outcome = Outcome(
            case=case.number,
            base=case.base,
            mutations=case.notes,
            expect=case.expect,
            kind="",
            exit_code=code,
            seconds=round(seconds, 3),
            peak_rss_mib=round(usage.ru_maxrss / 1024, 1),
            mutated_files=mutated + len(case.extras),
            files=written,
        )
        inputs = [p.name for p in before_in]
        classify(outcome, hung, stdout, stderr, escaped, sandbox / "out", inputs)
        return outcome


def _digest_of(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def _tail(path: Path) -> str:
    with path.open("rb") as f:
        f.seek(max(0, path.stat().st_size - _TAIL))
        return f.read().decode("utf-8", "backslashreplace")


def _write_case(case: Case, folder: Path, seed: int) -> int:
    """The case's files under random names, in a shuffled order (as a folder copy has them)."""
    import random

    names = random.Random(f"{seed}:{case.number}:names")
    for data in case.files:
        (folder / f"{names.getrandbits(48):012x}").write_bytes(data)
    for name, data in case.extras:
        (folder / name).write_bytes(data)
    return len(case.files) + len(case.extras)


def _escapes(
    work: Path, top: set[Path], sandbox: Path, before_in: dict[Path, tuple[int, int]]
) -> list[str]:
    """Files the read wrote outside OUT (and its data folder), and input files it changed."""
    found = [str(p) for p in set(work.iterdir()) - top]
    if Path(ABSOLUTE_ESCAPE).exists():
        found.append(ABSOLUTE_ESCAPE)
    allowed = {sandbox / n for n in ("in", "out", "data", "stdout", "stderr")}
    found += [str(p) for p in files_under(sandbox / "cwd")]
    for path in sandbox.iterdir():
        if path not in allowed | {sandbox / "cwd"}:
            found += [str(path)] + [str(p) for p in files_under(path)]
    after_in = files_under(sandbox / "in")
    found += [f"{p} (input changed)" for p in before_in if after_in.get(p) != before_in[p]]
    found += [f"{p} (new in the input folder)" for p in after_in if p not in before_in]
    return found


# -- a run ----------------------------------------------------------------------------------


def run_fuzz(
    count: int,
    seed: int,
    work: Path,
    *,
    limits: Limits | None = None,
    only: Sequence[int] | None = None,
    keep_all: bool = False,
    progress: Callable[[Outcome], None] | None = None,
) -> Report:
    """Run cases ``0 … count - 1`` (or ``only`` those) of seed ``seed`` under ``work``."""
    limits = limits or Limits()
    started = time.monotonic()
    work.mkdir(parents=True, exist_ok=True)
    template = build_template()
    models = fuzz_models(work / "models")
    warm_up(template, models, work)
    runner = Runner(work, models, limits, template)
    outcomes = []
    for number in only if only is not None else range(count):
        case = make_case(template, seed, number)
        outcome = runner.run(case, seed)
        outcomes.append(outcome)
        if outcome.kind in FAILURES or keep_all:
            kept = work / "kept" / f"case-{number:05d}"
            shutil.rmtree(kept, ignore_errors=True)
            kept.parent.mkdir(exist_ok=True)
            shutil.move(runner.sandbox, kept)
            (kept / "outcome.json").write_text(json.dumps(asdict(outcome), indent=2) + "\n")
        if progress is not None:
            progress(outcome)
    shutil.rmtree(runner.sandbox, ignore_errors=True)
    rss = _status_kib("VmRSS") / 1024
    return Report(seed, outcomes, time.monotonic() - started, limits, work, rss)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=600, help="cases (default 600)")
    parser.add_argument("--seed", type=int, default=12, help="the run's seed (default 12)")
    parser.add_argument("--case", type=int, action="append", help="run only this case (repeatable)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per case (default 60)")
    parser.add_argument(
        "--memory-mib", type=int, default=2048, help="address space per case (default 2048)"
    )
    parser.add_argument("--work", type=Path, help="work folder (default: a new temporary one)")
    parser.add_argument("--keep-all", action="store_true", help="keep every case's folder")
    parser.add_argument("--json", type=Path, help="write every outcome here")
    parser.add_argument("--quiet", action="store_true", help="no line per case")
    args = parser.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="preread-fuzz-"))

    def show(o: Outcome) -> None:
        if not args.quiet or o.kind in FAILURES:
            print(
                f"case {o.case:5d} {o.kind:<13}{o.seconds:6.2f} s  {'; '.join(o.mutations)}"[:200],
                flush=True,
            )

    report = run_fuzz(
        args.count,
        args.seed,
        work,
        limits=Limits(args.timeout, args.memory_mib),
        only=args.case,
        keep_all=args.keep_all or bool(args.case),
        progress=show,
    )
    print()
    print(summary(report))
    if args.json:
        args.json.write_text(json.dumps([asdict(o) for o in report.outcomes], indent=1) + "\n")
    if not report.failures and not args.work and not args.case:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
