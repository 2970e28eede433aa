"""What became of each fuzzed case (fuzz_dicom.py): the classes, the classifier, the summary.

* ``read``: exit 0, the study read (``read-skipped``: and files of the folder that are not
  DICOM were named as skipped);
* ``refused``: exit 2, an ``error:`` line on stderr and a printable reason in the JSON for every
  study not read, and nothing written for it;
* failures: ``crash`` (any other exit status, a signal or a traceback; MemoryError under the
  limit is one), ``hang`` (killed at the time limit), ``escape`` (a file written outside
  ``OUT``, or an input file changed), ``written`` (files in ``OUT`` for a study not read),
  ``unclear`` (exit 2 without a reason, a reason that is empty or not printable ASCII, or a
  refusal of the whole folder that names none of its files) and ``accepted`` (a series that a
  mutation made wrong, read as if it were right; judged for cases with one mutation).
"""

from __future__ import annotations

import json
import os
import re
import signal
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fuzz_mutations import MUTATIONS

FAILURES = ("crash", "hang", "escape", "written", "unclear", "accepted")
KINDS = ("read", "read-skipped", "refused", *FAILURES)
_PROTOCOL = ("error:", "skipped:", "not read:")


@dataclass(frozen=True)
class Limits:
    timeout_s: float = 60.0
    memory_mib: int = 2048


@dataclass
class Outcome:
    case: int
    base: str
    mutations: list[str]
    expect: str
    kind: str
    exit_code: int | None
    seconds: float
    peak_rss_mib: float
    mutated_files: int
    files: int
    reasons: list[str] = field(default_factory=list)
    detail: str = ""
    noise: str = ""  # a stderr line that is neither an error nor a skipped file


@dataclass
class Report:
    seed: int
    outcomes: list[Outcome]
    seconds: float
    limits: Limits
    work: Path
    parent_rss_mib: float = 0.0  # the forking process's resident size at the end

    @property
    def failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.kind in FAILURES]

    def counts(self) -> Counter[str]:
        return Counter(o.kind for o in self.outcomes)


def files_under(folder: Path) -> dict[Path, tuple[int, int]]:
    if not folder.is_dir():
        return {}
    return {
        p: (p.stat().st_size, p.stat().st_mtime_ns)
        for p in folder.rglob("*")
        if p.is_file() or p.is_symlink()
    }


def classify(
    outcome: Outcome,
    hung: bool,
    stdout: str,
    stderr: str,
    escaped: list[str],
    out: Path,
    inputs: Sequence[str] = (),
) -> None:
    """Set ``outcome.kind``, its reasons and detail from what the child did (``inputs``: the
    names of the case's files, one of which a refusal of the whole folder must name)."""
    lines = stderr.splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    outcome.noise = next((line for line in lines if not line.startswith(_PROTOCOL)), "")[:300]
    code = outcome.exit_code
    if escaped:
        outcome.kind, outcome.detail = "escape", "; ".join(escaped[:5])
        return
    if hung:
        outcome.kind, outcome.detail = "hang", f"killed after {outcome.seconds:.0f} s"
        return
    if code not in (0, 2) or "Traceback (most recent call last)" in stderr:
        outcome.kind = "crash"
        signal_name = signal.Signals(-code).name if code is not None and code < 0 else None
        outcome.detail = signal_name or " | ".join(lines[-3:])[-600:]
        return
    try:
        parsed = json.loads(stdout) if stdout.strip() else []
        docs: list[dict[str, Any]] = parsed if isinstance(parsed, list) else [parsed]
    except json.JSONDecodeError as exc:
        outcome.kind, outcome.detail = "unclear", f"stdout is not JSON: {exc}"
        return
    not_read = [d for d in docs if d.get("status") != "done"]
    done_dirs = {
        str(out.resolve() / str(d.get("study_instance_uid")))
        for d in docs
        if d.get("status") == "done"
    }
    stray = [
        str(p)
        for p in files_under(out)
        if not any(str(p.resolve()).startswith(d + os.sep) for d in done_dirs)
    ]
    if stray or any(d.get("files") for d in not_read):
        outcome.kind, outcome.detail = "written", "; ".join(stray[:5])
        return
    reasons = [str(d.get("reason") or "") for d in not_read] or [e[6:].strip() for e in errors]
    outcome.reasons = reasons
    unclear = [r for r in reasons if not r or not (r.isascii() and r.isprintable())]
    if code == 2:
        nameless = not docs and inputs and not any(name in stderr for name in inputs)
        if not errors or unclear or len(errors) < len(not_read) or nameless:
            outcome.kind = "unclear"
            outcome.detail = f"exit 2 with {len(errors)} error line(s), reasons {reasons!r}"[:600]
            return
        outcome.kind = "refused"
        return
    if unclear or not docs or all(d.get("status") != "done" for d in docs):
        outcome.kind, outcome.detail = "unclear", f"exit 0 but {reasons!r}"[:600]
        return
    if outcome.expect == "refuse":
        outcome.kind, outcome.detail = "accepted", "read although the mutation makes it wrong"
        return
    skipped = any(d.get("skipped_files") for d in docs)
    outcome.kind = "read-skipped" if skipped else "read"


