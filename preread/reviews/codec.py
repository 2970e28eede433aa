"""A review's content as the JSON the store keeps (``reviews.content``), and back.

Version 1 (``"schema": 1``)::

    {"schema": 1,
     "assessments": [{"tracking_uid": "1.2…", "finding_number": 1, "verdict": "accepted"},
                     {"…": "…", "verdict": "rejected", "reason": "vessel", "text": null},
                     {"…": "…", "verdict": "modified", "nodule_type": "solid",
                      "long_axis_mm": 7.5, "short_axis_mm": null}],
     "added": [{"tracking_uid": "1.2…", "click_lps_mm": [x, y, z], "centre_lps_mm": [x, y, z],
                "long_axis_mm": …, "short_axis_mm": …, "long_axis_3d_mm": …,
                "volume_mm3": …, "mean_hu": …, "nodule_type": "solid",
                "solid_component_long_axis_mm": null, "reader_placed": true,
                "mask": {"grid_shape": [k, j, i], "offset_kji": [k, j, i],
                         "shape": [k, j, i], "bits": "<base64 of numpy.packbits, C order>"}}]}

A reader of another version refuses it (:class:`ReviewError`) rather than guess.
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np

from preread.reviews.domain import (
    Accepted,
    AddedNodule,
    Assessment,
    Modified,
    Rejected,
    RejectReason,
    Verdict,
    VoxelMask,
)
from preread.reviews.errors import ReviewError

__all__ = ["SCHEMA", "decode_content", "encode_content"]

SCHEMA = 1


def encode_content(
    assessments: tuple[Assessment, ...], added: tuple[AddedNodule, ...]
) -> dict[str, Any]:
    """The JSON of a review's assessments and added nodules (every added one has its UID)."""
    return {
        "schema": SCHEMA,
        "assessments": [_assessment(a) for a in assessments],
        "added": [_added(n) for n in added],
    }


def decode_content(
    content: dict[str, Any],
) -> tuple[tuple[Assessment, ...], tuple[AddedNodule, ...]]:
    """The assessments and added nodules of :func:`encode_content`'s JSON."""
    if content.get("schema") != SCHEMA:
        raise ReviewError(f"a review stored with content schema {content.get('schema')!r}")
    return (
        tuple(_read_assessment(a) for a in content["assessments"]),
        tuple(_read_added(n) for n in content["added"]),
    )


def _assessment(a: Assessment) -> dict[str, Any]:
    out: dict[str, Any] = {
        "tracking_uid": a.tracking_uid,
        "finding_number": a.finding_number,
        "verdict": a.kind,
    }
    v = a.verdict
    if isinstance(v, Rejected):
        out |= {"reason": v.reason.value, "text": v.text}
    elif isinstance(v, Modified):
        out |= {
            "nodule_type": v.nodule_type,
            "long_axis_mm": v.long_axis_mm,
            "short_axis_mm": v.short_axis_mm,
        }
    return out


def _read_assessment(raw: dict[str, Any]) -> Assessment:
    kind = raw["verdict"]
    verdict: Verdict
    if kind == "accepted":
        verdict = Accepted()
    elif kind == "rejected":
        verdict = Rejected(RejectReason(raw["reason"]), raw.get("text"))
    elif kind == "modified":
        verdict = Modified(
            raw.get("nodule_type"), raw.get("long_axis_mm"), raw.get("short_axis_mm")
        )
    else:
        raise ReviewError(f"unknown verdict {kind!r} in a stored review")
    return Assessment(str(raw["tracking_uid"]), int(raw["finding_number"]), verdict)


def _added(n: AddedNodule) -> dict[str, Any]:
    if n.tracking_uid is None:
        raise ReviewError("an added nodule is stored with its tracking UID")
    m = n.mask
    return {
        "tracking_uid": n.tracking_uid,
        "click_lps_mm": list(n.click_lps_mm),
        "centre_lps_mm": list(n.centre_lps_mm),
        "long_axis_mm": n.long_axis_mm,
        "short_axis_mm": n.short_axis_mm,
        "long_axis_3d_mm": n.long_axis_3d_mm,
        "volume_mm3": n.volume_mm3,
        "mean_hu": n.mean_hu,
        "nodule_type": n.nodule_type,
        "solid_component_long_axis_mm": n.solid_component_long_axis_mm,
        "reader_placed": True,
        "mask": {
            "grid_shape": list(m.grid_shape),
            "offset_kji": list(m.offset_kji),
            "shape": list(m.array.shape),
            "bits": base64.b64encode(np.packbits(m.array, axis=None).tobytes()).decode("ascii"),
        },
    }


def _read_added(raw: dict[str, Any]) -> AddedNodule:
    mask = raw["mask"]
    shape = tuple(int(n) for n in mask["shape"])
    bits = np.frombuffer(base64.b64decode(mask["bits"]), dtype=np.uint8)
    count = int(np.prod(shape))
    array = np.unpackbits(bits, count=count).astype(bool).reshape(shape)
    return AddedNodule(
        click_lps_mm=_point(raw["click_lps_mm"]),
        centre_lps_mm=_point(raw["centre_lps_mm"]),
        long_axis_mm=float(raw["long_axis_mm"]),
        short_axis_mm=float(raw["short_axis_mm"]),
        long_axis_3d_mm=float(raw["long_axis_3d_mm"]),
        volume_mm3=float(raw["volume_mm3"]),
        mean_hu=float(raw["mean_hu"]),
        nodule_type=raw["nodule_type"],
        solid_component_long_axis_mm=raw.get("solid_component_long_axis_mm"),
        tracking_uid=str(raw["tracking_uid"]),
        mask=VoxelMask(
            grid_shape=_shape(mask["grid_shape"]),
            offset_kji=_shape(mask["offset_kji"]),
            array=array,
        ),
    )


def _point(values: list[float]) -> tuple[float, float, float]:
    x, y, z = (float(v) for v in values)
    return (x, y, z)


def _shape(values: list[int]) -> tuple[int, int, int]:
    k, j, i = (int(v) for v in values)
    return (k, j, i)
