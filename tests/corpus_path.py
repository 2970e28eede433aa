"""Where the regression corpus is: ``../shared/corpus/orthanc-tests`` beside the checkout
(as CI lays it out), else ``PREREAD_TEST_CORPUS``, else ``/work/shared/...`` (the sessions').
A test that needs it fails when it is missing: it never skips."""

from __future__ import annotations

import os
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
_CANDIDATES = [
    *([Path(os.environ["PREREAD_TEST_CORPUS"])] if "PREREAD_TEST_CORPUS" in os.environ else []),
    _ROOT.parent / "shared" / "corpus" / "orthanc-tests",
    Path("/work/shared/corpus/orthanc-tests"),
]
CORPUS = next((p for p in _CANDIDATES if p.is_dir()), _CANDIDATES[0])
MISSING = (
    f"the Orthanc regression corpus is missing: {CORPUS}. It is the Database/ folder of the "
    "Orthanc project's integration tests (https://github.com/orthanc-mirrors/orthanc-tests, "
    "files under 4 MiB), laid out as ../shared/corpus/orthanc-tests beside the checkout; set "
    "PREREAD_TEST_CORPUS to its folder if it lies elsewhere"
)
