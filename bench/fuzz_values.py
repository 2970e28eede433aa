"""The fuzzer's value and encoding mutations: hostile values in header attributes, sizes,
spacings, positions and orientations, pixel layouts, transfer syntaxes, private and huge
elements, deep sequences (phase 1), then edits that break the encoding: truncated files,
forged lengths and VRs, flipped bits (phase 2). See fuzz_mutations.py for the catalogue.
"""

from __future__ import annotations

import fuzz_raw as raw
from fuzz_case import (
    T_BITS,
    T_BITS_STORED,
    T_COLUMNS,
    T_FRAME_OF_REFERENCE,
    T_FRAMES,
    T_HIGH_BIT,
    T_INSTANCE_NUMBER,
    T_INTERCEPT,
    T_MODALITY,
    T_ORIENTATION,
    T_PATIENT_ID,
    T_PATIENT_NAME,
    T_PHOTOMETRIC,
    T_PIXEL,
    T_PIXEL_SPACING,
    T_POSITION,
    T_PRIVATE_SQ,
    T_PRIVATE_TEXT,
    T_REPRESENTATION,
    T_ROWS,
    T_SAMPLES,
    T_SERIES,
    T_SERIES_DESCRIPTION,
    T_SLICE_LOCATION,
    T_SLOPE,
    T_SOP,
    T_SOP_CLASS,
    T_SPACING_BETWEEN,
    T_STUDY,
    T_SYNTAX,
    T_THICKNESS,
    Case,
    Expect,
    Registry,
    us,
)

#: The value and encoding mutations, in the order of this module.
mutation = Registry()

#: Attributes the generic "value" mutation writes hostile values into: tag, VR, values.
NUMBERS = [b"0", b"-1", b"NaN", b"inf", b"-inf", b"1e309", b"1e-30", b"1e30", b"", b"abc"]
NUMBERS += [b"1,5", b"1\\2\\3\\4\\5\\6\\7", b"\x00\x00", b"9" * 64, b"-0", b"+.5e-3", b"0x10"]
USHORT = [
    b"\x00\x00",
    b"\x01\x00",
    b"\x07\x00",
    b"\xff\xff",
    b"\x00\x80",
    b"\x01",
    b"\x01\x00\x02\x00",
]
UIDS = [
    b"",
    b"../../x",
    b"1.2.3/../../..",
    b"1." * 40,
    b"\x00",
    b"not-a-uid",
    b"1.2.840.10008.1.2.4.50",
]
TEXT = [b"", b"\x1b[31mred\x1b[0m", b"\xff\xfe\x00\x01", b"A" * 64, b"x\\y\\z", b"\r\n\t", b"%s%n"]
VALUE_TARGETS: list[tuple[int, bytes, list[bytes]]] = [
    (T_POSITION, b"DS", NUMBERS),
    (T_ORIENTATION, b"DS", NUMBERS),
    (T_PIXEL_SPACING, b"DS", NUMBERS),
    (T_THICKNESS, b"DS", NUMBERS),
    (T_SPACING_BETWEEN, b"DS", NUMBERS),
    (T_SLICE_LOCATION, b"DS", NUMBERS),
    (T_SLOPE, b"DS", NUMBERS),
    (T_INTERCEPT, b"DS", NUMBERS),
    (T_INSTANCE_NUMBER, b"IS", NUMBERS),
    (T_FRAMES, b"IS", NUMBERS),
    (T_ROWS, b"US", USHORT),
    (T_COLUMNS, b"US", USHORT),
    (T_BITS, b"US", USHORT),
    (T_BITS_STORED, b"US", USHORT),
    (T_HIGH_BIT, b"US", USHORT),
    (T_REPRESENTATION, b"US", USHORT),
    (T_SAMPLES, b"US", USHORT),
    (T_STUDY, b"UI", UIDS),
    (T_SERIES, b"UI", UIDS),
    (T_SOP, b"UI", UIDS),
    (T_SOP_CLASS, b"UI", UIDS),
    (T_FRAME_OF_REFERENCE, b"UI", UIDS),
    (T_SYNTAX, b"UI", UIDS),
    (T_MODALITY, b"CS", [b"MR", b"", b"SR", b"ct", b"CT\\MR", b"\xff"]),
    (T_PHOTOMETRIC, b"CS", [b"RGB", b"", b"MONOCHROME3", b"PALETTE COLOR", b"\x00"]),
    (T_PATIENT_NAME, b"PN", TEXT),
    (T_PATIENT_ID, b"LO", TEXT),
    (T_SERIES_DESCRIPTION, b"LO", TEXT),
]


