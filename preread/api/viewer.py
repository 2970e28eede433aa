"""The OHIF Viewer at ``/viewer/``: OHIF's ready build, served by PreRead with its own config.

``./run setup`` installs the pinned ``@ohif/app`` (``web/ohif/package.json``; its ``dist/`` is
a complete build) into ``web/ohif/node_modules``; nothing is fetched at run time. The build
expects to live at the site root, so the few places that say so are rewritten as they are
served (:data:`REWRITES`: ``window.PUBLIC_URL``, the webpack public path of each bundle,
absolute ``/…`` links in ``index.html``, the stylesheet's font and the microscopy viewer), and
OHIF's router runs under ``/viewer``.

``/viewer/app-config.js`` is PreRead's (:func:`app_config`), never the build's (which points
at a public demo server): one DICOMweb data source at this origin's ``/dicomweb`` (QIDO-RS and
WADO-RS; the proxy routes that answer there, for signed-in users of the study's tenant, are
PreRead's next step), read-only, no runtime configuration from the URL. Every answer carries a
Content Security Policy that keeps fetches and scripts to this origin
(:data:`CONTENT_SECURITY_POLICY`), and the cross-origin isolation headers OHIF recommends
(SharedArrayBuffer for volumes).

A missing build is an error when the app is made (:class:`ViewerNotInstalledError`, naming
the folder and ``./run setup``), not a 404 later; ``PREREAD_VIEWER=off`` leaves the routes out.
The files are no study data: the routes are public, like the API's documentation.
"""

from __future__ import annotations

import json
import mimetypes
import threading
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import Route

from preread.errors import PrereadError
from preread.settings import Settings

__all__ = [
    "BASE",
    "DICOMWEB",
    "REWRITES",
    "ViewerNotInstalledError",
    "ViewerSite",
    "app_config",
    "install",
]

BASE = "/viewer"
"""Where OHIF is served (its router's basename)."""
DICOMWEB = "/dicomweb"
"""The DICOMweb root OHIF's data source uses, at PreRead's own origin."""

REWRITES: dict[str, tuple[tuple[str, str], ...]] = {
    ".html": (
        ('window.PUBLIC_URL="/"', f'window.PUBLIC_URL="{BASE}/"'),
        ('src="/', f'src="{BASE}/'),
        ('href="/', f'href="{BASE}/'),
    ),
    ".js": (
        ('__webpack_require__.p = "/";', f'__webpack_require__.p = "{BASE}/";'),
        ("'/dicom-microscopy-viewer/", f"'{BASE}/dicom-microscopy-viewer/"),
    ),
    ".css": (("url(/", f"url({BASE}/"),),
    ".json": (('"/assets/', f'"{BASE}/assets/'),),
    ".webapp": (('"/assets/', f'"{BASE}/assets/'),),
    ".xml": (('"/assets/', f'"{BASE}/assets/'),),
}
"""By file suffix, the texts that place OHIF's build (made for the site root) under
:data:`BASE`: exact strings, so a build laid out otherwise is served unchanged rather than
damaged (``tests/api/test_viewer.py`` checks that the installed build has each of them)."""

CONTENT_SECURITY_POLICY = (
    "connect-src 'self' blob: data:; "
    "script-src 'self' 'unsafe-inline' 'unsafe-eval' 'wasm-unsafe-eval' blob:; "
    "worker-src 'self' blob:; object-src 'none'; base-uri 'self'; frame-ancestors 'self'"
)
"""Fetches and scripts from this origin only (index.html's two inline scripts, OHIF's codecs
compiled from WebAssembly and its blob workers allowed): what OHIF would load from elsewhere
(AI segmentation models from huggingface.co, itk-wasm pipelines from cdn.jsdelivr.net, both
only for tools the reading workflow does not use) the browser refuses."""
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
}
MEDIA_TYPES = {
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".wasm": "application/wasm",  # WebAssembly.instantiateStreaming needs it
    ".webapp": "application/x-web-app-manifest+json",
}
NO_CACHE = {"Cache-Control": "no-cache"}  # index.html and app-config.js: always revalidated
_MAX_CACHED_BYTES = 64 * 1024 * 1024  # rewritten bundles kept in memory (about 25 MB in 3.13)


class ViewerNotInstalledError(PrereadError):
    """The OHIF build is not where the settings say (``./run setup`` installs it)."""


