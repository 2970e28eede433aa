"""Real PreRead scale-out processes and private brokers for the fault tests.

* :class:`Cluster` runs ``preread watch`` and ``preread worker`` as subprocesses of the real
  console script (``PREREAD_*`` environment, one log file each), and kills (SIGKILL), pauses
  (SIGSTOP) and restarts them by name.
* :class:`PrivateRedis` and :class:`PrivateRabbitMQ` start a broker of the test's own on free
  loopback ports, which a test may kill -9 and restart; the machine's shared brokers are never
  touched.
* :func:`ai_instances` counts a study's instances by modality through Orthanc's REST API (not
  through PreRead's own client), and :func:`problems` lists every study that does not end with
  exactly one current SR + SEG and one done job.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
from kombu.connection import Connection

from dicom_gateway.orthanc_server import OrthancServer, free_port
from preread.store import JobRecord, JobState, JobStore

PREREAD = Path(sys.executable).with_name("preread")  # the console script of this venv
IN_PROGRESS = (JobState.FETCHING, JobState.INFERRING, JobState.WRITING)
LOG_TAIL_LINES = 25


def wait_for(
    condition: Callable[[], bool], timeout_s: float, what: Callable[[], str], step_s: float = 0.1
) -> None:
    """Poll ``condition`` until true; after ``timeout_s`` fail with ``what()`` (the state)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s:.0f} s: {what()}")
        time.sleep(step_s)


# --- PreRead processes ------------------------------------------------------------------------


@dataclass
class Proc:
    name: str
    args: tuple[str, ...]
    log: Path
    popen: subprocess.Popen[bytes]
    starts: int = 1


@dataclass
class Cluster:
    """``preread`` subprocesses sharing one environment (``env`` adds to ``os.environ``)."""

    env: Mapping[str, str]
    log_dir: Path
    procs: dict[str, Proc] = field(default_factory=dict)
    events: list[str] = field(default_factory=list)  # what the test did, for failure messages
    _t0: float = field(default_factory=time.monotonic)

    def note(self, text: str) -> None:
        line = f"{time.monotonic() - self._t0:6.1f}s {text}"
        self.events.append(line)
        with (self.log_dir / "events.log").open("a") as out:
            out.write(line + "\n")

    def start(self, name: str, *args: str) -> Proc:
        """Start ``preread ARGS…`` as ``name`` (again, with the same arguments, if ``args`` is
        empty and ``name`` ran before)."""
        if not PREREAD.is_file():
            raise AssertionError(f"the preread console script is missing: {PREREAD}")
        old = self.procs.get(name)
        if old is not None and old.popen.poll() is None:
            raise AssertionError(f"{name} is still running (pid {old.popen.pid})")
        argv = args or (old.args if old else ())
        log = self.log_dir / f"{name}.log"
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("PREREAD_")}
        env = {**inherited, **self.env, "PYTHONUNBUFFERED": "1"}
        with log.open("ab") as out:
            out.write(f"\n===== start: preread {' '.join(argv)}\n".encode())
            out.flush()
            popen = subprocess.Popen(
                [str(PREREAD), *argv],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
            )
        proc = Proc(name, tuple(argv), log, popen, (old.starts + 1) if old else 1)
        self.procs[name] = proc
        self.note(f"started {name} (pid {popen.pid})")
        return proc

    def pid(self, name: str) -> int:
        return self.procs[name].popen.pid

    def alive(self, name: str) -> bool:
        return self.procs[name].popen.poll() is None

    def kill(self, name: str, why: str = "") -> None:
        """SIGKILL ``name`` and reap it."""
        proc = self.procs[name]
        if proc.popen.poll() is None:
            proc.popen.send_signal(signal.SIGKILL)
        proc.popen.wait(timeout=30)
        self.note(f"killed {name} (pid {proc.popen.pid}){': ' + why if why else ''}")

    def pause(self, name: str) -> None:
        self.procs[name].popen.send_signal(signal.SIGSTOP)
        self.note(f"paused {name}")

    def resume(self, name: str) -> None:
        self.procs[name].popen.send_signal(signal.SIGCONT)
        self.note(f"resumed {name}")

    def log_text(self, name: str) -> str:
        return self.procs[name].log.read_text(errors="replace")

    def wait_for_line(self, name: str, text: str, timeout_s: float = 60.0) -> None:
        """Wait until ``name``'s log has a line containing ``text`` (it must not exit first)."""

        def seen() -> bool:
            if text in self.log_text(name):
                return True
            if not self.alive(name):
                raise AssertionError(f"{name} exited before logging {text!r}\n{self.report()}")
            return False

        wait_for(seen, timeout_s, lambda: f"{name} never logged {text!r}\n{self.report()}")

    def close(self) -> None:
        """SIGTERM every process still running; SIGKILL those still there after 15 s."""
        running = [p for p in self.procs.values() if p.popen.poll() is None]
        for proc in running:
            with contextlib.suppress(ProcessLookupError):
                proc.popen.send_signal(signal.SIGCONT)  # a paused one must hear the SIGTERM
                proc.popen.terminate()
        deadline = time.monotonic() + 15.0
        for proc in running:
            try:
                proc.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.popen.kill()
                proc.popen.wait()

    def report(self) -> str:
        """What the test did and the last lines of every process's log."""
        parts = ["--- events ---", *self.events]
        for proc in self.procs.values():
            try:
                lines = proc.log.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
            except OSError:
                lines = []
            parts += [f"--- {proc.name} (last {len(lines)} lines of {proc.log}) ---", *lines]
        return "\n".join(parts)


