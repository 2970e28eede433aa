"""The MLLP listener: HL7 v2 final reports from the hospital's RIS (``preread serve`` starts it
when ``PREREAD_MLLP_PORT`` is set).

Built on hl7apy's :class:`~hl7apy.mllp.MLLPServer` (a threading TCP server; a message is
routed to a handler by its type, an unreadable one to the ``ERR`` handler). MLLP frames a
message as ``0x0b`` … ``0x1c 0x0d`` (HL7 v2 Implementation Guide, MLLP release 2). This
listener's request handler differs from hl7apy's in three ways: a connection may carry many
messages (RIS interfaces keep theirs open), a frame over :data:`MAX_MESSAGE_BYTES` is refused
(AR) and the connection closed, and the bytes are decoded with the character set MSH-18 names
(UTF-8 when it names none; GB18030, ISO 8859-1 and ASCII too).

MLLP has no authentication: the sending facility (MSH-4) is mapped to a tenant by
``PREREAD_MLLP_SENDERS``, and a facility not in it is refused. Bind the listener to an
interface only the RIS reaches (``PREREAD_MLLP_HOST``, default 127.0.0.1).

What a message gets back (:class:`FinalReportReceiver`, :func:`preread.finalreports.hl7.ack`):
``AA`` once stored; ``AR`` for a message that is not HL7, not ORU^R01, from an unknown sender
or too large; ``AE`` for a report that cannot be compared (no accession number, no text, not
final), a tenant with no quality-review grant in force (audited as ``access.refused``), or a
store that failed (send it again). Log lines name the outcome, never the text or the accession.
"""

from __future__ import annotations

import codecs
import contextlib
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hl7apy.mllp import AbstractErrorHandler, AbstractHandler, MLLPRequestHandler, MLLPServer

from preread.audit import AuditAction, AuditError, AuditEvent, AuditLog, Outcome
from preread.finalreports.errors import FinalReportError, MessageRejectedError
from preread.finalreports.hl7 import (
    AccessionField,
    AckCode,
    MessageHeader,
    ack,
    parse_header,
    parse_report,
)
from preread.finalreports.intake import MLLP_PURPOSE, check_grant, receive
from preread.finalreports.store import FinalReportStore
from preread.grants import GrantStore
from preread.results import NotAuthorizedError
from preread.settings import Settings
from preread.store import StoreError

__all__ = ["MAX_MESSAGE_BYTES", "FinalReportReceiver", "MllpConfig", "MllpListener"]

log = logging.getLogger(__name__)

START, END = b"\x0b", b"\x1c\x0d"
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
CHARSETS = {
    "": "utf-8",
    "UNICODE UTF-8": "utf-8",
    "UTF-8": "utf-8",
    "GB 18030-2000": "gb18030",
    "GB18030": "gb18030",
    "8859/1": "latin-1",
    "ASCII": "ascii",
}
"""MSH-18 (HL7 table 0211) → Python codec."""


@dataclass(frozen=True)
class MllpConfig:
    host: str
    port: int
    senders: Mapping[str, str]
    accession_field: AccessionField
    timeout_s: float

    @classmethod
    def from_settings(cls, settings: Settings) -> MllpConfig:
        if settings.mllp_port is None:
            raise ValueError("PREREAD_MLLP_PORT is not set: no MLLP listener")
        return cls(
            settings.mllp_host,
            settings.mllp_port,
            dict(settings.mllp_senders),
            settings.mllp_accession_field,
            settings.mllp_timeout_s,
        )


class FinalReportReceiver:
    """What the listener does with one message: the ACK to send back (never raises)."""

    def __init__(
        self, config: MllpConfig, store: FinalReportStore, grants: GrantStore, audit: AuditLog
    ) -> None:
        self.config = config
        self.store = store
        self.grants = grants
        self.audit = audit

    def answer(self, message: str) -> str:
        header: MessageHeader | None = None
        try:
            header = parse_header(message)
            return self._answer(message, header)
        except FinalReportError as exc:
            code: AckCode = "AR" if isinstance(exc, MessageRejectedError) else "AE"
            log.info("MLLP: answered %s (%s)", code, type(exc).__name__)
            return ack(header, code, str(exc), error_code=exc.hl7_error_code)
        except (StoreError, AuditError) as exc:
            log.error("MLLP: a final report could not be stored (%s)", type(exc).__name__)
            return ack(header, "AE", "the report could not be stored now: send it again")
        except Exception as exc:  # the sender gets an answer whatever happens
            log.error("MLLP: unexpected %s while receiving a report", type(exc).__name__)
            return ack(header, "AE", "PreRead could not process the message")

    def unreadable(self) -> str:
        return ack(None, "AR", "not an HL7 v2 message (MSH-9 cannot be read)", error_code="100")

    def _answer(self, message: str, header: MessageHeader) -> str:
        facility = header.sending_facility
        tenant = self.config.senders.get(facility)
        if tenant is None:
            raise MessageRejectedError(
                f"sending facility {facility or '(empty)'!r} (MSH-4) is not in "
                "PREREAD_MLLP_SENDERS: its reports are not accepted",
                hl7_error_code="204",
            )
        incoming = parse_report(message, header, self.config.accession_field)
        actor = f"hl7:{facility}"[:255]
        try:
            check_grant(self.grants, tenant, MLLP_PURPOSE.value)
        except NotAuthorizedError as exc:
            self.audit.record(
                AuditEvent(
                    actor=actor,
                    action=AuditAction.ACCESS_REFUSED,
                    outcome=Outcome.REFUSED,
                    tenant=tenant,
                    purpose=MLLP_PURPOSE.value,
                    detail={"channel": "mllp", "reason": str(exc)},
                )
            )
            log.info("MLLP: a report of tenant %s refused: no grant", tenant)
            return ack(header, "AE", str(exc), error_code="207")
        received = receive(self.store, tenant, incoming, actor=actor, purpose=MLLP_PURPOSE.value)
        report = received.report
        matched = report.study_instance_uid is not None
        log.info("MLLP: a final report of tenant %s stored (version %d)", tenant, report.version)
        return ack(
            header,
            "AA",
            f"final report stored (version {report.version}"
            f"{', unchanged' if received.repeated else ''}"
            f"{', matched to its study' if matched else ', no study yet'})",
        )


