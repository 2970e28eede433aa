"""``multipart/related`` bodies of DICOMweb (PS3.18 8.7.1; RFC 2387, RFC 2046 5.1.1).

WADO-RS answers and STOW-RS requests carry DICOM instances as the parts of one
``multipart/related; type="application/dicom"`` body. :class:`RelatedParser` splits such a
body while it arrives: it cuts a part by its ``Content-Length`` (Orthanc's DICOMweb plugin sends
one) after checking that the boundary follows, and searches for the boundary otherwise. Fed in
64 KiB chunks it splits a 105 MB / 200-part Orthanc answer in ~13 ms; the stdlib ``email``
parser, which scans line by line, needs ~2.3 s (``bench/orthanc_client.py``, 2026-12-07).
"""

from __future__ import annotations

import enum
import secrets
from collections.abc import Sequence
from email.message import Message

__all__ = [
    "MultipartError",
    "RelatedParser",
    "boundary_of",
    "encode_related",
    "split_related",
]

DICOM_TYPE = "application/dicom"
_SLICE = 1 << 20


class _State(enum.Enum):
    PREAMBLE = enum.auto()  # before the first delimiter
    HEADERS = enum.auto()  # after a delimiter: the close delimiter or a part's headers
    LENGTH = enum.auto()  # a part's bytes, as many as its Content-Length says
    SEARCH = enum.auto()  # a part's bytes, up to the next delimiter
    DONE = enum.auto()  # the close delimiter was seen


class MultipartError(ValueError):
    """A body is not well-formed ``multipart/related`` (callers wrap it with their context)."""


def boundary_of(content_type: str) -> str:
    """The ``boundary`` parameter of a ``multipart/related`` Content-Type header.

    Raises:
        MultipartError: not ``multipart/related`` or no boundary.
    """
    message = Message()
    message["content-type"] = content_type
    if message.get_content_type() != "multipart/related":
        raise MultipartError(f"expected multipart/related, got {content_type!r}")
    boundary = message.get_param("boundary")
    if not isinstance(boundary, str) or not boundary:
        raise MultipartError(f"no boundary in {content_type!r}")
    return boundary


