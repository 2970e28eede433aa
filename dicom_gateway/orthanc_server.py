"""A private Orthanc (the Debian package's ``/usr/sbin/Orthanc``) with a hardened configuration.

:func:`render_config` is a pure function from :class:`OrthancConfig` to Orthanc's JSON
configuration; :class:`OrthancServer` picks free ports, writes that file (mode 0600) into a
private folder, starts Orthanc with ``TCP_NODELAY=1`` (DCMTK then disables Nagle on DICOM
sockets: C-STORE is 4–11× faster here) and waits until ``GET /system`` answers.

What the configuration does (Orthanc 1.10.1, DICOMweb plugin 1.7):

* HTTP: ``RemoteAccessAllowed: false`` (civetweb answers only requests from 127.0.0.1/::1) and
  ``AuthenticationEnabled: true`` with one ``RegisteredUsers`` entry (HTTP Basic; the password
  is random unless given, and only the 0600 file holds it). No gzip
  (``HttpCompressionEnabled: false``: Orthanc would compress every DICOM file), no Lua over REST
  (``ExecuteLuaEnabled: false``), no ``/tools/.../to-file`` writes
  (``RestApiWriteToFileSystemEnabled: false``), no Orthanc Explorer and no WebDAV unless asked,
  ``HttpsVerifyPeers: true`` for any outgoing HTTPS, ``DeidentifyLogs: true``.
* DICOM: nobody may store by default (``DicomAlwaysAllowStore: false``); each sending peer is
  listed in ``DicomModalities`` with ``AllowStore`` (echo allowed, get/worklist/storage
  commitment refused, find/move refused unless :class:`DicomPeer` allows them), and both its
  AE title and its host must match (``DicomCheckModalityHost: true``); a peer must call our AE
  title (``DicomCheckCalledAet``). All ``DicomAlwaysAllow*`` are false. Unknown SOP classes are
  refused. ``DicomScuTimeout`` bounds how long our Orthanc waits on a peer it queries or asks
  to move (:attr:`OrthancConfig.dicom_scu_timeout_s`, 10 s: a PACS that is down fails in
  seconds, not minutes).
* ``StableAge`` as configured (small in tests; a StableStudy change then follows the last
  instance by about that many seconds). ``OverwriteInstances: false``.
* DICOMweb plugin: ``{"Enable": true, "Root": "/dicom-web/", "EnableWado": false}`` (WADO-RS,
  QIDO-RS and STOW-RS on; the legacy WADO-URI endpoint off).

What Orthanc 1.10 cannot do (checked against ``Orthanc --config=FILE`` and the binary):

* **bind to one interface**: there is no ``HttpBindAddress``/``DicomBindAddress``; both ports
  listen on all interfaces. ``RemoteAccessAllowed: false`` refuses remote HTTP requests but the
  DICOM port is open to the network: the AE title + host allow-list above is the only guard,
  so keep the machine's firewall / a network boundary in front (``deploy/``).
* **``MaximumStorageMode: "Reject"``** arrived in Orthanc 1.11.2. In 1.10 a
  ``MaximumStorageSize``/``MaximumPatientCount`` limit silently *recycles* (deletes) the oldest
  patients, which could delete studies not yet read, so no limit is set (both 0): watch the
  disk instead.
"""

from __future__ import annotations

import ctypes
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from dicom_gateway.client import OrthancClient
from dicom_gateway.errors import OrthancStartError

__all__ = [
    "DICOMWEB_PLUGIN",
    "ORTHANC_BINARY",
    "DicomPeer",
    "OrthancConfig",
    "OrthancServer",
    "free_port",
    "render_config",
]

ORTHANC_BINARY = Path("/usr/sbin/Orthanc")
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
_LOG_TAIL_LINES = 30


