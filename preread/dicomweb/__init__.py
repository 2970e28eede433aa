"""PreRead's DICOMweb at ``/dicomweb``: the read-only part of QIDO-RS and WADO-RS (PS3.18) that
the OHIF Viewer uses, for signed-in readers, each request checked and relayed to the private
Orthanc's DICOMweb, which is never exposed.

* :mod:`.routes` — the routes and the checks: a reader's session (401), the tenant (404), the
  grant (403), the audit (:func:`install` puts them into the app);
* :mod:`.search` — QIDO-RS parameters, and which studies a study search may answer;
* :mod:`.ledger` — one audit record per reader session and study per five minutes, not one per
  frame;
* :mod:`.relay` — the request to Orthanc and its answer back: JSON with Orthanc's URLs made
  PreRead's, pixels streamed;
* :mod:`.errors` — the proxy's errors and their statuses.
"""

from preread.dicomweb.errors import DicomwebError, QueryError, UpstreamError
from preread.dicomweb.ledger import WINDOW_S, AccessLedger
from preread.dicomweb.relay import PUBLIC_ROOT, Relay
from preread.dicomweb.routes import Proxy, install

__all__ = [
    "PUBLIC_ROOT",
    "WINDOW_S",
    "AccessLedger",
    "DicomwebError",
    "Proxy",
    "QueryError",
    "Relay",
    "UpstreamError",
    "install",
]