# -- phase 1: values ------------------------------------------------------------------------


@mutation(1, bases=("slices", "enhanced"), weight=4.0)
def m_value(case: Case) -> tuple[str, Expect]:
    tag, vr, pool = case.rng.choice(VALUE_TARGETS)
    value = case.rng.choice(pool)
    targets = case.targets()
    case.edit(targets, lambda d: raw.set_value(d, tag, value, vr))
    return (
        f"({tag >> 16:04X},{tag & 0xFFFF:04X}) = {value[:40]!r} in {len(targets)} file(s)",
        "either",
    )


@mutation(1)
def m_rescale(case: Case) -> tuple[str, Expect]:
    tag = case.rng.choice([T_SLOPE, T_INTERCEPT])
    pool = [b"0", b"-1", b"1e30", b"NaN", b"inf", b"abc", b"1e-9"] if tag == T_SLOPE else []
    pool += [b"NaN", b"1e300", b"-inf", b"x"] if tag == T_INTERCEPT else [b""]
    value = case.rng.choice(pool)
    targets = case.targets()
    if case.rng.random() < 0.2:
        case.edit(targets, lambda d: raw.delete(d, tag))
        return f"no ({tag >> 16:04X},{tag & 0xFFFF:04X}) in {targets}", "refuse"
    case.edit(targets, lambda d: raw.set_value(d, tag, value))
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X}) {value!r} in {targets}", "refuse"


@mutation(1)
def m_pixel_spacing(case: Case) -> tuple[str, Expect]:
    value = case.rng.choice(
        [
            b"0\\0",
            b"NaN\\NaN",
            b"-1\\-1",
            b"1e-30\\1e-30",
            b"1e30\\1e30",
            b"0.7",
            b"1\\1\\1",
            b"",
            b"abc",
            b"inf\\inf",
            b"0.7\\0",
        ]
    )
    targets = case.targets()
    case.edit(targets, lambda d: raw.set_value(d, T_PIXEL_SPACING, value))
    return f"PixelSpacing {value!r} in {targets}", "refuse"


@mutation(1)
def m_position(case: Case) -> tuple[str, Expect]:
    value = case.rng.choice(
        [b"NaN\\0\\0", b"0\\0", b"", b"inf\\0\\0", b"1e300\\0\\1e300", b"a\\b\\c"]
    )
    targets = case.targets()
    if case.rng.random() < 0.25:
        case.edit(targets, lambda d: raw.delete(d, T_POSITION))
        return f"no ImagePositionPatient in {targets}", "refuse"
    case.edit(targets, lambda d: raw.set_value(d, T_POSITION, value))
    return f"ImagePositionPatient {value!r} in {targets}", "refuse"


@mutation(1)
def m_orientation(case: Case) -> tuple[str, Expect]:
    value = case.rng.choice(
        [
            b"0\\0\\0\\0\\0\\0",
            b"2\\0\\0\\0\\2\\0",
            b"1\\0\\0\\1\\0\\0",
            b"1\\0\\0\\0\\1",
            b"NaN",
            b"",
            b"0.9\\0.1\\0\\0\\1\\0",
            b"1\\0\\0\\0\\0.99\\0.14",
        ]
    )
    targets = case.targets()
    if value == b"1\\0\\0\\0\\0.99\\0.14" and len(targets) == len(case.files):
        targets = targets[:1]  # a consistent oblique series is fine; one odd slice is not
    case.edit(targets, lambda d: raw.set_value(d, T_ORIENTATION, value))
    return f"ImageOrientationPatient {value!r} in {targets}", "refuse"