# --- private brokers ----------------------------------------------------------------------------


def broker_reachable(url: str, timeout_s: float = 1.0) -> bool:
    try:
        with Connection(url, connect_timeout=timeout_s) as conn:  # type: ignore[no-untyped-call]
            conn.ensure_connection(max_retries=1)
    except Exception:
        return False
    return True


class PrivateRedis:
    """``redis-server`` on a free loopback port, without persistence: a restart loses every
    message, as a cache-only Redis does in production."""

    def __init__(self, work_dir: Path) -> None:
        if shutil.which("redis-server") is None:
            raise AssertionError("redis-server is not installed (Debian: redis-server)")
        self.work_dir = work_dir
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self, timeout_s: float = 20.0) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        log = self.work_dir / "redis.log"
        with log.open("ab") as out:
            self._process = subprocess.Popen(
                ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                 "--save", "", "--appendonly", "no", "--dir", str(self.work_dir)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        wait_for(
            lambda: broker_reachable(self.url),
            timeout_s,
            lambda: (
                f"private redis-server on port {self.port} did not answer; log:\n"
                + log.read_text(errors="replace")[-2000:]
            ),
        )

    def kill(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGKILL)
            self._process.wait(timeout=30)

    def close(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


RABBITMQ_SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")  # the Debian package's script


class PrivateRabbitMQ:
    """A RabbitMQ node of its own: node name, AMQP and distribution ports, database, logs,
    configuration and Erlang cookie (``HOME``) all under ``work_dir``; no plugins.

    The machine's ``/etc/rabbitmq`` files are not read (they name the shared node's port), and
    the wrapper ``/usr/sbin/rabbitmq-server`` is bypassed (it switches to the ``rabbitmq``
    user and logs to ``/var/log/rabbitmq``). The node registers with the machine's ``epmd``
    under its own name. Kill and restart keep the database (``mnesia``): durable queues and
    persistent messages survive a restart, as in production.
    """

    def __init__(self, work_dir: Path) -> None:
        if not RABBITMQ_SERVER.is_file():
            raise AssertionError(
                f"RabbitMQ is not installed ({RABBITMQ_SERVER}; Debian: rabbitmq-server)"
            )
        self.work_dir = work_dir
        self.port = free_port()
        self.dist_port = free_port()
        self.node = f"preread-test-{uuid.uuid4().hex[:8]}@localhost"
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}//"
        self._process: subprocess.Popen[bytes] | None = None

    def _env(self) -> dict[str, str]:
        w = self.work_dir
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))}
        env.update(
            HOME=str(w / "home"),  # the Erlang cookie of this node and its rabbitmqctl
            RABBITMQ_NODENAME=self.node,
            RABBITMQ_NODE_IP_ADDRESS="127.0.0.1",
            RABBITMQ_NODE_PORT=str(self.port),
            RABBITMQ_DIST_PORT=str(self.dist_port),
            RABBITMQ_CONFIG_FILE=str(w / "rabbitmq.conf"),
            RABBITMQ_ADVANCED_CONFIG_FILE=str(w / "advanced.config"),
            RABBITMQ_CONF_ENV_FILE=str(w / "rabbitmq-env.conf"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(w / "enabled_plugins"),
            RABBITMQ_MNESIA_BASE=str(w / "mnesia"),
            RABBITMQ_LOG_BASE=str(w / "log"),
            RABBITMQ_PID_FILE=str(w / "rabbitmq.pid"),
            ERL_EPMD_ADDRESS="127.0.0.1",
            RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}",
        )
        return env

    def start(self, timeout_s: float = 60.0) -> None:
        w = self.work_dir
        for sub in ("home", "mnesia", "log"):
            (w / sub).mkdir(parents=True, exist_ok=True)
        (w / "rabbitmq.conf").write_text(
            f"listeners.tcp.local = 127.0.0.1:{self.port}\n"
            "loopback_users.guest = true\n"
            "log.console = false\n"
        )
        (w / "rabbitmq-env.conf").write_text("")
        (w / "enabled_plugins").write_text("[].\n")
        out = (w / "server.log").open("ab")
        try:
            self._process = subprocess.Popen(
                [str(RABBITMQ_SERVER)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self._env(),
                cwd=w,
                start_new_session=True,  # its own process group: the script, beam, helpers
            )
        finally:
            out.close()
        process = self._process

        def up() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"the private RabbitMQ node exited:\n{self.log_tail()}")
            return broker_reachable(self.url)

        wait_for(up, timeout_s, lambda: f"private RabbitMQ not up:\n{self.log_tail()}", 0.25)

    def log_tail(self) -> str:
        texts = []
        for path in [self.work_dir / "server.log", *sorted((self.work_dir / "log").glob("*.log"))]:
            with contextlib.suppress(OSError):
                texts.append(f"--- {path} ---\n" + path.read_text(errors="replace")[-2000:])
        return "\n".join(texts)

    def kill(self) -> None:
        """SIGKILL the node's whole process group (its script, the Erlang VM, its helpers)."""
        process = self._process
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        deadline = time.monotonic() + 10
        while _group_alive(process.pid) and time.monotonic() < deadline:
            time.sleep(0.05)

    def close(self) -> None:
        self.kill()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


