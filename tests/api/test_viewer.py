"""The OHIF Viewer at /viewer/ (``preread.api.viewer``), served from the build ``./run setup``
installs (``web/ohif``): OHIF's own page and bundles placed under /viewer/, PreRead's
app-config.js (one DICOMweb source at this origin, evaluated by node as the browser would),
and a clear refusal when the build is missing. The app's route walker
(``tests/api/test_access.py``) covers the routes inside ``create_app``."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from preread.api.viewer import (
    REWRITES,
    ViewerNotInstalledError,
    ViewerSite,
    app_config,
    install,
)
from preread.settings import Settings
from tests.ohif_support import OHIF_DIST, installed, node

ORIGIN = "http://preread.test:8000"
EXTERNAL_URL = re.compile(rb"""["'(]\s*(?:https?:)?//""")


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    app = FastAPI()
    settings = Settings(data_dir=tmp_path_factory.mktemp("data"), viewer_dir=installed(OHIF_DIST))
    install(app, settings)
    with TestClient(app, base_url=ORIGIN) as client:
        yield client


def test_viewer_serves_ohifs_page_under_viewer(client: TestClient) -> None:
    assert client.get("/viewer", follow_redirects=False).headers["location"] == "/viewer/"
    page = client.get("/viewer/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.content.startswith(b"<!doctype html>")
    assert page.text.count('window.PUBLIC_URL="/viewer/"') == 2
    links = re.findall(r'(?:src|href)="([^"]*)"', page.text)
    assert "/viewer/app-config.js" in links
    assert [u for u in links if not u.startswith("/viewer/")] == []
    assert not EXTERNAL_URL.search(page.content)
    # the bundle it names, with webpack's public path moved along
    (bundle,) = [u for u in links if re.fullmatch(r"/viewer/app\.bundle\.[0-9a-f]+\.js", u)]
    script = client.get(bundle)
    assert script.headers["content-type"].startswith("text/javascript")
    assert b'__webpack_require__.p = "/viewer/";' in script.content
    assert b'__webpack_require__.p = "/";' not in script.content
    style = client.get("/viewer/app.bundle.css").content
    assert b"url(/viewer/" in style and b"url(/" not in style.replace(b"url(/viewer/", b"")
    assert not EXTERNAL_URL.search(style)  # no web fonts from a CDN
    for answer in (page, script):
        assert "connect-src 'self'" in answer.headers["content-security-policy"]
        assert answer.headers["cross-origin-embedder-policy"] == "require-corp"
    # OHIF's own routes get its page; missing files are 404; nothing outside the build
    assert client.get("/viewer/viewer?StudyInstanceUIDs=1.2.3").content == page.content
    assert client.get("/viewer/no-such-bundle.js").status_code == 404
    site = ViewerSite.open(OHIF_DIST)
    assert (OHIF_DIST.parent / "package.json").is_file()
    for outside in ("../package.json", "assets/../../package.json", "/etc/passwd", ".x"):
        assert site.file(outside) is None, outside
    wasm = next(OHIF_DIST.glob("*.wasm")).name
    assert client.get(f"/viewer/{wasm}").headers["content-type"] == "application/wasm"


def test_every_rewrite_applies_to_the_installed_build() -> None:
    """The build is made for the site root; each text REWRITES moves must be in it (a new OHIF
    version laid out otherwise fails here, not in a browser)."""
    for suffix, rules in REWRITES.items():
        files = [p.read_bytes() for p in OHIF_DIST.rglob(f"*{suffix}") if p.is_file()]
        for old, _ in rules:
            assert any(old.encode() in content for content in files), (suffix, old)


def _evaluated_config(text: str) -> dict[str, Any]:
    """app-config.js run by node with the browser's ``window.location`` of ORIGIN."""
    script = (
        f"const window = {{ location: {{ origin: {json.dumps(ORIGIN)} }} }};\n{text}\n"
        "process.stdout.write(JSON.stringify(window.config));\n"
    )
    run = subprocess.run(
        [node(), "--input-type=module", "-e", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    config: dict[str, Any] = json.loads(run.stdout)
    return config


def test_app_config_is_prereads_and_points_only_at_this_origin(client: TestClient) -> None:
    answer = client.get("/viewer/app-config.js")
    assert answer.status_code == 200 and answer.text == app_config()
    assert answer.headers["cache-control"] == "no-cache"
    assert answer.content != (OHIF_DIST / "app-config.js").read_bytes()  # not the build's
    assert not EXTERNAL_URL.search(answer.content)
    config = _evaluated_config(answer.text)
    assert config["routerBasename"] == "/viewer"
    assert config["defaultDataSourceName"] == "preread"
    (source,) = config["dataSources"]
    assert source["namespace"] == "@ohif/extension-default.dataSourcesModule.dicomweb"
    settings = source["configuration"]
    roots = {settings[k] for k in ("qidoRoot", "wadoRoot", "wadoUriRoot")}
    assert roots == {f"{ORIGIN}/dicomweb"}
    assert settings["supportsReject"] is False and settings["dicomUploadEnabled"] is False
    assert settings["imageRendering"] == "wadors"
    urls = re.findall(r"(?:https?:)?//[^\"']+", json.dumps(config))
    assert {u.split("/dicomweb")[0] for u in urls} == {ORIGIN}
    assert "customizationUrlPrefixes" not in config and "dangerouslyUseDynamicConfig" not in config


def test_a_missing_build_stops_the_app_and_off_serves_nothing(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, viewer_dir=tmp_path / "nowhere")
    with pytest.raises(ViewerNotInstalledError, match=r"nowhere.*\./run setup"):
        install(FastAPI(), settings)
    app = FastAPI()
    install(app, Settings(data_dir=tmp_path, viewer=False, viewer_dir=tmp_path / "nowhere"))
    assert TestClient(app).get("/viewer/").status_code == 404
