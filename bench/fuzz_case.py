"""What the fuzzer's mutations work on (see fuzz_dicom.py for the run, fuzz_mutations.py for
the catalogue).

A template is a small phantom chest CT (training/phantoms.py, 64 x 64, 16 slices of 0.625 mm,
written by training/phantom_dicom.py: Explicit VR Little Endian, one CT Image per slice) and
the same series as one Legacy Converted Enhanced CT instance (highdicom). A :class:`Case` is one
study's files as bytes, what was done to them and what a correct reader must then do.
"""

from __future__ import annotations

import hashlib
import random
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Literal

import fuzz_raw as raw
import pydicom
from pydicom.uid import generate_uid

Expect = Literal["refuse", "read", "either"]
Base = Literal["slices", "enhanced"]

#: StudyInstanceUID of the traversal cases that would write at an absolute path.
ABSOLUTE_ESCAPE = "/tmp/preread-fuzz-escape"

T_MEDIA_SOP_CLASS, T_MEDIA_SOP, T_SYNTAX = 0x00020002, 0x00020003, 0x00020010
T_SOP_CLASS, T_SOP, T_MODALITY = 0x00080016, 0x00080018, 0x00080060
T_SERIES_DESCRIPTION, T_PATIENT_NAME, T_PATIENT_ID = 0x0008103E, 0x00100010, 0x00100020
T_THICKNESS, T_SPACING_BETWEEN = 0x00180050, 0x00180088
T_STUDY, T_SERIES, T_INSTANCE_NUMBER = 0x0020000D, 0x0020000E, 0x00200013
T_POSITION, T_ORIENTATION, T_FRAME_OF_REFERENCE = 0x00200032, 0x00200037, 0x00200052
T_SLICE_LOCATION = 0x00201041
T_SAMPLES, T_PHOTOMETRIC, T_FRAMES = 0x00280002, 0x00280004, 0x00280008
T_ROWS, T_COLUMNS, T_PIXEL_SPACING = 0x00280010, 0x00280011, 0x00280030
T_BITS, T_BITS_STORED, T_HIGH_BIT, T_REPRESENTATION = 0x00280100, 0x00280101, 0x00280102, 0x00280103
T_INTERCEPT, T_SLOPE = 0x00281052, 0x00281053
T_SHARED, T_PER_FRAME = 0x52009229, 0x52009230
T_PLANE_POSITION = 0x00209113
T_PRIVATE_SQ, T_PRIVATE_TEXT = 0x00091010, 0x00091011
T_PIXEL = raw.PIXEL_DATA


@dataclass(frozen=True)
class Template:
    """The unmutated files: ``slices`` in order along the slice normal, and ``enhanced``."""

    slices: tuple[bytes, ...]
    enhanced: bytes
    step_mm: float

    def digests(self) -> frozenset[str]:
        return frozenset(_digest(b) for b in (*self.slices, self.enhanced))

    def renamed(self, name: str) -> Template:
        """The same images with study, series, frame of reference and instance UIDs of their
        own (derived from ``name``): cases sent to one archive must not share UIDs."""

        def uid(role: str) -> bytes:
            return str(generate_uid(entropy_srcs=["fuzz", name, role])).encode()

        def rename(data: bytes, series: str, sop: str) -> bytes:
            for tag, value in (
                (T_STUDY, uid("study")),
                (T_SERIES, uid(series)),
                (T_FRAME_OF_REFERENCE, uid("for")),
                (T_SOP, uid(sop)),
                (T_MEDIA_SOP, uid(sop)),
            ):
                data = raw.set_value(data, tag, value)
            return data

        slices = tuple(rename(d, "series", f"sop-{k}") for k, d in enumerate(self.slices))
        return Template(slices, rename(self.enhanced, "enhanced", "enhanced"), self.step_mm)


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def build_template(seed: int = 7, matrix: int = 64, slices: int = 16) -> Template:
    """Phantom ``seed`` as ``slices`` CT images of ``matrix`` x ``matrix``, and as one
    Legacy Converted Enhanced CT image (highdicom)."""
    import highdicom as hd

    from training.phantom_dicom import write_phantom_study
    from training.phantoms import generate_phantom

    phantom = generate_phantom(seed, matrix=matrix, max_slices=slices, nodules=[])
    with tempfile.TemporaryDirectory(prefix="preread-fuzz-template-") as tmp:
        files = write_phantom_study(phantom, Path(tmp), patient_id="FUZZ")
        data = tuple(p.read_bytes() for p in sorted(files.ct_dir.glob("CT*.dcm")))
    datasets = [pydicom.dcmread(BytesIO(b)) for b in data]
    enhanced = hd.legacy.LegacyConvertedEnhancedCTImage(
        datasets,
        series_instance_uid=generate_uid(entropy_srcs=["fuzz", "enhanced-series"]),
        series_number=2,
        sop_instance_uid=generate_uid(entropy_srcs=["fuzz", "enhanced-instance"]),
        instance_number=1,
    )
    buffer = BytesIO()
    enhanced.save_as(buffer, enforce_file_format=True)
    return Template(data, buffer.getvalue(), float(phantom.volume.geometry.spacing[0]))


@dataclass
class Case:
    """One mutated study: its files (bytes), extra non-instance files, what was done."""

    number: int
    base: Base
    files: list[bytes]
    step_mm: float
    rng: random.Random
    extras: list[tuple[str, bytes]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    expects: list[Expect] = field(default_factory=list)

    @property
    def expect(self) -> Expect:
        if len(self.expects) != 1:
            return "either"
        return self.expects[0]

    def uid(self, role: str) -> str:
        return str(
            generate_uid(entropy_srcs=["fuzz", str(self.number), role, str(len(self.notes))])
        )

    def targets(self, spread: str | None = None) -> list[int]:
        """Which files a per-instance mutation touches: one, a few or all."""
        n = len(self.files)
        spread = spread or self.rng.choice(["one", "one", "few", "all"])
        if spread == "all":
            return list(range(n))
        count = 1 if spread == "one" else min(n, self.rng.randint(2, 4))
        return sorted(self.rng.sample(range(n), count))

    def edit(self, indices: list[int], fn: Callable[[bytes], bytes]) -> None:
        for i in indices:
            self.files[i] = fn(self.files[i])


MutationFn = Callable[[Case], tuple[str, Expect]]


@dataclass(frozen=True)
class Mutation:
    name: str
    phase: int  # 0 series structure, 1 values, 2 edits that break the encoding
    bases: tuple[Base, ...]
    apply: MutationFn
    weight: float = 1.0


class Registry(list[Mutation]):
    """Mutations in the order they were registered; ``@registry(phase, bases, weight)``
    registers a function ``m_<name>`` as mutation ``<name>``."""

    def __call__(
        self, phase: int, bases: tuple[Base, ...] = ("slices",), weight: float = 1.0
    ) -> Callable[[MutationFn], MutationFn]:
        def register(fn: MutationFn) -> MutationFn:
            self.append(Mutation(fn.__name__.removeprefix("m_"), phase, bases, fn, weight))
            return fn

        return register


def new_sop(case: Case, data: bytes, role: str) -> bytes:
    uid = case.uid(role).encode()
    return raw.set_value(raw.set_value(data, T_SOP, uid), T_MEDIA_SOP, uid)


def us(value: int) -> bytes:
    """An Unsigned Short value (PS3.5 6.2)."""
    return value.to_bytes(2, "little")