# --- what Orthanc and the store hold ------------------------------------------------------------


@dataclass(frozen=True)
class StudyInOrthanc:
    study_uid: str
    by_modality: Counter[str]  # instances per modality
    series_uids: dict[str, list[str]]  # modality -> SeriesInstanceUIDs


def ai_instances(orthanc: OrthancServer) -> dict[str, StudyInOrthanc]:
    """Every study in ``orthanc`` (by StudyInstanceUID): its instances counted by modality, from
    Orthanc's REST API (``/studies?expand``, ``/series?expand``)."""
    auth = httpx.BasicAuth(orthanc.username, orthanc.password)
    with httpx.Client(base_url=orthanc.url, auth=auth, timeout=30.0) as http:
        studies = _get(http, "/studies?expand")
        series = {s["ID"]: s for s in _get(http, "/series?expand")}
    out = {}
    for study in studies:
        counts: Counter[str] = Counter()
        uids: dict[str, list[str]] = {}
        for sid in study["Series"]:
            s = series.get(sid)
            if s is None:  # deleted between the two requests
                continue
            modality = s["MainDicomTags"].get("Modality", "")
            counts[modality] += len(s["Instances"])
            uids.setdefault(modality, []).append(s["MainDicomTags"]["SeriesInstanceUID"])
        uid = study["MainDicomTags"]["StudyInstanceUID"]
        out[uid] = StudyInOrthanc(uid, counts, uids)
    return out


def _get(http: httpx.Client, path: str) -> Any:
    response = http.get(path, headers={"Accept-Encoding": "identity"})
    response.raise_for_status()
    return response.json()


def study_problems(
    study_uid: str, seen: StudyInOrthanc | None, history: tuple[JobRecord, ...], *, jobs: int = 1
) -> list[str]:
    """What is wrong with one study at the end: not exactly one SR and one SEG instance, not
    ``jobs`` jobs in its history, the current job not done, or its outputs not those in Orthanc."""
    if seen is None:
        return [f"study {study_uid}: not in Orthanc"]
    sr, seg = seen.by_modality["SR"], seen.by_modality["SEG"]
    wrong = []
    if sr != 1 or seg != 1:
        wrong.append(f"{sr} SR and {seg} SEG instances (want 1 and 1)")
    states = [f"{j.state.value}(attempts {j.attempts})" for j in history]
    current = history[-1] if history else None
    if len(history) != jobs or current is None or current.state is not JobState.DONE:
        wrong.append(f"{len(history)} jobs {states}, oldest first (want {jobs}, the last done)")
    elif current.outputs.sr is not None and seen.series_uids.get("SR") != [
        current.outputs.sr.series_instance_uid
    ]:
        wrong.append(
            f"SR series {seen.series_uids.get('SR')} are not the done job's "
            f"{current.outputs.sr.series_instance_uid}"
        )
    return [f"study {study_uid}: {w}" for w in wrong]


def problems(
    orthanc: OrthancServer, store: JobStore, study_uids: Iterable[str], *, jobs: int = 1
) -> list[str]:
    """Every study's :func:`study_problems` (empty: each has one current SR + SEG, one done
    job per study and model)."""
    seen = ai_instances(orthanc)
    out: list[str] = []
    for uid in study_uids:
        out += study_problems(uid, seen.get(uid), store.history(uid), jobs=jobs)
    return out


def all_done(store: JobStore, study_uids: Iterable[str]) -> bool:
    """Whether every study's current job is done."""
    for uid in study_uids:
        jobs = store.current_for_study(uid)
        if not jobs or jobs[0].state is not JobState.DONE:
            return False
    return True


def state_summary(store: JobStore, study_uids: Iterable[str]) -> str:
    counts: Counter[str] = Counter()
    for uid in study_uids:
        jobs = store.current_for_study(uid)
        counts[jobs[0].state.value if jobs else "no job"] += 1
    return ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))


@contextlib.contextmanager
def running(cluster: Cluster) -> Iterator[Cluster]:
    """Close the cluster's processes however the block ends."""
    try:
        yield cluster
    finally:
        cluster.close()
