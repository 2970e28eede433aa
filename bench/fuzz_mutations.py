"""The fuzzer's catalogue of mutations (see fuzz_dicom.py for the run).

A case starts from one of the template's forms (fuzz_case.py: the *base*, 16 single-frame
slices or one multi-frame instance) and applies one to three mutations, drawn by a seeded
``random.Random``: the same (seed, case number) always gives the same files. This module holds
the series-level ones (phase 0: slices dropped, doubled, mixed with other series, studies and
modalities, path-like StudyInstanceUIDs, junk files, multi-frame headers up to 100,000 frames);
fuzz_values.py the value and encoding ones.

Each mutation says what a correct reader must do with its result: ``refuse`` (the series is
wrong: reading it would give a wrong answer), ``read`` (the series is fine: junk beside it or
private data in it) or ``either``. Expectations are checked only for cases with one mutation
(a second one may undo the first: a duplicated slice, then that slice dropped).
"""

from __future__ import annotations

import itertools
import random
import warnings
from collections.abc import Callable
from io import BytesIO

import fuzz_raw as raw
import fuzz_values
import pydicom
from fuzz_case import (
    ABSOLUTE_ESCAPE,
    T_FRAME_OF_REFERENCE,
    T_FRAMES,
    T_MEDIA_SOP_CLASS,
    T_MODALITY,
    T_PER_FRAME,
    T_PLANE_POSITION,
    T_POSITION,
    T_SERIES,
    T_SOP_CLASS,
    T_STUDY,
    T_SYNTAX,
    Base,
    Case,
    Expect,
    Registry,
    Template,
    build_template,
    new_sop,
)
from pydicom.uid import MRImageStorage

__all__ = ["ABSOLUTE_ESCAPE", "MUTATIONS", "Case", "Template", "build_template", "make_case"]

#: The series-level mutations, in the order of this module.
mutation = Registry()


def _interior_gap(kept: list[int]) -> bool:
    return any(b - a > 1 for a, b in itertools.pairwise(kept))


# -- phase 0: the series --------------------------------------------------------------------


@mutation(0)
def m_drop_slices(case: Case) -> tuple[str, Expect]:
    n = len(case.files)
    gone = set(case.rng.sample(range(n), case.rng.randint(1, 3)))
    kept = [i for i in range(n) if i not in gone]
    case.files = [case.files[i] for i in kept]
    return f"dropped slices {sorted(gone)}", "refuse" if _interior_gap(kept) else "either"


@mutation(0)
def m_keep_few(case: Case) -> tuple[str, Expect]:
    keep = case.rng.randint(1, 3)
    start = case.rng.randrange(len(case.files) - keep + 1)
    case.files = case.files[start : start + keep]
    return f"only {keep} slice(s) left", "refuse"  # fewer than the card's min_slices (4)


@mutation(0)
def m_same_file_twice(case: Case) -> tuple[str, Expect]:
    i = case.rng.randrange(len(case.files))
    case.files.append(case.files[i])
    return f"slice {i} stored twice (same SOPInstanceUID)", "refuse"


@mutation(0)
def m_duplicate_position(case: Case) -> tuple[str, Expect]:
    i = case.rng.randrange(len(case.files))
    case.files.append(new_sop(case, case.files[i], "duplicate"))
    return f"slice {i} copied with a new SOPInstanceUID (same position)", "refuse"


@mutation(0)
def m_two_reconstructions(case: Case) -> tuple[str, Expect]:
    """A second reconstruction in the same SeriesInstanceUID, shifted by a fraction of a step."""
    shift = case.rng.choice([0.0, 0.3, 0.45])
    copies = []
    for k, data in enumerate(case.files):
        x, y, z = raw.floats(data, T_POSITION)
        moved = raw.set_value(data, T_POSITION, raw.ds([x, y, z + shift * case.step_mm]))
        copies.append(new_sop(case, moved, f"recon-{k}"))
    case.files += copies
    return f"second reconstruction in the series, shifted {shift} step", "refuse"


@mutation(0)
def m_second_series(case: Case) -> tuple[str, Expect]:
    series = case.uid("series").encode()
    copies = [
        new_sop(case, raw.set_value(d, T_SERIES, series), f"s2-{k}")
        for k, d in enumerate(case.files)
    ]
    if case.rng.random() < 0.5:
        copies = copies[::2]  # a thicker reconstruction
    case.files += copies
    return f"a second series of {len(copies)} slices in the study", "either"


