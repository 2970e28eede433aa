"""Byte-level editing of Explicit VR Little Endian DICOM files, for the fuzzer (fuzz_dicom.py).

The fuzzer edits files as bytes, not through pydicom, so that it can write what pydicom would
refuse to write: a length that lies, a VR that does not fit the value, a NaN in a Decimal
String, a sequence nested 100,000 deep. Encoding: PS3.5 7.1.2 (Explicit VR data elements: 2-byte
lengths for most VRs, 4-byte lengths after two reserved bytes for OB, OD, OF, OL, OV, OW, SQ, SV,
UC, UN, UR, UT, UV), 7.5 (sequences and items, defined or undefined length).

The walker reads the top level of a well-formed file (the fuzzer's templates); an edit that
breaks the structure is made last, and an edit that finds no element raises
:class:`Inapplicable`.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

LONG_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)
UNDEFINED = 0xFFFFFFFF
ITEM, ITEM_END, SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
GROUP_LENGTH = 0x00020000  # File Meta Information Group Length (PS3.10 7.1)
PIXEL_DATA = 0x7FE00010


class Inapplicable(Exception):
    """The edit does not apply to this file (no such element, or the file is already broken)."""


@dataclass(frozen=True)
class Element:
    """One top-level data element: where it starts, where its value starts, where it ends."""

    tag: int
    vr: bytes
    start: int
    value: int
    length: int  # as declared (UNDEFINED for an undefined length)
    end: int  # first byte after the element (its delimiters included)


def _element(raw: bytes, pos: int) -> Element:
    if pos + 8 > len(raw):
        raise Inapplicable(f"no element header at byte {pos}")
    group, number = struct.unpack_from("<HH", raw, pos)
    vr = raw[pos + 4 : pos + 6]
    if vr in LONG_VRS:
        if pos + 12 > len(raw):
            raise Inapplicable(f"no element length at byte {pos}")
        (length,) = struct.unpack_from("<I", raw, pos + 8)
        value = pos + 12
    else:
        (length,) = struct.unpack_from("<H", raw, pos + 6)
        value = pos + 8
    end = _skip_undefined(raw, value) if length == UNDEFINED else value + length
    if end > len(raw):
        raise Inapplicable(f"element ({group:04X},{number:04X}) runs past the end")
    return Element(group << 16 | number, vr, pos, value, length, end)


def _skip_undefined(raw: bytes, pos: int) -> int:
    """The end of a sequence of undefined length whose items start at ``pos``."""
    while pos + 8 <= len(raw):
        group, number, length = struct.unpack_from("<HHI", raw, pos)
        tag = group << 16 | number
        if tag == SEQUENCE_END:
            return pos + 8
        if tag != ITEM:
            raise Inapplicable(f"not a sequence item at byte {pos}")
        pos += 8
        if length != UNDEFINED:
            pos += length
            continue
        while True:  # the elements of an item of undefined length, up to its delimiter
            group, number = struct.unpack_from("<HH", raw, pos)
            if group << 16 | number == ITEM_END:
                pos += 8
                break
            pos = _element(raw, pos).end
    raise Inapplicable("a sequence runs past the end")


def dataset_start(raw: bytes) -> int:
    return 132 if raw[128:132] == b"DICM" else 0


def elements(raw: bytes) -> list[Element]:
    """The top-level elements of ``raw`` (file meta included), in file order."""
    pos, found = dataset_start(raw), []
    while pos + 8 <= len(raw):
        element = _element(raw, pos)
        found.append(element)
        pos = element.end
    return found


def find(raw: bytes, tag: int) -> Element:
    for element in elements(raw):
        if element.tag == tag:
            return element
    raise Inapplicable(f"no element ({tag >> 16:04X},{tag & 0xFFFF:04X})")


def has(raw: bytes, tag: int) -> bool:
    try:
        find(raw, tag)
    except Inapplicable:
        return False
    return True


def value(raw: bytes, tag: int) -> bytes:
    element = find(raw, tag)
    return raw[element.value : element.end]


def encode(tag: int, vr: bytes, data: bytes) -> bytes:
    """One element, its value padded to an even length (PS3.5 7.1.1)."""
    if len(data) % 2:
        data += b"\x00" if vr in (b"UI", b"OB", b"UN") else b" "
    head = struct.pack("<HH", tag >> 16, tag & 0xFFFF) + vr
    if vr in LONG_VRS:
        return head + b"\x00\x00" + struct.pack("<I", len(data)) + data
    if len(data) > 0xFFFF:
        raise Inapplicable(f"{len(data)} bytes do not fit a {vr.decode()} value")
    return head + struct.pack("<H", len(data)) + data


def _fix_group_length(raw: bytes) -> bytes:
    """Rewrite the File Meta Information Group Length after an edit of the meta group."""
    items = elements(raw)
    if not items or items[0].tag != GROUP_LENGTH:
        return raw
    meta_end = max((e.end for e in items if e.tag >> 16 == 0x0002), default=items[0].end)
    length = struct.pack("<I", meta_end - items[0].end)
    return raw[: items[0].value] + length + raw[items[0].value + 4 :]


def set_value(raw: bytes, tag: int, data: bytes, vr: bytes | None = None) -> bytes:
    """``raw`` with element ``tag`` holding ``data`` (inserted in tag order when absent)."""
    try:
        element = find(raw, tag)
    except Inapplicable:
        return insert(raw, tag, vr or b"UN", data)
    new = encode(tag, vr or element.vr, data)
    out = raw[: element.start] + new + raw[element.end :]
    return _fix_group_length(out) if tag >> 16 == 0x0002 else out


def insert(raw: bytes, tag: int, vr: bytes, data: bytes) -> bytes:
    """``raw`` with a new element placed before the first top-level element of a higher tag."""
    new = encode(tag, vr, data)
    items = elements(raw)
    at = next((e.start for e in items if e.tag > tag), len(raw))
    out = raw[:at] + new + raw[at:]
    return _fix_group_length(out) if tag >> 16 == 0x0002 else out


def delete(raw: bytes, tag: int) -> bytes:
    element = find(raw, tag)
    out = raw[: element.start] + raw[element.end :]
    return _fix_group_length(out) if tag >> 16 == 0x0002 else out


def forge_length(raw: bytes, tag: int, length: int) -> bytes:
    """``raw`` with the declared length of ``tag`` replaced (its value bytes unchanged)."""
    element = find(raw, tag)
    if element.vr in LONG_VRS:
        return raw[: element.start + 8] + struct.pack("<I", length) + raw[element.value :]
    return raw[: element.start + 6] + struct.pack("<H", length & 0xFFFF) + raw[element.value :]


def forge_vr(raw: bytes, tag: int, vr: bytes) -> bytes:
    """``raw`` with the two VR bytes of ``tag`` replaced (its length field unchanged: a VR of
    the other length form shifts everything after it)."""
    element = find(raw, tag)
    return raw[: element.start + 4] + vr[:2].ljust(2, b"\x00") + raw[element.start + 6 :]


def ds(values: Sequence[float | str]) -> bytes:
    """A multi-valued Decimal String (or any string values joined by backslashes)."""
    return "\\".join(v if isinstance(v, str) else f"{v:.6g}" for v in values).encode("latin-1")


def floats(raw: bytes, tag: int) -> list[float]:
    return [float(v) for v in value(raw, tag).decode("latin-1").strip(" \x00").split("\\")]


def nested_sequence(tag: int, depth: int, *, undefined: bool) -> bytes:
    """A sequence element nested ``depth`` levels deep (each item holds the next sequence)."""
    if undefined:
        head = encode(tag, b"SQ", b"")[:-4] + struct.pack("<I", UNDEFINED)
        item = struct.pack("<HHI", 0xFFFE, 0xE000, UNDEFINED)
        tail = struct.pack("<HHI", 0xFFFE, 0xE00D, 0) + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
        return (head + item) * depth + tail * depth
    # level k from the inside: an item of 20 (k - 1) bytes (the next sequence element: 12 bytes
    # of header, 8 of item header) in a sequence of 8 + 20 (k - 1) bytes
    head = struct.pack("<HH", tag >> 16, tag & 0xFFFF) + b"SQ\x00\x00"
    return b"".join(
        head
        + struct.pack("<I", 8 + 20 * (k - 1))
        + struct.pack("<HHI", 0xFFFE, 0xE000, 20 * (k - 1))
        for k in range(depth, 0, -1)
    )


def items_sequence(tag: int, items: Sequence[bytes]) -> bytes:
    """A sequence of defined length whose items hold the given encoded elements."""
    body = b"".join(struct.pack("<HHI", 0xFFFE, 0xE000, len(item)) + item for item in items)
    return encode(tag, b"SQ", body)
