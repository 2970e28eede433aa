"""PreRead's settings: one validated object per process, read from ``PREREAD_*`` variables.

Build it once at the edge (the CLI, the app factory) and pass it in; nothing reads the
environment at import time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

_REPO_MODELS = Path(__file__).resolve().parent.parent / "models"


def _default_data_dir() -> Path:
    return Path.home() / ".local" / "share" / "preread"


def _default_models_dir() -> Path:
    # A source checkout ships its model packages in models/; an installed wheel has none,
    # so it looks in the data folder (override with PREREAD_MODELS_DIR either way).
    return _REPO_MODELS if _REPO_MODELS.is_dir() else _default_data_dir() / "models"


class Settings(BaseSettings):
    """Configuration of one PreRead process (environment variables with the prefix PREREAD_)."""

    model_config = SettingsConfigDict(env_prefix="PREREAD_", extra="ignore")

    data_dir: Path = Field(default_factory=_default_data_dir, description="state, caches, runs")
    models_dir: Path = Field(
        default_factory=_default_models_dir,
        description="installed model packages, laid out as <id>/<version>/",
    )
    providers: list[str] = Field(
        default=["CPUExecutionProvider"],
        description="ONNX Runtime execution providers in order of preference",
    )
    provider_policy: Literal["warn", "fail"] = Field(
        default="fail",
        description="when the first requested provider is not the one in use: "
        "'fail' refuses to run, 'warn' runs and records the provider actually used",
    )
    intra_op_threads: int = Field(default=0, ge=0, description="0 = ONNX Runtime's default")

    # --- Orthanc: unset URL = PreRead starts its own private Orthanc (embedded default) ----
    orthanc_url: str | None = Field(default=None, description="an existing Orthanc's REST URL")
    orthanc_username: str = "preread"
    orthanc_password: SecretStr | None = None
    orthanc_aet: str = Field(default="PREREAD", description="private Orthanc's AE title")
    orthanc_dicom_port: int = Field(
        default=0, ge=0, description="private Orthanc's DICOM port (0: free)"
    )
    orthanc_http_port: int = Field(
        default=0, ge=0, description="private Orthanc's HTTP port (0: free)"
    )
    stable_age_s: int = Field(default=2, ge=1, description="private Orthanc's StableAge")
    allowed_senders: list[str] = Field(
        default=["HOSPITAL", "STORESCU"],
        description="AE titles the private Orthanc accepts C-STORE from",
    )

    # --- the job store and the workers --------------------------------------------------------
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; unset = SQLite in the data folder"
    )
    workers: int = Field(default=1, ge=1, description="in-process worker threads")
    models: list[str] = Field(
        default=["lung-nodule"], description="models that read every study: id or id@version"
    )
    poll_interval_s: float = Field(default=1.0, gt=0)
    reconcile_interval_s: float = Field(default=60.0, gt=0)
    lease_s: float = Field(default=900.0, gt=0, description="a job's lease; longer than any study")
    job_max_attempts: int = Field(default=3, ge=1)