@dataclass(frozen=True)
class DicomPeer:
    """A DICOM node allowed to talk to our Orthanc (an entry of ``DicomModalities``).

    ``port`` is where the peer listens (used when Orthanc forwards results to it, and when
    Orthanc queries it or asks it to move studies: ``/modalities/{name}/query``, ``.../move``;
    Orthanc may do that with any listed peer, whatever the flags below say).

    The ``allow_*`` flags say what the peer may ask *of our* Orthanc (SCP side):
    ``allow_find`` lets it C-FIND our studies, ``allow_move`` lets it C-MOVE them to a
    destination that is itself listed in ``DicomModalities``. Both default to False: only a
    PACS-like Orthanc (e.g. the hospital PACS in tests) turns them on, for the node that
    retrieves priors from it.
    """

    name: str
    aet: str
    host: str
    port: int
    allow_store: bool = True
    allow_echo: bool = True
    allow_find: bool = False
    allow_move: bool = False


@dataclass(frozen=True)
class OrthancConfig:
    """What PreRead decides about its Orthanc; :func:`render_config` does the rest.

    ``http_port``/``dicom_port`` 0 and ``password`` "" mean "choose for me"
    (:class:`OrthancServer` picks free loopback ports and a random password).
    """

    storage_dir: Path
    http_port: int = 0
    dicom_port: int = 0
    aet: str = "PREREAD"
    username: str = "preread"
    password: str = field(default="", repr=False)
    stable_age_s: int = 60
    dicom_modalities: tuple[DicomPeer, ...] = ()
    plugins: tuple[Path, ...] = (DICOMWEB_PLUGIN,)
    name: str = "PreRead"
    explorer: bool = False
    dicom_scu_timeout_s: int = 10
    """``DicomScuTimeout``: how long Orthanc, as a DICOM client (C-FIND/C-MOVE/C-STORE to a
    peer), waits to connect and for each answer. 10 s is Orthanc's own default; a request may
    set its own (``"Timeout"`` in the body of ``/modalities/{name}/query`` or ``.../move``)."""


def render_config(cfg: OrthancConfig) -> dict[str, Any]:
    """Orthanc's configuration for ``cfg`` (see the module docstring for each choice).

    Raises:
        ValueError: a port is 0, the password is empty, an AE title is not 1–16 characters, or
            the DICOM client timeout is under 1 s.
    """
    if cfg.http_port <= 0 or cfg.dicom_port <= 0:
        raise ValueError("choose the HTTP and DICOM ports before rendering the configuration")
    if not cfg.password:
        raise ValueError("an Orthanc user needs a password")
    if cfg.dicom_scu_timeout_s < 1:
        raise ValueError("DicomScuTimeout must be at least 1 s (0 would mean: wait forever)")
    for aet in (cfg.aet, *(peer.aet for peer in cfg.dicom_modalities)):
        if not 1 <= len(aet) <= 16:
            raise ValueError(f"AE title {aet!r} must have 1 to 16 characters (PS3.5 6.2)")
    storage = str(Path(cfg.storage_dir).resolve())
    return {
        "Name": cfg.name,
        "StorageDirectory": storage,
        "IndexDirectory": storage,
        "TemporaryDirectory": str(Path(storage) / "tmp"),
        "StorageCompression": False,
        "MaximumStorageSize": 0,
        "MaximumPatientCount": 0,
        "OverwriteInstances": False,
        "StableAge": cfg.stable_age_s,
        "Plugins": [str(p) for p in cfg.plugins],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": False},
        # HTTP
        "HttpServerEnabled": True,
        "HttpPort": cfg.http_port,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": True,
        "RegisteredUsers": {cfg.username: cfg.password},
        "SslEnabled": False,
        "HttpCompressionEnabled": False,
        "HttpDescribeErrors": True,
        "KeepAlive": True,
        "TcpNoDelay": True,
        "ExecuteLuaEnabled": False,
        "LuaScripts": [],
        "RestApiWriteToFileSystemEnabled": False,
        "OrthancExplorerEnabled": cfg.explorer,
        "WebDavEnabled": False,
        "HttpsVerifyPeers": True,
        "DeidentifyLogs": True,
        "OrthancPeers": {},
        # DICOM
        "DicomServerEnabled": True,
        "DicomAet": cfg.aet,
        "DicomPort": cfg.dicom_port,
        "DicomCheckCalledAet": True,
        "DicomCheckModalityHost": True,
        "DicomScuTimeout": cfg.dicom_scu_timeout_s,
        "DicomAlwaysAllowEcho": False,
        "DicomAlwaysAllowStore": False,
        "DicomAlwaysAllowFind": False,
        "DicomAlwaysAllowFindWorklist": False,
        "DicomAlwaysAllowGet": False,
        "DicomAlwaysAllowMove": False,
        "UnknownSopClassAccepted": False,
        "DicomModalitiesInDatabase": False,
        "DicomModalities": {
            peer.name: {
                "AET": peer.aet,
                "Host": peer.host,
                "Port": peer.port,
                "AllowStore": peer.allow_store,
                "AllowEcho": peer.allow_echo,
                "AllowFind": peer.allow_find,
                "AllowFindWorklist": False,
                "AllowGet": False,
                "AllowMove": peer.allow_move,
                "AllowStorageCommitment": False,
            }
            for peer in cfg.dicom_modalities
        },
        "LimitFindResults": 100,
        "LimitFindInstances": 100,
    }


