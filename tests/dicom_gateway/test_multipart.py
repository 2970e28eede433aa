"""multipart/related bodies (RFC 2046 5.1.1) as DICOMweb sends them: split, build, refuse."""

from __future__ import annotations

import random

import pytest

from dicom_gateway.multipart import (
    MultipartError,
    RelatedParser,
    boundary_of,
    encode_related,
    split_related,
)


def test_round_trip_keeps_parts_even_with_crlf_and_dashes_inside() -> None:
    parts = [b"", b"\r\n--x\r\n", bytes(range(256)) * 3, b"DICM" * 1000]
    body, content_type = encode_related(parts)
    assert content_type.startswith('multipart/related; type="application/dicom"; boundary=')
    assert split_related(body, boundary_of(content_type)) == parts


@pytest.mark.parametrize("with_length", [True, False])
def test_fed_in_any_chunks_gives_the_same_parts(with_length: bool) -> None:
    parts = [b"a" * 70_000, b"", b"\r\n--" * 500, bytes(range(256)) * 40]
    body, content_type = encode_related(parts)
    if not with_length:
        body = body.replace(b"Content-Length: ", b"X-Ignored: ")
    rng = random.Random(0)
    for max_chunk in (1, 7, 4096, 65536):
        parser = RelatedParser(boundary_of(content_type))
        got: list[bytes] = []
        position = 0
        while position < len(body):
            step = rng.randint(1, max_chunk)
            got += parser.feed(body[position : position + step])
            position += step
        parser.close()
        assert got == parts, max_chunk


def test_a_fed_buffer_may_be_reused_by_the_caller() -> None:
    """Parts cut by length keep the chunks they arrived in until they are whole: a chunk in a
    buffer the caller fills again (a bytearray) must not change a part afterwards."""
    parts = [bytes(range(256)) * 30, b"x" * 10_000]
    body, content_type = encode_related(parts)
    parser = RelatedParser(boundary_of(content_type))
    buffer = bytearray(1000)
    got: list[bytes] = []
    for start in range(0, len(body), len(buffer)):
        piece = body[start : start + len(buffer)]
        buffer[: len(piece)] = piece
        got += parser.feed(memoryview(buffer)[: len(piece)])
        buffer[:] = b"\xff" * len(buffer)  # the caller's next read overwrites it
    parser.close()
    assert got == parts


def test_parts_without_content_length_preamble_and_epilogue() -> None:
    body = (
        b"preamble\r\n--b1\r\nContent-Type: application/dicom\r\n\r\nfirst\r\n"
        b"--b1\r\n\r\nsecond\r\n--b1--\r\nepilogue"
    )
    assert split_related(body, "b1") == [b"first", b"second"]


def test_wrong_content_length_falls_back_to_the_boundary() -> None:
    body = b"--b\r\nContent-Length: 3\r\n\r\nabcdef\r\n--b--\r\n"
    assert split_related(body, "b") == [b"abcdef"]


def test_quoted_boundary_parameter() -> None:
    assert boundary_of('multipart/related; type="application/dicom"; boundary="a b"') == "a b"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"no boundary at all", "first boundary"),
        (b"--b\r\nContent-Type: x\r\n\r\nunterminated", "not closed"),
        (b"--b\r\nContent-Type: x", "no end of headers"),
    ],
)
def test_malformed_bodies_are_refused(body: bytes, message: str) -> None:
    with pytest.raises(MultipartError, match=message):
        split_related(body, "b")


@pytest.mark.parametrize("content_type", ["application/json", "multipart/related; type=x"])
def test_boundary_of_refuses(content_type: str) -> None:
    with pytest.raises(MultipartError):
        boundary_of(content_type)