def _normalise(reason: str) -> str:
    text = re.sub(r"(/[^\s,;:)']+)+", "<path>", reason)
    text = re.sub(r"\b\d+(\.\d+){3,}\b", "<uid>", text)
    text = re.sub(r"-?\d+(\.\d+)?(e[+-]?\d+)?", "#", text)
    return text[:110]


def summary(report: Report) -> str:
    outcomes = report.outcomes
    n = len(outcomes)
    counts = report.counts()
    series = sum(o.mutations != [] for o in outcomes)
    instances = sum(o.mutated_files for o in outcomes)
    seconds = sorted(o.seconds for o in outcomes)
    rss = sorted(o.peak_rss_mib for o in outcomes)
    out = [
        f"PreRead DICOM fuzz: seed {report.seed}, {n} cases ({series} mutated series/studies, "
        f"{instances} mutated or added instance files, {sum(o.files for o in outcomes)} files "
        f"in all), {len(MUTATIONS)} kinds of mutation",
        f"limits per case: {report.limits.timeout_s:g} s, {report.limits.memory_mib} MiB of "
        f"address space; run time {report.seconds:.0f} s",
        "",
        f"{'outcome':<14}{'cases':>7}{'share':>8}",
    ]
    for kind in KINDS:
        out.append(f"{kind:<14}{counts.get(kind, 0):>7}{counts.get(kind, 0) / max(n, 1):>8.1%}")
    if seconds:
        slowest = max(outcomes, key=lambda o: o.seconds)
        out += [
            "",
            f"seconds per case: median {statistics.median(seconds):.2f}, 95th percentile "
            f"{seconds[int(0.95 * (n - 1))]:.2f}, max {seconds[-1]:.2f} (case {slowest.case})",
            f"peak RSS per case (the forked child, its parent's pages included): median "
            f"{statistics.median(rss):.0f} MiB, max {rss[-1]:.0f} MiB (parent "
            f"{report.parent_rss_mib:.0f} MiB)",
        ]
    by_mutation: dict[str, Counter[str]] = {}
    for o in outcomes:
        for note in o.mutations:
            by_mutation.setdefault(note.split(":")[0], Counter())[o.kind] += 1
    out += ["", f"{'mutation':<24}{'cases':>6}{'read':>6}{'refused':>8}{'failed':>7}"]
    for name in sorted(by_mutation):
        c = by_mutation[name]
        read = c["read"] + c["read-skipped"]
        failed = sum(c[k] for k in FAILURES)
        out.append(f"{name:<24}{c.total():>6}{read:>6}{c['refused']:>8}{failed:>7}")
    reasons = Counter(_normalise(r) for o in outcomes if o.kind == "refused" for r in o.reasons)
    out += ["", "commonest refusal reasons (numbers, UIDs and paths elided):"]
    out += [f"{k:>5}  {r}" for r, k in reasons.most_common(25)]
    strict = [o for o in outcomes if o.expect == "read" and o.kind == "refused"]
    if strict:
        out += ["", f"{len(strict)} case(s) refused although their one mutation leaves a "
                f"readable series, e.g. case {strict[0].case} ({strict[0].base}): "
                f"{strict[0].mutations[0][:80]}: {strict[0].reasons[0][:160]}"]  # fmt: skip
    noisy = [o for o in outcomes if o.noise]
    if noisy:
        out += ["", f"{len(noisy)} case(s) printed other lines on stderr, e.g. case "
                f"{noisy[0].case}: {noisy[0].noise[:200]}"]  # fmt: skip
    failures = report.failures
    out += [
        "",
        f"failures: {len(failures)}" + (f" (kept in {report.work / 'kept'})" if failures else ""),
    ]
    for o in failures:
        out.append(f"  case {o.case} [{o.kind}] {'; '.join(o.mutations)}")
        out.append(f"      {o.detail[:400]}")
    return "\n".join(out)