def pacs_config(
    storage_dir: Path, dicom_port: int, *, aet: str, preread_aet: str, preread_port: int
) -> OrthancConfig:
    """An Orthanc playing a hospital PACS (the demo's, the tests'): it lists PreRead's Orthanc
    (``preread_aet`` on 127.0.0.1:``preread_port``) as a node that may C-FIND its studies and
    C-MOVE them to itself, and that may not store into it."""
    return OrthancConfig(
        storage_dir=storage_dir,
        dicom_port=dicom_port,
        aet=aet,
        name="HospitalPACS",
        dicom_modalities=(
            DicomPeer(
                "preread",
                preread_aet,
                "127.0.0.1",
                preread_port,
                allow_store=False,
                allow_find=True,
                allow_move=True,
            ),
        ),
    )


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago (bind to port 0, then release)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _parent_death_signal() -> Callable[[], None] | None:
    """What the child runs before ``exec``: ``prctl(PR_SET_PDEATHSIG, SIGTERM)`` (Linux), so
    the kernel sends it SIGTERM when the thread that forked it ends. ``None`` elsewhere.

    The C function is looked up here, before the fork; the child only calls it.
    """
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    pr_set_pdeathsig = 1  # <linux/prctl.h>

    def set_signal() -> None:
        prctl(pr_set_pdeathsig, signal.SIGTERM)

    return set_signal


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to a file only its owner can read (created 0600, never wider)."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


