"""The final-report extractor measured on labelled report texts: precision, recall and F1 of
"mentions a lung nodule ≥ 6 mm", per split (train: the rules were tuned on it; test: held out)
and per language, and how often the largest size it reads agrees with the label.

Run: ``.venv/bin/python bench/extractor.py [FILE] [--errors]`` (FILE: default
``tests/finalreports/data/report_texts.jsonl``). ``--errors`` lists the texts of the *train*
split the extractor gets wrong (ids and the two answers); the test split's errors are not
shown, so that tuning the rules does not look at them (``--errors-of-test`` shows them).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from preread.finalreports.evaluation import Outcome, load_labelled, run, score

DEFAULT = Path(__file__).resolve().parents[1] / "tests/finalreports/data/report_texts.jsonl"


def _row(name: str, outcomes: Sequence[Outcome]) -> str:
    s = score(outcomes)
    positives = s.tp + s.fn
    return (
        f"{name:<14} {s.n:>4} {positives:>4}  {s.precision:>9.3f} {s.recall:>6.3f} {s.f1:>6.3f}"
        f"  {s.tp:>3} {s.fp:>3} {s.fn:>3} {s.tn:>3}  {s.largest_agree / max(s.n, 1):>8.2f}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("file", nargs="?", type=Path, default=DEFAULT)
    parser.add_argument("--errors", action="store_true", help="list the train split's errors")
    parser.add_argument("--errors-of-test", action="store_true", help="list the test's too")
    args = parser.parse_args(argv)
    outcomes = run(load_labelled(args.file))
    print(f"{args.file}: {len(outcomes)} texts; 'nodule >= 6 mm mentioned'")
    print(f"{'group':<14} {'n':>4} {'pos':>4}  precision recall     F1   tp  fp  fn  tn  largest")
    print(_row("all", outcomes))
    for split in ("train", "test"):
        part = [o for o in outcomes if o.item.split == split]
        print(_row(split, part))
        for lang in ("en", "zh", "mixed"):
            print(_row(f"  {split}/{lang}", [o for o in part if o.item.lang == lang]))
    for lang in ("en", "zh", "mixed"):
        print(_row(lang, [o for o in outcomes if o.item.lang == lang]))
    shown = {"train"} | ({"test"} if args.errors_of_test else set())
    if args.errors or args.errors_of_test:
        for o in outcomes:
            if o.item.split in shown and (not o.correct or not o.largest_agrees):
                print(
                    f"{o.item.id} [{o.item.split}] label {o.item.nodule_ge6mm}/"
                    f"{o.item.largest_mm} got {o.predicted}/{o.largest_mm}: {o.item.text!r}"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