def _headers(block: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in block.split(b"\r\n"):
        name, sep, value = line.partition(b":")
        if sep:
            headers[name.strip().decode("latin-1").lower()] = value.strip().decode("latin-1")
    return headers


class RelatedParser:
    """An incremental splitter: :meth:`feed` chunks as they arrive, get whole parts back.

    Only about one part is buffered at a time, so a 100 MB answer is never held twice. A part
    whose ``Content-Length`` is given is cut by length (and the boundary after it checked):
    the chunks it arrives in are kept as they are and joined once, so each of its bytes is
    copied once. (A growing buffer cut at the front copied each byte several times: 28 ms
    instead of 13 for 105 MB alone, and 1.26 s of a 2.1 s fetch of 158 MB in one instrumented
    run of the service, against 0.28 s of 1.05 s after; alternated pipeline runs show no
    difference in the fetch's median.) A part without
    ``Content-Length``, or whose length is not followed by the boundary, is found by searching
    for the boundary.
    """

    def __init__(self, boundary: str) -> None:
        self._delimiter = b"--" + boundary.encode("latin-1")
        self._next = b"\r\n" + self._delimiter
        # what is not yet a part cut by length: delimiters, headers, parts searched for
        self._buffer = bytearray()
        self._state = _State.PREAMBLE
        self._pieces: list[bytes | memoryview] = []  # a part cut by length, as it arrived
        self._missing = 0  # bytes of that part still to come
        self._count = 0
        self._scan_from = 0
        self._problem = "the first boundary is missing"

    @property
    def done(self) -> bool:
        """True once the close delimiter was seen."""
        return self._state is _State.DONE

    def feed(self, chunk: bytes | memoryview) -> list[bytes]:
        """Add ``chunk``; return the parts it completed (possibly none)."""
        view = memoryview(chunk).cast("B")
        if not view.readonly:  # the caller's buffer may change once this returns: keep a copy
            view = memoryview(bytes(view))
        parts: list[bytes] = []
        while self._state is not _State.DONE:
            if self._state is _State.LENGTH and self._missing:
                if not view:
                    break
                piece = view[: self._missing]
                self._pieces.append(piece)
                self._missing -= len(piece)
                view = view[len(piece) :]
                continue
            if view:
                self._buffer += view
                view = view[len(view) :]
            if not self._step(parts):
                break
        return parts

    def close(self) -> None:
        """Say the body ended; raises :class:`MultipartError` if it ended too early."""
        if self._state is not _State.DONE:
            raise MultipartError(self._problem)

    def _step(self, parts: list[bytes]) -> bool:
        """Take one thing off the buffer; False when more bytes are needed."""
        if self._state is _State.PREAMBLE:
            return self._preamble()
        if self._state is _State.HEADERS:
            return self._part_start()
        if self._state is _State.LENGTH:
            return self._closed_by_length(parts)
        return self._search(parts)

    def _preamble(self) -> bool:
        buffer = self._buffer
        if buffer.startswith(self._delimiter):
            del buffer[: len(self._delimiter)]
        else:
            found = buffer.find(self._next)
            if found < 0:  # preamble: keep only what could start a delimiter
                del buffer[: max(0, len(buffer) - len(self._next))]
                return False
            del buffer[: found + len(self._next)]
        self._state = _State.HEADERS
        return True

    def _part_start(self) -> bool:
        """After a delimiter: the close delimiter, or a part's headers."""
        buffer = self._buffer
        part = self._count + 1
        if len(buffer) < 2:
            self._problem = f"part {part} is not closed by a boundary"
            return False
        if buffer.startswith(b"--"):
            self._state = _State.DONE
            buffer.clear()
            return False
        line_end = buffer.find(b"\r\n")
        header_end = buffer.find(b"\r\n\r\n", max(line_end, 0))
        if line_end < 0 or header_end < 0:
            self._problem = f"part {part} has no end of headers"
            return False
        self._problem = f"part {part} is not closed by a boundary"
        headers = (
            _headers(bytes(buffer[line_end + 2 : header_end])) if header_end > line_end else {}
        )
        data_start = header_end + 4
        length = headers.get("content-length", "")
        if length.isdigit():
            size = int(length)
            have = min(len(buffer) - data_start, size)
            with memoryview(buffer) as view:
                self._pieces = [bytes(view[data_start : data_start + have])]
            self._missing = size - have
            del buffer[: data_start + have]
            self._state = _State.LENGTH
        else:
            del buffer[:data_start]
            self._scan_from = 0
            self._state = _State.SEARCH
        return True

    def _closed_by_length(self, parts: list[bytes]) -> bool:
        """A part cut by length, all there: the boundary must follow it."""
        buffer = self._buffer
        if len(buffer) < len(self._next):
            return False
        data = b"".join(self._pieces)
        self._pieces = []
        if buffer.startswith(self._next):
            del buffer[: len(self._next)]
            self._emit(parts, data)
            return True
        # the boundary does not follow: the Content-Length was wrong, search for it instead
        buffer[:0] = data
        self._scan_from = 0
        self._state = _State.SEARCH
        return True

    def _search(self, parts: list[bytes]) -> bool:
        buffer = self._buffer
        end = buffer.find(self._next, self._scan_from)
        if end < 0:
            self._scan_from = max(0, len(buffer) - len(self._next) + 1)
            return False
        with memoryview(buffer) as view:  # one copy (a bytearray slice would be a second)
            data = bytes(view[:end])
        del buffer[: end + len(self._next)]
        self._emit(parts, data)
        return True

    def _emit(self, parts: list[bytes], data: bytes) -> None:
        parts.append(data)
        self._count += 1
        self._state = _State.HEADERS


def split_related(body: bytes, boundary: str) -> list[bytes]:
    """The payloads of the parts of a whole multipart body, in order (preamble/epilogue dropped).

    Raises:
        MultipartError: the first boundary, a part's header block, or the closing boundary is
            missing.
    """
    parser = RelatedParser(boundary)
    parts: list[bytes] = []
    with memoryview(body) as view:  # fed in slices: one huge buffer copy is slower
        for start in range(0, len(body), _SLICE):
            parts += parser.feed(view[start : start + _SLICE])
    parser.close()
    return parts


def encode_related(parts: Sequence[bytes], part_type: str = DICOM_TYPE) -> tuple[bytes, str]:
    """A ``multipart/related`` body of ``parts`` and its Content-Type header value.

    The boundary is random and checked not to occur in any part.
    """
    while True:
        boundary = f"preread-{secrets.token_hex(16)}"
        marker = boundary.encode("ascii")
        if not any(marker in part for part in parts):
            break
    chunks: list[bytes] = []
    head = f"--{boundary}\r\nContent-Type: {part_type}\r\n".encode("ascii")
    for part in parts:
        chunks += [head, f"Content-Length: {len(part)}\r\n\r\n".encode("ascii"), part, b"\r\n"]
    chunks.append(f"--{boundary}--\r\n".encode("ascii"))
    content_type = f'multipart/related; type="{part_type}"; boundary={boundary}'
    return b"".join(chunks), content_type