@mutation(0)
def m_foreign_study_slice(case: Case) -> tuple[str, Expect]:
    i = case.rng.randrange(len(case.files))
    data = raw.set_value(case.files[i], T_STUDY, case.uid("study").encode())
    data = raw.set_value(data, T_SERIES, case.uid("series").encode())
    if case.rng.random() < 0.5:
        case.files[i] = new_sop(case, data, "foreign")
        return f"slice {i} moved to another study", "either"
    case.files.append(new_sop(case, data, "foreign"))
    return f"a copy of slice {i} in another study", "either"


@mutation(0)
def m_mr_slice(case: Case) -> tuple[str, Expect]:
    i = case.rng.randrange(1, len(case.files) - 1)
    data = raw.set_value(case.files[i], T_MODALITY, b"MR")
    data = raw.set_value(data, T_SOP_CLASS, MRImageStorage.encode())
    case.files[i] = raw.set_value(data, T_MEDIA_SOP_CLASS, MRImageStorage.encode())
    return f"slice {i} is an MR image", "refuse"


@mutation(0)
def m_mr_class(case: Case) -> tuple[str, Expect]:
    case.edit(case.targets(), lambda d: raw.set_value(d, T_SOP_CLASS, MRImageStorage.encode()))
    return "SOPClassUID MR Image Storage, Modality CT", "refuse"


@mutation(0)
def m_frames_of_reference(case: Case) -> tuple[str, Expect]:
    targets = case.targets(case.rng.choice(["one", "few"]))
    if case.rng.random() < 0.5:
        case.edit(targets, lambda d: raw.delete(d, T_FRAME_OF_REFERENCE))
        return f"no FrameOfReferenceUID in slices {targets}", "refuse"
    other = case.uid("for").encode()
    case.edit(targets, lambda d: raw.set_value(d, T_FRAME_OF_REFERENCE, other))
    return f"another FrameOfReferenceUID in slices {targets}", "refuse"


@mutation(0)
def m_one_series_per_slice(case: Case) -> tuple[str, Expect]:
    case.files = [
        raw.set_value(d, T_SERIES, case.uid(f"s{k}").encode()) for k, d in enumerate(case.files)
    ]
    return "every slice in a series of its own", "refuse"


@mutation(0, bases=("slices", "enhanced"))
def m_study_uid(case: Case) -> tuple[str, Expect]:
    value = case.rng.choice(
        [
            "../fuzz-escape",
            "../../fuzz-escape",
            ABSOLUTE_ESCAPE,
            "1.2.3/../..",
            "1." * 40,
            "",
            "..",
            ".",
            "1.2.3\x00/../../x",
            "../out",
            "1.2.3 ",
            "\\..\\..\\x",
        ]
    )
    case.edit(list(range(len(case.files))), lambda d: raw.set_value(d, T_STUDY, value.encode()))
    return f"StudyInstanceUID {value!r}", "refuse" if value != "1.2.3 " else "either"


@mutation(0, bases=("slices", "enhanced"))
def m_junk_files(case: Case) -> tuple[str, Expect]:
    pool: list[tuple[str, bytes]] = [
        ("empty", b""),
        ("notes.txt", b"not DICOM\n"),
        ("random", case.rng.randbytes(case.rng.randint(1, 4096))),
        ("preamble-only", b"\x00" * 128 + b"DICM"),
        ("preamble-garbage", b"\x00" * 128 + b"DICM" + case.rng.randbytes(64)),
        ("DICOMDIR", case.rng.randbytes(256)),
        (".hidden", case.rng.randbytes(64)),
        ("ones", b"\xff" * 1024),
        ("meta-only", case.files[0][: raw.find(case.files[0], T_SYNTAX).end]),
    ]
    chosen = case.rng.sample(pool, case.rng.randint(1, 4))
    case.extras += chosen
    return f"junk files beside the series: {[name for name, _ in chosen]}", "read"


# -- enhanced (multi-frame) -----------------------------------------------------------------


def _enhanced(case: Case, fn: Callable[[pydicom.Dataset], str]) -> str:
    ds = pydicom.dcmread(BytesIO(case.files[0]))
    what = fn(ds)
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    case.files[0] = buffer.getvalue()
    return what