class _ReportHandler(AbstractHandler):  # type: ignore[misc]
    def __init__(self, message: str, receiver: FinalReportReceiver) -> None:
        super().__init__(message)
        self.receiver = receiver

    def reply(self) -> str:
        return self.receiver.answer(self.incoming_message)


class _UnreadableHandler(AbstractErrorHandler):  # type: ignore[misc]
    def __init__(self, exc: Exception, message: str, receiver: FinalReportReceiver) -> None:
        super().__init__(exc, message)
        self.receiver = receiver

    def reply(self) -> str:
        return self.receiver.unreadable()


class _Handlers(dict[str, tuple[Any, ...]]):
    """hl7apy's handler table: every message type goes to :class:`_ReportHandler` (it answers
    AR for a type other than ORU^R01, naming it); ``ERR`` to :class:`_UnreadableHandler`."""

    def __init__(self, receiver: FinalReportReceiver) -> None:
        super().__init__(ERR=(_UnreadableHandler, receiver))
        self.receiver = receiver

    def __missing__(self, key: str) -> tuple[Any, ...]:
        return (_ReportHandler, self.receiver)


class _RequestHandler(MLLPRequestHandler):  # type: ignore[misc]
    """Frames read from the connection one after another, each answered (module docstring)."""

    def handle(self) -> None:
        buffer = b""
        try:
            while True:
                while END not in buffer:
                    chunk = self.request.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                    if len(buffer) > MAX_MESSAGE_BYTES + 2:
                        refusal = f"the message is over {MAX_MESSAGE_BYTES} bytes"
                        self._send(ack(None, "AR", refusal, error_code="100"))
                        return
                frame, _, buffer = buffer.partition(END)
                start = frame.find(START)
                if start < 0:
                    return  # not MLLP: nothing to answer
                self._send(self._answer(frame[start + 1 :]))
        except (OSError, TimeoutError):
            return  # the peer went away or stayed silent past the timeout

    def _answer(self, raw: bytes) -> str:
        first = raw.split(b"\r", 1)[0].decode("latin-1")
        fields = first.split(first[3]) if first.startswith("MSH") and len(first) > 3 else []
        charset = fields[17].split("^")[0].strip().upper() if len(fields) > 17 else ""
        codec = CHARSETS.get(charset)
        header = None
        with contextlib.suppress(MessageRejectedError):
            header = parse_header(first)
        if codec is None:
            return ack(header, "AR", f"character set {charset!r} (MSH-18) is not supported")
        try:
            message = raw.decode(codecs.lookup(codec).name)
        except UnicodeDecodeError:
            return ack(header, "AR", f"the message is not valid {codec} (MSH-18 {charset!r})")
        if header is None:
            return self.server.receiver.unreadable()  # type: ignore[no-any-return]
        return self._route_message(message.replace("\n", "\r"))  # type: ignore[no-any-return]

    def _send(self, answer: str) -> None:
        self.request.sendall(START + answer.encode("ascii", errors="replace") + END)


class _Server(MLLPServer):  # type: ignore[misc]
    daemon_threads = True

    def __init__(self, receiver: FinalReportReceiver, host: str, port: int, timeout: float):
        self.receiver = receiver
        super().__init__(host, port, _Handlers(receiver), timeout, _RequestHandler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.error("MLLP: a connection ended with an error")  # no traceback: it may hold text


class MllpListener:
    """The listener on ``config.host:config.port`` (0: a free port; :attr:`port` says which),
    serving in a thread from :meth:`start` until :meth:`stop`."""

    def __init__(self, receiver: FinalReportReceiver) -> None:
        self.receiver = receiver
        config = receiver.config
        self._server = _Server(receiver, config.host, config.port, config.timeout_s)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},  # how soon stop() returns
            name="preread-mllp",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(5)
        self._server.server_close()

    def __enter__(self) -> MllpListener:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()
