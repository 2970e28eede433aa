"""The worklist's sort keys of a stored result (``jobs.largest_finding_mm``/``largest_solid_mm``).

Pure: the job store calls it when a job is done, migration 0008 for jobs done before it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: Nodule types with a solid component: what a radiologist reads first (Lung-RADS sizes
#: solid and part-solid nodules on their own, more urgent, scales than ground-glass ones).
SOLID_TYPES = frozenset({"solid", "part-solid"})


def largest_sizes(result: Mapping[str, Any] | None) -> tuple[float | None, float | None]:
    """(largest long axis of any finding, largest long axis of a solid or part-solid one), in
    mm, from a stored result document (:class:`preread.reports.json.PreReadOut`'s shape);
    None where there is no such finding (or no readable size)."""
    findings = (result or {}).get("findings")
    if not isinstance(findings, list):
        return None, None
    sizes: list[float] = []
    solid: list[float] = []
    for f in findings:
        size = f.get("long_axis_mm") if isinstance(f, Mapping) else None
        if not isinstance(size, (int, float)) or isinstance(size, bool):
            continue
        sizes.append(float(size))
        if f.get("nodule_type") in SOLID_TYPES:
            solid.append(float(size))
    return (max(sizes, default=None), max(solid, default=None))