@mutation(0, bases=("enhanced",))
def m_frames(case: Case) -> tuple[str, Expect]:
    value = case.rng.choice(
        [b"0", b"-1", b"15", b"17", b"100000", b"2147483647", b"abc", b"1.5", b"9" * 20]
    )
    case.files[0] = raw.set_value(case.files[0], T_FRAMES, value)
    return f"NumberOfFrames {value!r}", "refuse"


@mutation(0, bases=("enhanced",))
def m_hundred_thousand_frames(case: Case) -> tuple[str, Expect]:
    """A 100,000-slice header: NumberOfFrames 100000 and as many per-frame items (~6 MB)."""
    items = [
        raw.items_sequence(T_PLANE_POSITION, [raw.encode(T_POSITION, b"DS", raw.ds([0, 0, k]))])
        for k in range(100_000)
    ]
    data = raw.set_value(case.files[0], T_FRAMES, b"100000")
    per_frame = raw.items_sequence(T_PER_FRAME, items)
    element = raw.find(data, T_PER_FRAME)
    case.files[0] = data[: element.start] + per_frame + data[element.end :]
    return "NumberOfFrames 100000 with 100000 per-frame items", "refuse"


@mutation(0, bases=("enhanced",))
def m_per_frame_items(case: Case) -> tuple[str, Expect]:
    def spoil(ds: pydicom.Dataset) -> str:
        frames = ds.PerFrameFunctionalGroupsSequence
        k = case.rng.randrange(1, len(frames) - 1)
        choice = case.rng.choice(["drop", "duplicate", "nan", "tilt"])
        if choice == "drop":
            del frames[k]
        elif choice == "duplicate":
            frames[k].PlanePositionSequence[0].ImagePositionPatient = list(
                frames[k - 1].PlanePositionSequence[0].ImagePositionPatient
            )
        elif choice == "nan":
            frames[k].PlanePositionSequence[0].ImagePositionPatient = ["NaN", "0", "0"]
        else:
            x, y, z = frames[k].PlanePositionSequence[0].ImagePositionPatient
            frames[k].PlanePositionSequence[0].ImagePositionPatient = [float(x) + 5, y, z]
        return f"per-frame item {k}: {choice}"

    return _enhanced(case, spoil), "refuse"


@mutation(0, bases=("enhanced",))
def m_shared_pixel_measures(case: Case) -> tuple[str, Expect]:
    value = case.rng.choice([["0", "0"], ["NaN", "NaN"], ["-1", "-1"], ["1e30", "1e30"], ["1"]])

    def spoil(ds: pydicom.Dataset) -> str:
        measures = ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
        measures.PixelSpacing = value
        return f"shared PixelSpacing {value}"

    return _enhanced(case, spoil), "refuse"


#: Every mutation: the series-level ones, then the value and encoding ones. The order numbers
#: the cases of a covering run (``make_case(..., cover=True)``).
MUTATIONS = [*mutation, *fuzz_values.mutation]


# -- cases ----------------------------------------------------------------------------------


def make_case(template: Template, seed: int, number: int, *, cover: bool = True) -> Case:
    """Case ``number`` of the run seeded ``seed``.

    With ``cover``, cases 0 … len(MUTATIONS) - 1 apply each mutation once, alone (so that a
    short run tries every kind); later cases draw a base and one to three mutations.
    """
    rng = random.Random(f"{seed}:{number}")
    if cover and number < len(MUTATIONS):
        chosen = [MUTATIONS[number]]
        base: Base = "slices" if "slices" in chosen[0].bases else "enhanced"
    else:
        base = "enhanced" if rng.random() < 0.15 else "slices"
        usable = [m for m in MUTATIONS if base in m.bases]
        count = rng.choices([1, 2, 3], weights=[6, 3, 1])[0]
        chosen = []
        while len(chosen) < count:
            pick = rng.choices(usable, weights=[m.weight for m in usable])[0]
            if pick not in chosen:
                chosen.append(pick)
        chosen.sort(key=lambda m: m.phase)
    files = list(template.slices) if base == "slices" else [template.enhanced]
    case = Case(number, base, files, template.step_mm, rng)
    for m in chosen:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # pydicom's notes on the values we forge
                note, expect = m.apply(case)
        except Exception as exc:  # an earlier mutation broke, removed or nested 100,000
            # deep (RecursionError in the walker) what this one edits
            case.notes.append(f"{m.name}: not applicable ({exc})")
            continue
        case.notes.append(f"{m.name}: {note}")
        case.expects.append(expect)
    return case
