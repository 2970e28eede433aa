"""``preread discrepancies`` (in this process, typer's runner, on the data folder's SQLite job
store) and the MLLP listener that ``preread serve`` starts from the settings."""

from __future__ import annotations

import json
import socket
import stat
from pathlib import Path
from types import SimpleNamespace

import pytest
from fhir.resources.R4B.bundle import Bundle
from typer.testing import CliRunner

from preread.audit import AuditAction, AuditLog
from preread.cli import app
from preread.cli_finalreports import mllp_listener
from preread.composition import job_store
from preread.finalreports import FinalReportError, FinalReportStore, IncomingReport, receive
from preread.finalreports.records import Channel, ReportStatus
from preread.grants import GrantStore
from preread.settings import Settings
from tests.finalreports.conftest import done_study, finding, grant
from tests.finalreports.hl7_messages import END, framed, oru


def _scene(data: Path) -> str:
    """hosp-a with a quality-review grant and one report that disagrees with the AI."""
    with job_store(Settings(data_dir=data)) as store:
        store.migrate()
        grant(store, "hosp-a")
        facts, _ = done_study(store, "hosp-a", "ACC-5", (finding(1, 9.0),))
        report = IncomingReport("ACC-5", "No nodules.", ReportStatus.FINAL, Channel.HL7, "RIS")
        receive(FinalReportStore(store), "hosp-a", report, actor="test", purpose="quality-review")
        return facts.study_instance_uid


def test_discrepancies_are_written_audited_and_refused_without_a_grant(tmp_path: Path) -> None:
    data = tmp_path / "data"
    uid = _scene(data)
    env = {"PREREAD_DATA_DIR": str(data), "COLUMNS": "200"}
    out = tmp_path / "list.json"
    runner = CliRunner()
    listed = runner.invoke(app, ["discrepancies", "--tenant", "hosp-a", "--out", str(out)], env=env)
    assert listed.exit_code == 0, listed.output
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    body = json.loads(out.read_text())
    assert [(i["study_instance_uid"], i["discrepancies"][0]["kind"]) for i in body["items"]] == [
        (uid, "ai-only")
    ]
    fhir = runner.invoke(app, ["discrepancies", "--tenant", "hosp-a", "--format", "fhir"], env=env)
    assert fhir.exit_code == 0, fhir.output
    bundle = Bundle.model_validate_json(fhir.stdout)
    assert bundle.entry is not None and len(bundle.entry) == 1
    refused = runner.invoke(app, ["discrepancies", "--tenant", "hosp-b"], env=env)
    assert refused.exit_code == 2 and "no valid quality-review grant" in refused.output
    wrong = runner.invoke(app, ["discrepancies", "--tenant", "hosp-a", "--format", "csv"], env=env)
    assert wrong.exit_code == 2 and "--format 'csv'" in wrong.output
    with job_store(Settings(data_dir=data)) as store:
        actions = [(r.event.action, r.event.tenant) for r in AuditLog(store.engine).records()]
    assert actions.count((AuditAction.EXPORT, "hosp-a")) == 2
    assert (AuditAction.ACCESS_REFUSED, "hosp-b") in actions


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_listens_for_mllp_only_when_a_port_is_set(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _scene(data)
    port = _free_port()
    settings = Settings(data_dir=data, mllp_port=port, mllp_senders={"HOSP_RIS": "hosp-a"})
    with job_store(settings) as store:
        audit = AuditLog(store.engine)
        service = SimpleNamespace(store=store, audit=audit, grants=GrantStore(store.engine))
        assert mllp_listener(Settings(data_dir=data), service) is None
        listener = mllp_listener(settings, service)
        assert listener is not None and listener.port == port
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
                conn.sendall(framed(oru(accession="ACC-5")))
                answer = b""
                while END not in answer:
                    answer += conn.recv(4096)
            assert b"MSA|AA|MSG0001|final report stored (version 2" in answer
            with pytest.raises(FinalReportError, match=f"127.0.0.1:{port}.*PREREAD_MLLP_PORT"):
                mllp_listener(settings, service)  # the port is taken
        finally:
            listener.stop()
