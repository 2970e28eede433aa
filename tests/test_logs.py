"""The one logging setup of the long-running commands: third-party INFO lines, which carry
Study/Series/SOP Instance UIDs, stay out of the log; PreRead's own INFO lines stay in."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import httpx
import pytest

from preread.logs import QUIET_LOGGERS, configure_logging

STUDY = "1.2.826.0.1.3680043.8.498.12345"
SOP = "1.2.826.0.1.3680043.8.498.67890"


@pytest.fixture
def logging_setup() -> Iterator[None]:
    """Run :func:`configure_logging`, then put the loggers back as they were."""
    root = logging.getLogger()
    saved = root.level, list(root.handlers)
    levels = {name: logging.getLogger(name).level for name in QUIET_LOGGERS}
    configure_logging()
    yield
    root.setLevel(saved[0])
    root.handlers[:] = saved[1]
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


@pytest.mark.usefixtures("logging_setup")
def test_third_party_info_lines_with_uids_are_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)  # the root logger's level, as under `preread serve`
    client = httpx.Client(transport=httpx.MockTransport(lambda _: httpx.Response(200)))
    with client:  # httpx logs "HTTP Request: GET <url> ..." at INFO
        client.get(f"http://127.0.0.1:8042/dicom-web/studies/{STUDY}/series/{SOP}/metadata")
    logging.getLogger("highdicom.base").info('copied "SOPInstanceUID" %s', SOP)
    logging.getLogger("pydicom").info("read dataset %s", SOP)
    logging.getLogger("pynetdicom.events").info("C-STORE %s", SOP)
    logging.getLogger("preread.service").info("model lung-nodule runs on CPUExecutionProvider")
    logging.getLogger("httpx").warning("a warning still comes through")
    assert STUDY not in caplog.text and SOP not in caplog.text
    assert "runs on CPUExecutionProvider" in caplog.text
    assert "a warning still comes through" in caplog.text