@mutation(1)
def m_geometry(case: Case) -> tuple[str, Expect]:
    """Positions that contradict a regular grid: a duplicate, a jitter, a tilt, a huge step."""
    kind = case.rng.choice(["duplicate", "jitter", "tilt", "stretch", "tiny-jitter", "thickness"])
    n = len(case.files)
    k = case.rng.randrange(1, n - 1)
    positions = [raw.floats(d, T_POSITION) for d in case.files]
    expect: Expect = "refuse"
    if kind == "duplicate":
        positions[k] = list(positions[k - 1])
    elif kind == "jitter":
        positions[k][2] += case.rng.uniform(0.3, 0.7) * case.step_mm
    elif kind == "tilt":
        positions = [[x + i * 0.5 * case.step_mm, y, z] for i, (x, y, z) in enumerate(positions)]
    elif kind == "stretch":
        factor = case.rng.choice([1000.0, 1e6, -1.0, 0.001])
        positions = [[x, y, z * factor] for x, y, z in positions]
        expect = "either" if factor == -1.0 else "refuse"
    elif kind == "tiny-jitter":
        positions[k][2] += 0.01 * case.step_mm
        expect = "either"
    else:  # SliceThickness and SpacingBetweenSlices contradict the positions
        value = raw.ds([case.rng.choice([5.0, 0.0, -2.5, 100.0])])
        case.edit(list(range(n)), lambda d: raw.set_value(d, T_THICKNESS, value))
        case.edit(list(range(n)), lambda d: raw.set_value(d, T_SPACING_BETWEEN, value))
        return f"SliceThickness and SpacingBetweenSlices {value!r}", "either"
    case.files = [
        raw.set_value(d, T_POSITION, raw.ds(p)) for d, p in zip(case.files, positions, strict=True)
    ]
    return f"positions: {kind} (slice {k})", expect


@mutation(1)
def m_matrix(case: Case) -> tuple[str, Expect]:
    rows, columns = case.rng.choice([(0, 64), (64, 0), (63, 64), (65535, 65535), (1, 1), (64, 256)])
    targets = case.targets()
    case.edit(
        targets,
        lambda d: raw.set_value(raw.set_value(d, T_ROWS, us(rows)), T_COLUMNS, us(columns)),
    )
    return f"Rows {rows} x Columns {columns} in {targets}", "refuse"


@mutation(1)
def m_matrix_one_slice(case: Case) -> tuple[str, Expect]:
    """One slice of 32 x 32 whose pixel data does have that size (a consistent instance)."""
    i = case.rng.randrange(len(case.files))
    data = raw.set_value(raw.set_value(case.files[i], T_ROWS, us(32)), T_COLUMNS, us(32))
    case.files[i] = raw.set_value(data, T_PIXEL, raw.value(data, T_PIXEL)[: 32 * 32 * 2])
    return f"slice {i} is 32 x 32", "refuse"


@mutation(1)
def m_bits(case: Case) -> tuple[str, Expect]:
    bits = case.rng.choice([0, 1, 8, 12, 32, 64])
    targets = case.targets()
    case.edit(targets, lambda d: raw.set_value(d, T_BITS, us(bits)))
    return f"BitsAllocated {bits} in {targets}", "refuse"


