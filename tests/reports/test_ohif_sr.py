"""PreRead's SR and SEG as OHIF reads them: ``ohif_adapter_check.mjs`` runs the Cornerstone3D
adapters of ``@cornerstonejs/adapters`` 5.6.8 (the SR and SEG readers OHIF 3.13 bundles) under
node on the files the encoders write, for the phantom study of ``test_sr_seg`` (two nodules;
untyped as a 1.0.0-like model gives them, typed with Lung-RADS sizes, and mixed).

For every finding OHIF must draw one Length on the source slice through its centre, as long as
PreRead's long axis (the axial one when the model gives it), labelled with the finding's name,
and load its segment onto the CT slices it covers. ``./run setup`` installs node and the
packages (``web/ohif``); without them these tests fail.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from preread.domain import Finding, PreReadResult
from preread.reports import EncodedSeries, tracking_uid
from preread.reports.axes import centre_slice
from preread.reports.seg import segment_label
from preread.reports.series import AI_NOTICE, source_frames
from preread.reports.sr import OHIF_LENGTH_TOOL
from preread.reports.uids import tracking_id
from tests.ohif_support import NODE_MODULES, installed, node
from tests.reports.test_sr_seg import Study

CHECK = Path(__file__).with_name("ohif_adapter_check.mjs")
TOLERANCE_MM = 0.5
# The volumetric group (TID 1411: the numbers and the SEG reference) cannot hold coordinates
# (TID 1419; highdicom refuses them), so the reader drops it with this error, which it catches
# and logs; the finding's drawn group carries what OHIF shows.
DROPPED_VOLUMETRIC = "Unable to generate tool state for Error: No spatial coordinates group found."


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Study:
    return Study(tmp_path_factory.mktemp("ohif"))


@pytest.fixture(scope="module")
def ct_files(study: Study) -> list[Path]:
    folder = study.root / "ct-files"
    folder.mkdir()
    paths = []
    for k, ds in enumerate(study.by_k):
        path = folder / f"{k:03d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def _read_in_ohif(
    study: Study, ct_files: list[Path], sr: EncodedSeries, seg: EncodedSeries, name: str
) -> dict[str, Any]:
    installed(NODE_MODULES / "@cornerstonejs" / "adapters")
    run = subprocess.run(
        [
            node(),
            str(CHECK),
            str(NODE_MODULES),
            str(study.write(sr, f"{name}-sr")),
            str(study.write(seg, f"{name}-seg")),
            *map(str, ct_files),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, f"the adapters threw:\n{run.stderr[-3000:]}"
    out: dict[str, Any] = json.loads(run.stdout)
    assert out["versions"]["@cornerstonejs/adapters"] == "5.6.8"
    return out


def _drawn_figure(finding: Finding) -> float:
    return finding.axial_long_axis_mm or finding.long_axis_mm


@pytest.mark.parametrize("which", ["result", "typed", "mixed"])
def test_ohif_draws_every_finding_as_a_length_on_its_centre_slice(
    study: Study, ct_files: list[Path], which: str
) -> None:
    result: PreReadResult = getattr(study, which)
    sr, seg = {
        "result": (study.sr, study.seg),
        "typed": (study.typed_sr, study.typed_seg),
        "mixed": (study.mixed_sr, study.mixed_seg),
    }[which]
    out = _read_in_ohif(study, ct_files, sr, seg, which)
    findings = sorted(result.findings, key=lambda f: f.label)
    # every group is read as a Length (by its Tracking Identifier), two per finding
    assert [(g["trackingIdentifier"], g["adapter"]) for g in out["groups"]] == [
        (f"{OHIF_LENGTH_TOOL}:{tracking_id(f, result.concept)}", "Length")
        for f in findings
        for _ in range(2)
    ]
    assert out["failures"] == [DROPPED_VOLUMETRIC] * len(findings), out["failures"]
    by_uid = {m["trackingUniqueIdentifier"]: m for m in out["measurements"]}
    assert len(by_uid) == len(out["measurements"]) == len(findings)
    for finding in findings:
        m = by_uid[tracking_uid(result, finding)]
        name = tracking_id(finding, result.concept)
        assert m["toolType"] == "Length"
        assert m["label"] == f"{name}: {AI_NOTICE}"
        assert m["finding"]["meaning"] == "Nodule"
        assert [s["value"] for s in m["findingSites"]] == ["39607008"]  # Lung
        image = study.by_k[centre_slice(finding, source_frames(study.by_k))]
        assert m["sopInstanceUid"] == str(image.SOPInstanceUID)
        figure = _drawn_figure(finding)
        assert m["stats"]["unit"] == "mm"
        assert abs(m["stats"]["length"] - figure) <= TOLERANCE_MM, (m["stats"], figure)
        a, b = (np.asarray(p, dtype=np.float64) for p in m["points"])
        assert abs(float(np.linalg.norm(b - a)) - figure) <= TOLERANCE_MM
        # on the image's plane, through the finding
        orientation = np.asarray(image.ImageOrientationPatient, dtype=np.float64)
        normal = np.cross(orientation[:3], orientation[3:])
        plane = float(np.asarray(image.ImagePositionPatient, dtype=np.float64) @ normal)
        assert abs(a @ normal - plane) < 1e-3 and abs(b @ normal - plane) < 1e-3
        centre = np.asarray(finding.center_lps_mm, dtype=np.float64)
        in_plane = centre - normal * (centre @ normal - plane)
        assert float(np.linalg.norm((a + b) / 2 - in_plane)) < figure / 2
    # the SEG: every finding's segment, on exactly its voxels
    assert out["segments"] == [
        {
            "number": n,
            "label": segment_label(f, result.concept),
            "voxels": f.voxel_count,
            "slices": int((study.labels == f.label).any(axis=(1, 2)).sum()),
        }
        for n, f in enumerate(findings, start=1)
    ]


def test_seg_names_its_source_series_as_ohifs_seg_handler_needs(study: Study) -> None:
    """OHIF's SEG display set (extensions/cornerstone-dicom-seg getSopClassHandlerModule) finds
    the images under the SEG by ``ReferencedSeriesSequence[0]``: its SeriesInstanceUID and
    ReferencedInstanceSequence (highdicom writes both)."""
    for seg in (study.seg, study.typed_seg, study.mixed_seg):
        (series,) = seg.dataset.ReferencedSeriesSequence
        assert series.SeriesInstanceUID == study.result.series_instance_uid
        listed = {str(item.ReferencedSOPInstanceUID) for item in series.ReferencedInstanceSequence}
        assert listed == {str(ds.SOPInstanceUID) for ds in study.by_k}
