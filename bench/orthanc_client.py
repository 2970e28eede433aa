"""Fetch one CT series from a private Orthanc with each candidate client, side by side.

The series is a 512×512×200-slice phantom (``training.phantom_dicom``, ~100 MB), sent to a
private Orthanc 1.10 (:class:`~dicom_gateway.orthanc_server.OrthancServer`, DICOMweb plugin,
HTTP compression off) with DCMTK's ``storescu``. Each way of getting it back into pydicom
datasets runs ``--repeat`` times, round-robin (the machine is shared: interleaving spreads the
background load evenly); the table shows the median and each method's ratio to ours:

* ``ours``            :class:`~dicom_gateway.client.OrthancClient` WADO-RS + our multipart splitter
* ``dicomweb-client`` ``DICOMwebClient.retrieve_series`` (requests; its own multipart decoder)
* ``pyorthanc``       ``/series/{id}`` then ``/instances/{id}/file`` per instance (httpx)
* ``orthanc-api-client`` the same per-instance REST path (requests)
* ``archive zip``     ``GET /series/{id}/archive``, unzipped in memory

A second table times only the parsing of one WADO-RS body already in memory: our
:class:`~dicom_gateway.multipart.RelatedParser` fed in 64 KiB chunks (as the client feeds it
from the socket) vs the stdlib ``email`` parser. A third says what each client returns (type
safety). Optional clients that are not installed are skipped (``pip install dicomweb-client
pyorthanc orthanc-api-client``; none is a PreRead dependency).

Run: ``.venv/bin/python bench/orthanc_client.py [--slices 200 --repeat 3 --work DIR]``.
"""

from __future__ import annotations

import argparse
import email.parser
import email.policy
import importlib
import importlib.util
import io
import os
import shutil
import statistics
import subprocess
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pydicom
from pydicom.dataset import Dataset

from dicom_gateway.client import OrthancClient
from dicom_gateway.multipart import RelatedParser, boundary_of
from dicom_gateway.orthanc_server import DicomPeer, OrthancConfig, OrthancServer
from dicom_gateway.source import orthanc_id
from dicom_gateway.volume import assemble_volume, read_series_dir
from preread.domain import Volume
from training.phantom_dicom import StudyFiles, write_phantoms

Fetch = Callable[[], list[Dataset]]


def _optional(module: str) -> Any | None:
    """Import an optional client, or ``None`` when it is not installed."""
    if importlib.util.find_spec(module) is None:
        return None
    return importlib.import_module(module)


def _read(parts: list[bytes]) -> list[Dataset]:
    return [pydicom.dcmread(io.BytesIO(p)) for p in parts]


def fetchers(
    server: OrthancServer, study_uid: str, series_uid: str, series_id: str
) -> dict[str, Fetch]:
    """Every way to fetch the series, each returning pydicom datasets."""
    ours = server.client()
    auth = (server.username, server.password)
    identity = {"Accept-Encoding": "identity"}
    http = httpx.Client(base_url=server.url, auth=auth, headers=identity, timeout=120)

    def archive() -> list[Dataset]:
        body = http.get(f"/series/{series_id}/archive").raise_for_status().content
        with zipfile.ZipFile(io.BytesIO(body)) as zipped:
            names = [n for n in zipped.namelist() if not n.endswith("/")]
            return _read([zipped.read(n) for n in names])

    ways: dict[str, Fetch] = {
        "ours (httpx, WADO-RS)": lambda: ours.series_datasets(study_uid, series_uid),
    }
    dicomweb = _optional("dicomweb_client")
    if dicomweb is not None:
        session_utils = importlib.import_module("dicomweb_client.session_utils")
        session = session_utils.create_session_from_user_pass(*auth)
        session.headers.update(identity)
        web = dicomweb.DICOMwebClient(url=f"{server.url}/dicom-web", session=session)
        ways["dicomweb-client (WADO-RS)"] = lambda: web.retrieve_series(study_uid, series_uid)
    pyorthanc = _optional("pyorthanc")
    if pyorthanc is not None:
        porthanc = pyorthanc.Orthanc(server.url, *auth, headers=identity, timeout=120)

        def with_pyorthanc() -> list[Dataset]:
            ids = porthanc.get_series_id(series_id)["Instances"]
            return _read([porthanc.get_instances_id_file(i) for i in ids])

        ways["pyorthanc (REST per instance)"] = with_pyorthanc
    api_client = _optional("orthanc_api_client")
    if api_client is not None:
        oac = api_client.OrthancApiClient(server.url, user=auth[0], pwd=auth[1], headers=identity)

        def with_api_client() -> list[Dataset]:
            ids = oac.series.get_instances_ids(series_id)
            return _read([oac.instances.get_file(i) for i in ids])

        ways["orthanc-api-client (REST per instance)"] = with_api_client
    ways["archive zip (httpx)"] = archive
    return ways