@mutation(1)
def m_pixel_length(case: Case) -> tuple[str, Expect]:
    how = case.rng.choice(["half", "minus 2", "plus 2", "empty", "plus 4096"])
    targets = case.targets()

    def spoil(data: bytes) -> bytes:
        pixels = raw.value(data, T_PIXEL)
        new = {
            "half": pixels[: len(pixels) // 2],
            "minus 2": pixels[:-2],
            "plus 2": pixels + b"\x00\x00",
            "empty": b"",
            "plus 4096": pixels + bytes(4096),
        }[how]
        return raw.set_value(data, T_PIXEL, new)

    case.edit(targets, spoil)
    return f"PixelData {how} in {targets}", "refuse"


@mutation(1)
def m_no_pixel_data(case: Case) -> tuple[str, Expect]:
    targets = case.targets()
    case.edit(targets, lambda d: raw.delete(d, T_PIXEL))
    return f"no PixelData in {targets}", "refuse"


@mutation(1)
def m_colour(case: Case) -> tuple[str, Expect]:
    value = case.rng.choice([(b"RGB", 3), (b"RGB", 1), (b"MONOCHROME2", 3), (b"PALETTE COLOR", 1)])
    targets = case.targets()
    case.edit(
        targets,
        lambda d: raw.set_value(raw.set_value(d, T_PHOTOMETRIC, value[0]), T_SAMPLES, us(value[1])),
    )
    return (
        f"PhotometricInterpretation {value[0]!r}, SamplesPerPixel {value[1]} in {targets}",
        "refuse",
    )


@mutation(1, bases=("slices", "enhanced"))
def m_transfer_syntax(case: Case) -> tuple[str, Expect]:
    value = case.rng.choice(
        [
            "1.2.840.10008.1.2.4.50",
            "1.2.840.10008.1.2.4.70",
            "1.2.840.10008.1.2.5",
            "1.2.840.10008.1.2.1.99",
            "1.2.840.10008.1.2.2",
            "1.2.840.10008.1.2",
            "1.2.3.4",
            "",
        ]
    )
    targets = case.targets()
    case.edit(targets, lambda d: raw.set_value(d, T_SYNTAX, value.encode()))
    return f"TransferSyntaxUID {value!r} in {targets}", "either"


@mutation(1, bases=("slices", "enhanced"))
def m_private(case: Case) -> tuple[str, Expect]:
    size = case.rng.choice([16, 4096, 1 << 20])
    targets = case.targets()
    blob = case.rng.randbytes(size)
    case.edit(targets, lambda d: raw.insert(d, T_PRIVATE_TEXT, b"UN", blob))
    return f"a private element of {size} bytes in {targets}", "read"


@mutation(1, bases=("slices", "enhanced"))
def m_huge_value(case: Case) -> tuple[str, Expect]:
    size = case.rng.choice([1, 8, 32]) << 20
    i = case.rng.randrange(len(case.files))
    case.files[i] = raw.insert(case.files[i], T_PRIVATE_TEXT, b"UT", b"A" * size)
    return f"a private {size >> 20} MiB text in file {i}", "either"


@mutation(1, bases=("slices", "enhanced"))
def m_deep_sequence(case: Case) -> tuple[str, Expect]:
    depth = case.rng.choice([64, 1000, 10_000, 100_000])
    undefined = case.rng.random() < 0.5
    i = case.rng.randrange(len(case.files))
    nested = raw.nested_sequence(T_PRIVATE_SQ, depth, undefined=undefined)
    element = next((e for e in raw.elements(case.files[i]) if e.tag > T_PRIVATE_SQ), None)
    at = element.start if element else len(case.files[i])
    case.files[i] = case.files[i][:at] + nested + case.files[i][at:]
    length = "undefined" if undefined else "defined"
    return f"a private sequence nested {depth} deep ({length} lengths) in file {i}", "either"


@mutation(1, bases=("slices", "enhanced"))
def m_many_items(case: Case) -> tuple[str, Expect]:
    count = case.rng.choice([10_000, 100_000])
    i = case.rng.randrange(len(case.files))
    item = raw.encode(T_PRIVATE_TEXT, b"LO", b"item")
    case.files[i] = raw.insert(
        case.files[i], T_PRIVATE_SQ, b"SQ", raw.items_sequence(0, [item] * count)[12:]
    )
    return f"a private sequence of {count} items in file {i}", "either"


@mutation(1, bases=("slices", "enhanced"))
def m_no_preamble(case: Case) -> tuple[str, Expect]:
    targets = case.targets()
    if case.rng.random() < 0.5:
        case.edit(targets, lambda d: d[132:])
        return f"no preamble in {targets}", "read"
    case.edit(targets, lambda d: d[raw.find(d, T_SYNTAX).end + _meta_tail(d) :])
    return f"no preamble and no file meta in {targets}", "either"


def _meta_tail(data: bytes) -> int:
    """Bytes of meta elements after TransferSyntaxUID (implementation UID and name)."""
    after = [e for e in raw.elements(data) if e.tag >> 16 == 0x0002 and e.tag > T_SYNTAX]
    start = raw.find(data, T_SYNTAX).end
    return (after[-1].end - start) if after else 0


# -- phase 2: edits that break the encoding -------------------------------------------------


@mutation(2, bases=("slices", "enhanced"), weight=2.0)
def m_truncate(case: Case) -> tuple[str, Expect]:
    targets = case.targets(case.rng.choice(["one", "one", "few"]))
    cuts = {}
    for i in targets:
        where = case.rng.choice(["header", "pixels", "anywhere", "zero"])
        size = len(case.files[i])
        pixel_start = raw.find(case.files[i], T_PIXEL).value if where != "zero" else 0
        cut = {
            "header": case.rng.randrange(0, max(1, pixel_start)),
            "pixels": case.rng.randrange(pixel_start, size),
            "anywhere": case.rng.randrange(0, size),
            "zero": 0,
        }[where]
        case.files[i] = case.files[i][:cut]
        cuts[i] = cut
    return f"files cut at {cuts}", "either"


def _some_element(case: Case, data: bytes) -> raw.Element:
    return case.rng.choice([e for e in raw.elements(data) if e.tag != raw.GROUP_LENGTH])


@mutation(2, bases=("slices", "enhanced"), weight=2.0)
def m_length(case: Case) -> tuple[str, Expect]:
    targets = case.targets(case.rng.choice(["one", "few"]))
    done = []
    for i in targets:
        element = _some_element(case, case.files[i])
        length = case.rng.choice(
            [
                0,
                1,
                element.length + 1,
                element.length + 2,
                max(0, element.length - 2),
                0x7FFFFFF0,
                raw.UNDEFINED,
                0xFFFE,
                len(case.files[i]),
            ]
        )
        case.files[i] = raw.forge_length(case.files[i], element.tag, length)
        done.append(f"({element.tag >> 16:04X},{element.tag & 0xFFFF:04X}) {length}")
    return f"forged lengths {done}", "either"


@mutation(2, bases=("slices", "enhanced"), weight=2.0)
def m_vr(case: Case) -> tuple[str, Expect]:
    targets = case.targets(case.rng.choice(["one", "few", "all"]))
    element = _some_element(case, case.files[targets[0]])
    vr = case.rng.choice([b"UN", b"OB", b"SQ", b"US", b"DS", b"XX", b"\x00\x00", b"UT", b"FD"])

    def spoil(data: bytes) -> bytes:
        return raw.forge_vr(data, element.tag, vr) if raw.has(data, element.tag) else data

    case.edit(targets, spoil)
    return f"({element.tag >> 16:04X},{element.tag & 0xFFFF:04X}) VR {vr!r} in {targets}", "either"


@mutation(2, bases=("slices", "enhanced"), weight=2.0)
def m_flip(case: Case) -> tuple[str, Expect]:
    targets = case.targets(case.rng.choice(["one", "few"]))
    region = case.rng.choice(["header", "pixels"])
    for i in targets:
        data = bytearray(case.files[i])
        pixel = raw.find(bytes(data), T_PIXEL).value
        lo, hi = (0, pixel) if region == "header" else (pixel, len(data))
        for _ in range(case.rng.randint(1, 16)):
            data[case.rng.randrange(lo, hi)] ^= 1 << case.rng.randrange(8)
        case.files[i] = bytes(data)
    return f"bits flipped in the {region} of {targets}", "read" if region == "pixels" else "either"
