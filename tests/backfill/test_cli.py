"""``preread backfill run|status|worklist`` through typer's test runner: what is refused before
anything starts (a reversed range, no PACS configured, an unknown format), and ``status`` on a
fresh job store."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from preread.cli import app


def _run(tmp_path: Path, *args: str) -> tuple[int, str]:
    env: dict[str, str | None] = {
        "PREREAD_DATA_DIR": str(tmp_path),
        "PREREAD_DATABASE_URL": None,
        "PREREAD_PRIORS_PEER": None,
        "COLUMNS": "200",
    }
    result = CliRunner().invoke(app, ["backfill", *args], env=env)
    return result.exit_code, result.output


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--from", "2024-03-31", "--to", "2024-03-01"), "ends before it starts"),
        (("--from", "2024-02-30", "--to", "2024-03-01"), "is not a date (YYYY-MM-DD)"),
        (("--from", "2024-03-01", "--to", "2024-03-31"), "set PREREAD_PRIORS_PEER"),
    ],
)
def test_run_refuses_before_it_starts(tmp_path: Path, args: tuple[str, ...], says: str) -> None:
    code, output = _run(tmp_path, "run", "--tenant", "default", *args)
    assert code == 2 and says in output, output
    assert not (tmp_path / "orthanc").exists()  # no Orthanc was started


def test_worklist_names_the_formats_and_status_lists_no_run(tmp_path: Path) -> None:
    code, output = _run(
        tmp_path, "worklist", "--tenant", "default", "--out", "-", "--format", "xml"
    )
    assert code == 2 and "one of json, csv, fhir" in output, output
    code, output = _run(tmp_path, "status", "--tenant", "default")
    assert code == 0 and "backfill runs of default" in output, output
    code, output = _run(tmp_path, "status", "--tenant", "Bad Tenant")
    assert code == 2 and "tenant 'Bad Tenant'" in output, output
