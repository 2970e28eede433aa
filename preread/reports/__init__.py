"""Encoders from one PreRead result to what radiologists and hospital systems read.

* :func:`build_seg` — DICOM Segmentation, one segment per finding (PS3.3 A.51);
* :func:`build_sr` — DICOM Comprehensive 3D SR with a TID 1500 Measurement Report;
* :func:`build_key_images` / :func:`build_kos` — a Secondary Capture key image per finding
  (contour and text burned in) and a Key Object Selection of the key slices, for any PACS;
* :func:`to_json` / :class:`PreReadOut` — the PreRead JSON.

All three share the finding's Tracking UID (:func:`tracking_uid`) and the model version, and
label the content AI-generated and preliminary. UIDs are deterministic: encoding the same
result twice gives the same instances (:mod:`preread.reports.uids`).

Typical use::

    sources = OrderedSources.of(result, ct_datasets)         # ordered and checked once
    seg = build_seg(result, sources, label_map)              # None without findings
    sr = build_sr(result, sources, seg, supersedes=previous_sr_ref)

(``ct_datasets`` themselves serve too: each encoder then orders them again.)
"""

from preread.reports.errors import ReportError
from preread.reports.json import PreReadOut, to_json
from preread.reports.keyimages import KeyImageSeries, build_key_images, build_kos
from preread.reports.seg import build_seg
from preread.reports.series import EncodedSeries, InstanceRef, OrderedSources
from preread.reports.sr import build_sr
from preread.reports.uids import tracking_uid

__all__ = [
    "EncodedSeries",
    "InstanceRef",
    "KeyImageSeries",
    "OrderedSources",
    "PreReadOut",
    "ReportError",
    "build_key_images",
    "build_kos",
    "build_seg",
    "build_sr",
    "to_json",
    "tracking_uid",
]
