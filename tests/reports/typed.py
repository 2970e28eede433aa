"""Findings typed by a 2.0.0-like model, for the encoder tests: two nodules of a test's own
(typed solid and part-solid with a solid component) and a third, ground-glass one."""

from __future__ import annotations

from preread.reports.json import FindingOut


def typed_findings(
    left: FindingOut, right: FindingOut, ground_glass_uid: str
) -> tuple[FindingOut, FindingOut, FindingOut]:
    """(solid, part-solid, ground-glass): ``left`` and ``right`` typed, plus a third."""
    solid = left.model_copy(
        update={
            "nodule_type": "solid",
            "axial_long_axis_mm": 13.204,
            "short_axis_mm": 11.05,
            "mean_diameter_mm": 12.1,
        }
    )
    part_solid = right.model_copy(
        update={
            "nodule_type": "part-solid",
            "axial_long_axis_mm": 9.46,
            "short_axis_mm": 7.2,
            "mean_diameter_mm": 8.3,
            "solid_component_long_axis_mm": 4.126,
        }
    )
    ground_glass = FindingOut(
        label=3,
        tracking_id="AI nodule 3",
        tracking_uid=ground_glass_uid,
        center_lps_mm=(80.0, 20.5, -120.0),
        long_axis_mm=8.0,
        volume_mm3=180.2,
        probability=0.61,
        mean_hu=-640.0,
        lung_side="left",
        nodule_type="ground-glass",
        axial_long_axis_mm=7.5,
        short_axis_mm=6.0,
        mean_diameter_mm=6.8,
    )
    return solid, part_solid, ground_glass