def app_config() -> str:
    """OHIF's ``window.config``: PreRead's DICOMweb at this origin, OHIF's router at
    :data:`BASE`. The roots are made from ``window.location.origin`` in the browser, so the
    file names no host and OHIF can reach no other."""
    source = {
        "namespace": "@ohif/extension-default.dataSourcesModule.dicomweb",
        "sourceName": "preread",
        "configuration": {
            "friendlyName": "PreRead",
            "name": "preread",
            "qidoRoot": "@ORIGIN@",
            "wadoRoot": "@ORIGIN@",
            "wadoUriRoot": "@ORIGIN@",
            "qidoSupportsIncludeField": False,
            "imageRendering": "wadors",
            "thumbnailRendering": "wadors",
            "enableStudyLazyLoad": True,
            "supportsFuzzyMatching": False,
            "supportsWildcard": True,
            "supportsReject": False,
            "supportsStow": False,
            "dicomUploadEnabled": False,
            "singlepart": "bulkdata,video",
            "bulkDataURI": {"enabled": True, "relativeResolution": "studies"},
            "omitQuotationForMultipartRequest": True,
        },
    }
    config = {
        "name": "preread",
        "routerBasename": BASE,
        "extensions": [],
        "modes": [],
        "customizationService": {},
        "showStudyList": True,
        "maxNumberOfWebWorkers": 3,
        "showWarningMessageForCrossOrigin": False,
        "showCPUFallbackMessage": True,
        "showLoadingIndicator": True,
        "strictZSpacingForVolumeViewport": True,
        "defaultDataSourceName": "preread",
        "dataSources": [source],
    }
    body = json.dumps(config, indent=2).replace('"@ORIGIN@"', "dicomweb")
    return (  # in a function: a global `const` would shadow names of the page's own
        "// Generated by PreRead (preread.api.viewer): OHIF reads this study's DICOM through\n"
        f"// PreRead at this origin ({DICOMWEB}), nowhere else.\n"
        "(() => {\n"
        f"const dicomweb = window.location.origin + {json.dumps(DICOMWEB)};\n"
        f"window.config = {body};\n"
        "})();\n"
    )


@dataclass
class ViewerSite:
    """OHIF's build in ``root`` (its ``dist/`` folder), as :data:`BASE` serves it."""

    root: Path
    index: bytes
    config: bytes = field(default_factory=lambda: app_config().encode())
    _rewritten: dict[Path, bytes | None] = field(default_factory=dict, repr=False)
    _cached_bytes: int = field(default=0, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def open(cls, root: Path) -> ViewerSite:
        """The build in ``root``.

        Raises:
            ViewerNotInstalledError: no OHIF build there.
        """
        index = root / "index.html"
        if not index.is_file() or not any(root.glob("app.bundle.*.js")):
            raise ViewerNotInstalledError(
                f"the OHIF Viewer is not installed in {root} (no index.html and app bundle): "
                "run ./run setup, set PREREAD_VIEWER_DIR to the dist/ folder of @ohif/app, "
                "or PREREAD_VIEWER=off to serve no viewer"
            )
        root = root.resolve()
        return cls(root=root, index=_rewrite(index.read_bytes(), ".html"))

    def file(self, path: str) -> Path | None:
        """The build's file at ``path`` (relative to :data:`BASE`), None when there is none
        (or the path leaves the build)."""
        parts = PurePosixPath(path).parts
        if not parts or any(part in ("..", ".") or part.startswith(".") for part in parts):
            return None
        candidate = (self.root / Path(*parts)).resolve()
        if not candidate.is_relative_to(self.root) or not candidate.is_file():
            return None
        return candidate

    def rewritten(self, file: Path) -> bytes | None:
        """``file``'s bytes as served when :data:`REWRITES` change them, else None (served as
        it is). Remembered: the build does not change while the app runs."""
        suffix = file.suffix
        if suffix not in REWRITES:
            return None
        with self._lock:
            if file in self._rewritten:
                return self._rewritten[file]
        original = file.read_bytes()
        changed = _rewrite(original, suffix)
        result = None if changed == original else changed
        with self._lock:
            if result is None or self._cached_bytes + len(result) <= _MAX_CACHED_BYTES:
                self._rewritten[file] = result
                self._cached_bytes += 0 if result is None else len(result)
        return result


def _rewrite(content: bytes, suffix: str) -> bytes:
    for old, new in REWRITES.get(suffix, ()):
        content = content.replace(old.encode(), new.encode())
    return content


def _serve(site: ViewerSite, request: Request) -> Response:
    path = str(request.path_params.get("path", ""))
    if path == "app-config.js":
        return Response(site.config, media_type="text/javascript", headers={**HEADERS, **NO_CACHE})
    file = None if path in ("", "index.html") else site.file(path)
    if file is None:
        if "." in PurePosixPath(path).name:
            return Response(b"not found", status_code=404, headers=HEADERS)
        # a route of OHIF's own (/viewer/viewer?StudyInstanceUIDs=…): the app's page
        return Response(site.index, media_type="text/html", headers={**HEADERS, **NO_CACHE})
    media_type = MEDIA_TYPES.get(file.suffix) or mimetypes.guess_type(file.name)[0]
    body = site.rewritten(file)
    if body is not None:
        return Response(body, media_type=media_type, headers=HEADERS)
    return FileResponse(file, media_type=media_type, headers=HEADERS)


def install(app: FastAPI, settings: Settings) -> None:
    """Add ``/viewer`` and ``/viewer/{path}`` to ``app`` when ``settings.viewer`` is on.

    Raises:
        ViewerNotInstalledError: the viewer is on and its build is not installed.
    """
    if not settings.viewer:
        return
    site = ViewerSite.open(settings.viewer_path)

    def serve(request: Request) -> Response:  # sync: Starlette runs it in its thread pool
        return _serve(site, request)

    def to_slash(_: Request) -> Response:
        return RedirectResponse(f"{BASE}/", status_code=308)

    app.router.routes.append(Route(BASE, to_slash, methods=["GET"], name="viewer_root"))
    app.router.routes.append(
        Route(f"{BASE}/{{path:path}}", serve, methods=["GET"], name="viewer_files")
    )
