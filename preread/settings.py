"""PreRead's settings: one validated object per process, read from ``PREREAD_*`` variables.

Build it once at the edge (the CLI, the app factory) and pass it in; nothing reads the
environment at import time.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from ipaddress import ip_network
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field, IPvAnyNetwork, SecretStr, ValidationInfo, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from inference.grid import MAX_GRID_VOXELS
from preread.errors import PrereadError
from preread.outputs import Output, parse_outputs

if TYPE_CHECKING:
    from dicom_gateway.checks import SeriesLimits
    from preread.followup.screening import LungRadsPolicy

#: credentials that may come from a file: ``PREREAD_<NAME>_FILE=/run/secrets/…`` (the postgres
#: image's convention; Docker/Kubernetes secrets are files). Not for the path settings that end
#: in ``_file`` themselves (``deid_key_file``…): PreRead reads those files on its own.
FILE_SETTINGS = ("database_url", "broker_url", "orthanc_password", "oidc_client_secret")

_REPO_MODELS = Path(__file__).resolve().parent.parent / "models"
_REPO_OHIF = Path(__file__).resolve().parent.parent / "web/ohif/node_modules/@ohif/app/dist"


def _default_data_dir() -> Path:
    return Path.home() / ".local" / "share" / "preread"


def _default_models_dir() -> Path:
    # A source checkout ships its model packages in models/; an installed wheel has none,
    # so it looks in the data folder (override with PREREAD_MODELS_DIR either way).
    return _REPO_MODELS if _REPO_MODELS.is_dir() else _default_data_dir() / "models"


class SettingsFileError(PrereadError):
    """A ``PREREAD_<NAME>_FILE`` variable that cannot be used (unreadable, or beside
    ``PREREAD_<NAME>``)."""


class FileVariables(PydanticBaseSettingsSource):
    """``PREREAD_<NAME>_FILE`` → the file's content (trailing newlines removed) for each name
    of :data:`FILE_SETTINGS`; setting both ``PREREAD_<NAME>`` and ``…_FILE`` is an error."""

    def __init__(
        self, settings_cls: type[BaseSettings], environ: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(settings_cls)
        self.environ = os.environ if environ is None else environ

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # the whole work is in __call__

    def __call__(self) -> dict[str, Any]:
        prefix = str(self.config.get("env_prefix", "")).upper()
        values: dict[str, Any] = {}
        for name in FILE_SETTINGS:
            variable = f"{prefix}{name.upper()}"
            path = self.environ.get(f"{variable}_FILE")
            if not path:
                continue
            if self.environ.get(variable):
                raise SettingsFileError(f"set {variable} or {variable}_FILE, not both")
            try:
                values[name] = Path(path).read_text(encoding="utf-8").rstrip("\r\n")
            except OSError as exc:
                raise SettingsFileError(
                    f"{variable}_FILE={path}: cannot read it ({exc.strerror or exc})"
                ) from None
        return values


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
    # GPU: PREREAD_PROVIDERS='["TensorrtExecutionProvider","CUDAExecutionProvider",
    # "CPUExecutionProvider"]' with `pip install preread[gpu]` (see inference.providers).
    gpu_device_id: int = Field(
        default=0,
        ge=0,
        description="the GPU (ONNX Runtime device_id) among those this process sees; "
        "`preread worker --gpu N` sets CUDA_VISIBLE_DEVICES=N, so 0 is GPU N",
    )
    tensorrt_fp16: bool = Field(default=True, description="let TensorRT use fp16 kernels")
    tensorrt_cache_dir: Path | None = Field(
        default=None,
        description="TensorRT engine and timing caches; unset = <data_dir>/tensorrt",
    )
    cudnn_conv_algo_search: Literal["EXHAUSTIVE", "HEURISTIC", "DEFAULT"] = Field(
        default="EXHAUSTIVE", description="the CUDA provider's cuDNN convolution algorithm search"
    )
    device_window: Literal["auto", "on", "off"] = Field(
        default="auto",
        description="blend and threshold the sliding window on the model's device: auto = "
        "when it runs on CUDA/TensorRT; on = also on the CPU; off = on the host (numpy)",
    )

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

    # --- priors: the hospital's PACS, asked for the patient's earlier CTs (preread.followup) ----
    priors_peer: str | None = Field(
        default=None,
        description="the PACS holding the patients' earlier CTs, for the comparison with priors; "
        "unset: not compared. Private Orthanc: AET@host:port (added to its DicomModalities; the "
        "PACS must allow PREREAD_ORTHANC_AET C-FIND and C-MOVE, as a move destination); with "
        "PREREAD_ORTHANC_URL: the name of a modality configured in that Orthanc",
    )
    priors_timeout_s: float = Field(
        default=120.0,
        gt=0,
        description="bound on retrieving one prior study (C-MOVE); more than "
        "PREREAD_PRIORS_DICOM_TIMEOUT_S",
    )
    priors_dicom_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="bound on each C-FIND to the PACS: a PACS that is down fails after about "
        "this long (the study is still read, its comparison marked unavailable)",
    )

    comparison_retry_s: float = Field(
        default=900.0,
        gt=0,
        description="a study read while its priors could not be had (comparison unavailable) is "
        "read again by the reconcile sweep after this long, doubling at each try",
    )
    comparison_retries: int = Field(
        default=5,
        ge=0,
        description="how many times a study whose comparison was unavailable is read again "
        "(0: never; with the defaults the last try is about 8 h after the first reading)",
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
    lease_s: float = Field(
        default=30.0,
        gt=0,
        description="a job's lease, renewed every third of it while the job runs: a killed "
        "worker's job is free again (and read by the next worker, or the restarted serve) at "
        "most this long after",
    )
    job_max_attempts: int = Field(default=3, ge=1)
    job_timeout_s: float = Field(
        default=3600.0,
        gt=0,
        description="a worker stops renewing the lease of a job still running after this long "
        "(hung): it is re-queued one lease later, within the attempt limit",
    )
    shutdown_grace_s: float = Field(
        default=20.0,
        ge=0,
        description="on SIGTERM/SIGINT, how long serve and worker let a running job finish "
        "before releasing its lease (another worker takes it at once); keep it below the "
        "orchestrator's stop timeout",
    )
    broker_url: str = Field(
        default="",
        description="Celery broker for scale-out workers (redis://… or amqp://…); unset: "
        "in-process workers only",
    )
    queue: str = Field(
        default="preread.jobs",
        min_length=1,
        description="Celery queue the watcher sends jobs to and workers consume (one per "
        "deployment sharing a broker)",
    )
    # --- untrusted input: what one series may be (checked on headers, before decoding) --------
    max_series_slices: int = Field(
        default=2000, ge=1, description="slices (instances and frames) of one series"
    )
    max_series_bytes: int = Field(
        default=2 * 1024**3, ge=1, description="decoded stored pixel data of one series, bytes"
    )
    max_model_grid_voxels: int = Field(
        default=MAX_GRID_VOXELS,
        ge=1_000_000,
        description="voxels of one series on the model's grid (its spacing, e.g. 1 mm): a series "
        "whose extent would make more is refused before it is resampled (a chest CT is about "
        "100 million)",
    )

    # --- what a reading writes into the study (preread.outputs) ---------------------------------
    outputs: Annotated[list[Output], NoDecode] = Field(
        default_factory=lambda: list(Output),
        description="DICOM objects written into the study after each reading, a JSON list or "
        "comma-separated: SR, SEG (always), SC (a key image per finding), KOS (key object "
        "selection); one list: write-back has one destination, the study in Orthanc",
    )

    # --- Lung-RADS v2022 for screening exams (preread.followup.screening) -----------------------
    lung_rads: str = Field(
        default="off",
        description="which studies get a Lung-RADS v2022 category: off, all, or a "
        "comma-separated list of aet:TITLE (sending AE titles) and code:VALUE (procedure "
        "codes) naming the screening exams; other studies get the measurements only",
    )

    # --- tenants: every study belongs to the tenant of the AE title that sent it ----------------
    tenants: dict[str, str] = Field(
        default={},
        description='sending AE title -> tenant, JSON: {"HOSP_A_CT": "hospital-a", ...}',
    )
    default_tenant: str | None = Field(
        default="default",
        description="tenant of studies whose sender is not in PREREAD_TENANTS; empty = none "
        "(such studies are not read: their jobs end not_applicable, no client sees them)",
    )

    # --- final reports: the hospital's reports compared with the AI (preread.finalreports) ------
    mllp_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="`preread serve` listens for HL7 v2 ORU^R01 final reports over MLLP on this "
        "port; unset = no listener",
    )
    mllp_host: str = Field(default="127.0.0.1", description="the MLLP listener's address")
    mllp_senders: dict[str, str] = Field(
        default={},
        description="sending facility (MSH-4, its first component) -> tenant, JSON: "
        '{"HOSP_A_RIS": "hospital-a"}; MLLP has no authentication: other senders are refused',
    )
    mllp_accession_field: Literal["OBR-18", "OBR-3"] = Field(
        default="OBR-18",
        description="where the hospital's ORU^R01 carries the accession number: OBR-18 "
        "(placer field 1, as IHE and PreRead's own ORU) or OBR-3 (filler order number)",
    )
    mllp_timeout_s: float = Field(
        default=10.0, gt=0, description="an MLLP connection idle this long is closed"
    )

    # --- the API: OAuth2 client credentials, JWT access tokens, limits ---------------------------
    keys_dir: Path | None = Field(
        default=None,
        description="token signing keys (PEM, one file per key id); unset = <data_dir>/keys",
    )
    token_issuer: str = Field(default="preread", description="the JWTs' iss claim")
    token_audience: str = Field(default="preread-api", description="the JWTs' aud claim")
    token_ttl_s: int = Field(default=300, ge=30, le=3600, description="access token lifetime")
    rate_limit_per_minute: int = Field(
        default=600, ge=1, description="default requests per minute of a new API client"
    )
    max_request_bytes: int = Field(
        default=1_000_000,
        ge=1024,
        description="largest request body, however it is sent (Content-Length or chunked): 413",
    )
    max_header_bytes: int = Field(
        default=32_768,
        ge=4096,
        le=1_048_576,
        description="largest request line and headers together: 431 beyond (the server's limit)",
    )
    unauthenticated_per_minute: int = Field(
        default=60,
        ge=1,
        description="requests without a valid token per source address: a burst of that many, "
        "refilled over a minute, then 429 (clients with a token have their own limit)",
    )
    forwarded_allow_networks: list[IPvAnyNetwork] = Field(
        default_factory=lambda: [ip_network("127.0.0.1/32"), ip_network("::1/128")],
        description="reverse proxies whose X-Forwarded-For / X-Forwarded-Proto the API trusts, "
        'JSON CIDRs: ["10.0.5.0/29"]; a request from any other address is that address (per-source '
        "limits, the audit trail's source); [] trusts no proxy",
    )
    report_cache_size: int = Field(
        default=1024, ge=0, description="rendered reports kept in memory (0: render each time)"
    )

    # --- people in the browser (preread.ui): sessions, sign-in throttling -----------------------
    session_idle_timeout_s: int = Field(
        default=1800,
        ge=60,
        description="a browser session ends after this long without a request (30 min)",
    )
    session_lifetime_s: int = Field(
        default=43_200,
        ge=300,
        description="a browser session ends this long after sign-in however active (12 h)",
    )
    session_cookie_secure: bool = Field(
        default=False,
        description="always mark the session cookie Secure; else it is Secure when the request "
        "came over https (behind a TLS proxy: PREREAD_FORWARDED_ALLOW_NETWORKS)",
    )
    login_failures_per_account: int = Field(
        default=10,
        ge=1,
        description="failed sign-ins to one account from one source address per 10 minutes "
        "before that pair is answered 429 (the account from elsewhere is never refused)",
    )
    login_failures_per_source: int = Field(
        default=100,
        ge=1,
        description="failed sign-ins from one source address (any accounts) per 10 minutes "
        "before it is answered 429 (a hospital's NAT puts many people on one address)",
    )
    ui_volume_cache_mb: int = Field(
        default=1024,
        ge=0,
        description="series the review page shows kept in memory per process, MB in all (a "
        "thin-slice chest CT is 150-300 MB; 0: fetch from Orthanc for every picture)",
    )
    ui_volume_cache_ttl_s: int = Field(
        default=300,
        ge=1,
        description="a series kept for the review page is dropped after this long unused",
    )

    # --- the hospital's identity provider: OpenID Connect sign-in (preread.oidc) ---------------
    oidc_issuer: str | None = Field(
        default=None,
        description="the OpenID provider's issuer URL (https; its discovery document is "
        "<issuer>/.well-known/openid-configuration); unset = no OpenID Connect sign-in",
    )
    oidc_client_id: str = Field(default="", description="PreRead's client id at the provider")
    oidc_client_secret: SecretStr | None = Field(
        default=None,
        description="PreRead's client secret (or PREREAD_OIDC_CLIENT_SECRET_FILE); unset = a "
        "public client (PKCE only)",
    )
    oidc_scopes: Annotated[list[str], NoDecode] = Field(
        default=["openid", "profile", "email"],
        description="scopes asked for, space- or comma-separated or a JSON list (openid always)",
    )
    oidc_provider_name: str = Field(
        default="",
        description="the name on the sign-in page's button (Sign in with …); unset = the "
        "issuer's host name",
    )
    oidc_redirect_uri: str | None = Field(
        default=None,
        description="the callback URL registered at the provider; unset = <this site>/ui/oidc/"
        "callback as the request reached PreRead (behind a proxy: "
        "PREREAD_FORWARDED_ALLOW_NETWORKS)",
    )
    oidc_tenant: str | None = Field(
        default=None,
        description="the tenant of everyone who signs in through the provider (set this or "
        "PREREAD_OIDC_TENANT_CLAIM)",
    )
    oidc_tenant_claim: str = Field(
        default="",
        description="the ID token claim that names the person's tenant (a dotted path for a "
        "nested claim); its value is the tenant, or is looked up in PREREAD_OIDC_TENANTS",
    )
    oidc_tenants: dict[str, str] = Field(
        default={}, description='tenant claim value -> tenant, JSON: {"St Mary": "st-mary"}'
    )
    oidc_role_claim: str = Field(
        default="",
        description="the ID token claim holding the person's groups or roles (a string or a "
        "list; a dotted path for a nested claim, e.g. realm_access.roles)",
    )
    oidc_roles: dict[str, str] = Field(
        default={},
        description='role claim value -> PreRead role, JSON: {"pacs-radiologists": '
        '"radiologist", "pacs-admins": "admin"}; no value mapped = sign-in refused',
    )
    oidc_username_claim: str = Field(
        default="preferred_username",
        description="the claim a new account's username is made from (the account is found by "
        "issuer and subject afterwards, never by this claim)",
    )
    oidc_timeout_s: float = Field(
        default=10.0, gt=0, description="timeout of each request to the identity provider"
    )

    # --- webhooks (preread.webhooks) -----------------------------------------------------
    webhook_timeout_s: float = Field(default=10.0, gt=0)
    webhook_interval_s: float = Field(default=2.0, gt=0, description="outbox poll interval")
    webhook_allowed_networks: list[IPvAnyNetwork] = Field(
        default=[],
        description="networks webhooks may reach although not public, JSON CIDRs: "
        '["10.20.0.0/16"] (e.g. the integration engine); loopback, private, link-local and '
        "other non-global addresses are refused otherwise (preread.webhooks.addresses)",
    )
    webhook_proxy: SecretStr | None = Field(
        default=None,
        description="an HTTP proxy every webhook delivery goes through, http://[user:password@]"
        "host:port: CONNECT to the checked address and port (the proxy resolves no name; TLS "
        "runs inside the tunnel, checked against the webhook's host name)",
    )
    webhook_https_only: bool = Field(
        default=False, description="refuse webhook URLs that are not https"
    )

    # --- the OHIF Viewer at /viewer/ (preread.api.viewer; ./run setup installs it) ---------------
    viewer: bool = Field(
        default=True,
        description="serve the OHIF Viewer at /viewer/ (data: PreRead's DICOMweb at /dicomweb); "
        "off: no /viewer routes; on without the build installed: the app refuses to start",
    )
    viewer_dir: Path | None = Field(
        default=None,
        description="OHIF's ready build (the dist/ folder of @ohif/app); unset = "
        "web/ohif/node_modules/@ohif/app/dist of this checkout, where ./run setup puts it",
    )

    # --- authorized data use: audit retention, de-identification secrets ------------------------
    audit_retention_days: int = Field(
        default=180,
        ge=180,
        description="audit records kept at least this long (PRC Cybersecurity Law: >= 6 months)",
    )
    audit_checkpoint_file: Path | None = Field(
        default=None,
        description="signed audit checkpoints, JSON lines appended by `preread audit checkpoint`;"
        " keep it where the database's administrators cannot rewrite it;"
        " unset = <data_dir>/audit-checkpoints.jsonl",
    )
    audit_checkpoint_interval_s: float = Field(
        default=3600.0,
        ge=0.0,
        description="how often the service (or the leader of `preread watch`) verifies the audit"
        " trail and signs its head into the checkpoint file, when it moved; 0 = only by hand"
        " (`preread audit checkpoint`)",
    )
    audit_checkpoint_key_file: Path | None = Field(
        default=None,
        description="HMAC-SHA256 key of the audit checkpoints (>= 32 bytes; created 0600 by the"
        " first checkpoint); never beside the database; unset = <data_dir>/secrets",
    )
    deid_key_file: Path | None = Field(
        default=None, description="de-identification secret (32 bytes); unset = <data_dir>/secrets"
    )
    reid_vault: Path | None = Field(
        default=None, description="encrypted re-identification map; unset = <data_dir>/secrets"
    )
    reid_vault_key_file: Path | None = Field(
        default=None, description="the vault's key (keep it apart from the vault)"
    )
    datasets_dir: Path | None = Field(
        default=None,
        description="de-identified training datasets built from reviews; "
        "unset = <data_dir>/datasets",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Arguments first, then ``PREREAD_*`` variables, then ``PREREAD_<NAME>_FILE``."""
        return (
            init_settings,
            env_settings,
            FileVariables(settings_cls),
            dotenv_settings,
            file_secret_settings,
        )

    @field_validator("webhook_proxy")
    @classmethod
    def _webhook_proxy(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            from preread.webhooks.tunnel import ConnectTunnel

            ConnectTunnel(value.get_secret_value())  # ProxyUrlError (a ValueError) if unusable
        return value

    @field_validator("outputs", mode="before")
    @classmethod
    def _outputs(cls, value: object) -> list[Output]:
        return parse_outputs(value)

    @field_validator("lung_rads")
    @classmethod
    def _lung_rads(cls, value: str) -> str:
        from preread.followup.screening import LungRadsPolicy

        LungRadsPolicy.parse(value)  # a bad value stops the process at start, naming it
        return value

    @field_validator("priors_peer", mode="before")
    @classmethod
    def _priors_peer(cls, value: object, info: ValidationInfo) -> object:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        if not isinstance(value, str):
            raise ValueError("PREREAD_PRIORS_PEER must be a string")
        text = value.strip()
        if info.data.get("orthanc_url"):
            if not _MODALITY_NAME.fullmatch(text):
                raise ValueError(
                    f"PREREAD_PRIORS_PEER={text!r}: with PREREAD_ORTHANC_URL it is the name of a "
                    "DICOM modality configured in that Orthanc (letters, digits, - _ .), "
                    "not AET@host:port"
                )
            return text
        parse_peer_address(text)  # a bad value stops the process at start, naming it
        return text

    @field_validator("priors_dicom_timeout_s")
    @classmethod
    def _priors_timeouts(cls, value: float, info: ValidationInfo) -> float:
        timeout = info.data.get("priors_timeout_s")
        if isinstance(timeout, float | int) and value >= timeout:
            raise ValueError(
                f"PREREAD_PRIORS_DICOM_TIMEOUT_S ({value}) must be less than "
                f"PREREAD_PRIORS_TIMEOUT_S ({timeout})"
            )
        return value

    @field_validator("oidc_scopes", mode="before")
    @classmethod
    def _scopes(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            return json.loads(text) if text.startswith("[") else text.replace(",", " ").split()
        return value

    @field_validator("default_tenant", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @property
    def viewer_path(self) -> Path:
        return self.viewer_dir if self.viewer_dir is not None else _REPO_OHIF

    @property
    def signing_keys_dir(self) -> Path:
        return self.keys_dir if self.keys_dir is not None else self.data_dir / "keys"

    @property
    def audit_checkpoint_path(self) -> Path:
        return self.audit_checkpoint_file or self.data_dir / "audit-checkpoints.jsonl"

    @property
    def audit_checkpoint_key_path(self) -> Path:
        return self.audit_checkpoint_key_file or self.data_dir / "secrets" / "audit-checkpoint.key"

    @property
    def deid_key_path(self) -> Path:
        return self.deid_key_file or self.data_dir / "secrets" / "deid.key"

    @property
    def reid_vault_path(self) -> Path:
        return self.reid_vault or self.data_dir / "secrets" / "reid-vault.sqlite"

    @property
    def reid_vault_key_path(self) -> Path:
        return self.reid_vault_key_file or self.data_dir / "secrets" / "reid-vault.key"

    @property
    def datasets_path(self) -> Path:
        return self.datasets_dir or self.data_dir / "datasets"

    def series_limits(self) -> SeriesLimits:
        """What one series may be (``max_series_*``), for volume assembly."""
        from dicom_gateway.checks import SeriesLimits

        return SeriesLimits(
            max_slices=self.max_series_slices, max_pixel_bytes=self.max_series_bytes
        )

    def lung_rads_policy(self) -> LungRadsPolicy:
        """``PREREAD_LUNG_RADS`` parsed: which studies are screening exams."""
        from preread.followup.screening import LungRadsPolicy

        return LungRadsPolicy.parse(self.lung_rads)

    def priors_peer_address(self) -> tuple[str, str, int] | None:
        """``PREREAD_PRIORS_PEER`` as (AE title, host, port) for the private Orthanc; None
        when unset or when it names a modality of ``PREREAD_ORTHANC_URL``'s Orthanc."""
        if self.priors_peer is None or self.orthanc_url:
            return None
        return parse_peer_address(self.priors_peer)

    def tenant_of(self, sender_aet: str) -> str | None:
        """The tenant a study sent by ``sender_aet`` belongs to (None: no tenant)."""
        return self.tenants.get(sender_aet.strip(), self.default_tenant)


#: A DICOM modality's name in an Orthanc's configuration, as PreRead accepts it
_MODALITY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_PEER_ADDRESS = re.compile(
    r"(?P<aet>[^@]{1,16})@(?P<host>[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]):(?P<port>\d{1,5})"
)


def parse_peer_address(value: str) -> tuple[str, str, int]:
    """``AET@host:port`` (PREREAD_PRIORS_PEER for the private Orthanc) as its three parts.

    Raises:
        ValueError: naming the setting, for anything else (an AE title of 1 to 16 characters
            without a backslash or control characters, PS3.5 6.2; a port 1..65535).
    """
    match = _PEER_ADDRESS.fullmatch(value.strip())
    aet = match.group("aet").strip() if match else ""
    port = int(match.group("port")) if match else 0
    if (
        match is None
        or not aet
        or "\\" in aet
        or any(not ch.isprintable() for ch in aet)
        or not 1 <= port <= 65535
    ):
        raise ValueError(
            f"PREREAD_PRIORS_PEER={value!r} is not AET@host:port (the PACS's AE title of 1 to 16 "
            "characters, its host name or IP address, its DICOM port), e.g. PACS@10.0.0.5:104"
        )
    return aet, match.group("host").strip("[]"), port