def parse_timings(server: OrthancServer, study_uid: str, series_uid: str, repeat: int) -> None:
    """Time only the multipart parsing of one WADO-RS body: our splitter vs ``email``."""
    accept = 'multipart/related; type="application/dicom"'
    response = httpx.get(
        f"{server.url}/dicom-web/studies/{study_uid}/series/{series_uid}",
        auth=(server.username, server.password),
        headers={"Accept": accept, "Accept-Encoding": "identity"},
        timeout=120,
    ).raise_for_status()
    body, content_type = response.content, response.headers["content-type"]

    def ours() -> int:
        parser, count = RelatedParser(boundary_of(content_type)), 0
        with memoryview(body) as view:
            for start in range(0, len(body), 65536):
                count += len(parser.feed(view[start : start + 65536]))
        parser.close()
        return count

    def stdlib_email() -> int:
        head = f"Content-Type: {content_type}\r\n\r\n".encode()
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
        return sum(1 for part in message.iter_parts() if part.get_payload(decode=True))

    print(f"\nparsing one WADO-RS body in memory ({len(body) / 1e6:.1f} MB), median of {repeat}")
    print(f"{'parser':<38}{'parts':>7}{'ms':>10}{'MB/s':>9}")
    parsers = (("ours (RelatedParser, 64 KiB chunks)", ours), ("stdlib email", stdlib_email))
    for name, parse in parsers:
        times, count = [], 0
        for _ in range(repeat):
            t0 = time.perf_counter()
            count = parse()
            times.append(time.perf_counter() - t0)
        median = statistics.median(times)
        print(f"{name:<38}{count:>7}{median * 1e3:>10.1f}{len(body) / 1e6 / median:>9.0f}")


TYPE_NOTES = [
    (
        "ours",
        "yes (mypy --strict)",
        "ChangesPage / StudyInfo / SeriesInfo frozen dataclasses; list[Dataset]",
    ),
    ("dicomweb-client", "py.typed", "list[Dataset]; QIDO/metadata as dict[str, dict] (DICOM JSON)"),
    ("pyorthanc", "no py.typed: Any", "annotated Union[Dict, List, str, bytes, int, Response]"),
    ("orthanc-api-client", "no py.typed: Any", "some classes (Change, Series); many dict returns"),
    ("archive zip", "-", "bytes of a zip; names only, no index"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slices", type=int, default=200)
    parser.add_argument("--matrix", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "preread-bench")
    args = parser.parse_args()

    phantoms = args.work / f"phantom-{args.matrix}-{args.slices}-{args.seed}"
    t0 = time.perf_counter()
    (study,) = write_phantoms(phantoms, 1, args.seed, matrix=args.matrix, max_slices=args.slices)
    files = sorted(study.ct_dir.iterdir())
    size_mb = sum(f.stat().st_size for f in files) / 1e6
    print(f"phantom: {len(files)} files, {size_mb:.1f} MB ({time.perf_counter() - t0:.1f} s)")
    expected = read_series_dir(study.ct_dir)

    storage = tempfile.mkdtemp(prefix="orthanc-", dir=args.work)
    try:
        run_with_orthanc(args, study, files, size_mb, expected, storage)
    finally:
        shutil.rmtree(storage, ignore_errors=True)

    print(f"\n{'client':<20}{'typed package':<22}what it returns")
    for name, marker, returns in TYPE_NOTES:
        print(f"{name:<20}{marker:<22}{returns}")


def run_with_orthanc(
    args: argparse.Namespace,
    study: StudyFiles,
    files: list[Path],
    size_mb: float,
    expected: Volume,
    storage: str,
) -> None:
    """Send the phantom to a private Orthanc and time every way of fetching it back."""
    config = OrthancConfig(
        storage_dir=Path(storage),
        stable_age_s=1,
        dicom_modalities=(DicomPeer("bench", "BENCH", "127.0.0.1", 104),),
    )
    with OrthancServer(config) as server:  # the storage folder goes when the bench ends
        command = ["storescu", "-aec", server.aet, "-aet", "BENCH", "+sd", "127.0.0.1"]
        command += [str(server.dicom_port), str(study.ct_dir)]
        t0 = time.perf_counter()
        sent = subprocess.run(
            command,
            env={**os.environ, "TCP_NODELAY": "1"},
            capture_output=True,
            text=True,
            check=False,
        )
        if sent.returncode != 0:
            raise SystemExit(f"storescu failed: {sent.stderr}")
        elapsed = time.perf_counter() - t0
        print(f"storescu: {len(files)} instances in {elapsed:.1f} s ({len(files) / elapsed:.0f}/s)")
        patient = str(pydicom.dcmread(files[0], stop_before_pixels=True).PatientID)
        series_id = orthanc_id(patient, study.study_instance_uid, study.series_instance_uid)
        ways = fetchers(server, study.study_instance_uid, study.series_instance_uid, series_id)

        for name, fetch in ways.items():  # warm-up and correctness, untimed
            volume = assemble_volume(fetch())
            same = volume.geometry == expected.geometry and np.array_equal(
                volume.array, expected.array
            )
            if not same:
                raise SystemExit(f"{name}: the fetched volume differs from the sent files")
        times: dict[str, list[float]] = {name: [] for name in ways}
        for _ in range(args.repeat):
            for name, fetch in ways.items():
                t0 = time.perf_counter()
                fetch()
                times[name].append(time.perf_counter() - t0)

        ours_s = statistics.median(times[next(iter(ways))])
        print(
            f"\nfetch {len(files)} × {args.matrix}² slices ({size_mb:.0f} MB) into pydicom "
            f"datasets, median of {args.repeat} (all volumes checked equal to the sent files)"
        )
        print(f"{'client':<40}{'median s':>10}{'min s':>8}{'MB/s':>8}{'× ours':>8}")
        for name, spent in times.items():
            median = statistics.median(spent)
            print(
                f"{name:<40}{median:>10.2f}{min(spent):>8.2f}{size_mb / median:>8.0f}"
                f"{median / ours_s:>8.1f}"
            )
        parse_timings(server, study.study_instance_uid, study.series_instance_uid, args.repeat)
        with OrthancClient(server.url, server.username, server.password) as client:
            version = client.system().version
        print(f"\nOrthanc {version}; DICOMweb plugin; HTTP compression off; TCP_NODELAY=1")


if __name__ == "__main__":
    main()