class OrthancServer:
    """A private Orthanc process; use as a context manager (or :meth:`start` / :meth:`stop`).

    Args:
        config: what to run; ports 0 and an empty password are chosen at :meth:`start`.
        work_dir: where the configuration and ``orthanc.log`` go (default: a new 0700
            temporary folder, removed by :meth:`stop`).
        work_root: where that temporary folder is made (default: the system's temporary
            folder).
        binary: the Orthanc executable.
        start_timeout_s: how long to wait for ``GET /system``.
        die_with_parent: Linux only: Orthanc gets SIGTERM when the thread that started it
            ends, e.g. when this process is killed with SIGKILL and can clean nothing up (no
            orphaned Orthanc keeps serving, or holding its storage, for the next start). Start
            it from a thread that lives as long as the server should: the main thread.

    Raises (from :meth:`start`):
        OrthancStartError: the binary is missing, Orthanc exited, or it did not answer in
            time; the message ends with the tail of Orthanc's log (never the password).
    """

    def __init__(
        self,
        config: OrthancConfig,
        *,
        work_dir: Path | None = None,
        work_root: Path | None = None,
        binary: Path = ORTHANC_BINARY,
        start_timeout_s: float = 30.0,
        die_with_parent: bool = False,
    ) -> None:
        self._requested = config
        self._die_with_parent = die_with_parent
        self.config = config
        self._work_dir = work_dir
        self._work_root = work_root
        self._own_work_dir = False
        self._binary = binary
        self._timeout = start_timeout_s
        self._process: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"OrthancServer({self.url if self.running else '-'}, aet={self.aet!r}, {state})"

    # -- what callers use ---------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.config.http_port}"

    @property
    def dicom_port(self) -> int:
        return self.config.dicom_port

    @property
    def aet(self) -> str:
        return self.config.aet

    @property
    def username(self) -> str:
        return self.config.username

    @property
    def password(self) -> str:
        return self.config.password

    @property
    def log_path(self) -> Path:
        if self._work_dir is None:
            raise RuntimeError("the server has not been started")
        return self._work_dir / "orthanc.log"

    def client(self, *, timeout: float = 60.0) -> OrthancClient:
        """A new :class:`OrthancClient` logged in as this server's user (close it after use)."""
        return OrthancClient(self.url, self.username, self.password, timeout=timeout)

    # -- life cycle ---------------------------------------------------------------------------

    def __enter__(self) -> OrthancServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Start Orthanc and wait until it answers; retried twice if a chosen port was taken."""
        if self.running:
            return
        if not self._binary.is_file():
            raise OrthancStartError(
                f"Orthanc is not installed at {self._binary} "
                "(Debian: apt-get install orthanc orthanc-dicomweb)"
            )
        for plugin in self._requested.plugins:
            if not plugin.is_file():
                raise OrthancStartError(
                    f"Orthanc plugin {plugin} is missing (Debian: apt-get install orthanc-dicomweb)"
                )
        if self._work_dir is None:
            self._work_dir = Path(tempfile.mkdtemp(prefix="preread-orthanc-", dir=self._work_root))
            self._own_work_dir = True
        storage = Path(self._requested.storage_dir)
        storage.mkdir(mode=0o700, parents=True, exist_ok=True)  # patient data: owner only
        (storage / "tmp").mkdir(mode=0o700, exist_ok=True)
        attempts = 1 if self._requested.http_port and self._requested.dicom_port else 3
        for attempt in range(attempts):
            try:
                self._launch()
                return
            except OrthancStartError:
                self.stop(remove_work_dir=False)
                if attempt + 1 == attempts:
                    self._cleanup()
                    raise

    def _launch(self) -> None:
        assert self._work_dir is not None
        wanted = self._requested
        self.config = replace(
            wanted,
            http_port=wanted.http_port or free_port(),
            dicom_port=wanted.dicom_port or free_port(),
            password=wanted.password or secrets.token_urlsafe(24),
        )
        config_path = self._work_dir / "orthanc.json"
        _write_private(config_path, json.dumps(render_config(self.config), indent=2))
        env = {**os.environ, "TCP_NODELAY": "1"}
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(
                [str(self._binary), str(config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self._work_dir,
                preexec_fn=_parent_death_signal() if self._die_with_parent else None,
            )
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self._timeout
        last = "no answer yet"
        auth = httpx.BasicAuth(self.username, self.password)
        with httpx.Client(auth=auth, headers={"Accept-Encoding": "identity"}) as http:
            while time.monotonic() < deadline:
                assert self._process is not None
                if self._process.poll() is not None:
                    raise OrthancStartError(
                        f"Orthanc exited with status {self._process.returncode} while starting"
                        f"{self._log_tail()}"
                    )
                try:
                    response = http.get(f"{self.url}/system", timeout=2.0)
                    if response.status_code == 200:
                        return
                    last = f"HTTP {response.status_code}"
                except httpx.HTTPError as exc:
                    last = type(exc).__name__
                time.sleep(0.05)
        raise OrthancStartError(
            f"Orthanc did not answer GET /system within {self._timeout:.0f} s ({last})"
            f"{self._log_tail()}"
        )

    def _log_tail(self) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()[-_LOG_TAIL_LINES:]
        except OSError:
            return ""
        text = "\n".join(lines)
        if self.config.password:
            text = text.replace(self.config.password, "********")
        return f"\n--- last lines of {self.log_path} ---\n{text}" if lines else ""

    def stop(self, *, remove_work_dir: bool = True, timeout_s: float = 15.0) -> None:
        """Terminate Orthanc (SIGTERM, then SIGKILL after ``timeout_s``) and wait for it."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if remove_work_dir:
            self._cleanup()

    def _cleanup(self) -> None:
        if self._own_work_dir and self._work_dir is not None:
            shutil.rmtree(self._work_dir, ignore_errors=True)
            self._work_dir = None
            self._own_work_dir = False
