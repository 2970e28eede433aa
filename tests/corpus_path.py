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
