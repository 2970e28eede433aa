"""Checks of deploy/ as pure functions over parsed documents, so each can be shown to fail on a
small bad document as well as to pass on the real files.

* :func:`unknown_settings` — every ``PREREAD_*`` name is a field of
  :class:`preread.settings.Settings` (or ``<field>_FILE`` for the credentials that the settings
  read from files, :data:`preread.settings.FILE_SETTINGS`).
* :func:`image_problems` — every image is PreRead's own (built by deploy/Dockerfile, tagged with
  the project's version) or a well-known image pinned to an explicit version.
* :func:`orthanc_json` — Orthanc's JSON-with-comments configuration, parsed.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import typer

from preread.settings import FILE_SETTINGS, Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
CHART = DEPLOY / "helm" / "preread"
ENVIRONMENTS = ("dev", "staging", "prod")

#: well-known images the deployment may use, each pinned to an explicit version
WELL_KNOWN_IMAGES = frozenset({"postgres", "redis", "orthancteam/orthanc"})
#: PreRead's own image (built by deploy/Dockerfile): the last part of its repository
OWN_IMAGE = "preread"
_VERSION_TAG = re.compile(r"^\d+(\.\d+)+([-.][A-Za-z0-9.]+)*$")


def project_version() -> str:
    with (ROOT / "pyproject.toml").open("rb") as f:
        version: str = tomllib.load(f)["project"]["version"]
    return version


def file_settings() -> set[str]:
    """``PREREAD_<NAME>`` of the settings that may come from ``PREREAD_<NAME>_FILE``."""
    prefix = str(Settings.model_config.get("env_prefix", ""))
    return {f"{prefix}{name}".upper() for name in FILE_SETTINGS}


def settings_variables() -> set[str]:
    """``PREREAD_<FIELD>`` for every field of :class:`Settings`."""
    prefix = Settings.model_config.get("env_prefix", "")
    return {f"{prefix}{name}".upper() for name in Settings.model_fields}


def unknown_settings(names: Iterable[str]) -> list[str]:
    """The ``PREREAD_*`` names that PreRead would not read (sorted)."""
    known = settings_variables()
    from_files = {f"{name}_FILE" for name in file_settings() & known}
    return sorted({n for n in names if n.startswith("PREREAD_") and n not in known | from_files})


def image_problems(images: Iterable[str], version: str) -> list[str]:
    """What is wrong with each image reference: unknown, unpinned, or a foreign tag of ours."""
    problems = []
    for image in images:
        name, _, tag = image.rpartition(":") if ":" in image.split("/")[-1] else (image, "", "")
        if "@" in image or not name:
            problems.append(f"{image}: name:tag expected")
        elif name.split("/")[-1] == OWN_IMAGE:
            if tag not in {version, f"{version}-gpu"}:
                problems.append(f"{image}: PreRead's image must be tagged {version}[-gpu]")
        elif name not in WELL_KNOWN_IMAGES:
            problems.append(f"{image}: neither built by deploy/Dockerfile nor well known")
        elif not _VERSION_TAG.match(tag):
            problems.append(f"{image}: pin an explicit version tag")
    return problems


def orthanc_json(text: str) -> Any:
    """Parse JSON with ``//`` and ``/* */`` comments (as Orthanc and the orthancteam image do)."""
    import json

    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == '"':  # copy a string literal whole, escapes included
            j = i + 1
            while text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(text[i : j + 1])
            i = j + 1
        elif text.startswith("//", i):
            i = text.find("\n", i) if "\n" in text[i:] else n
        elif text.startswith("/*", i):
            i = text.index("*/", i) + 2
        else:
            out.append(c)
            i += 1
    return json.loads("".join(out))


def preread_commands() -> dict[str, Any]:
    """The ``preread`` sub-commands by name, as typer builds them (each has ``params``)."""
    from preread.cli import app

    commands: dict[str, Any] = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    return commands


def command_problems(argv: list[str]) -> list[str]:
    """What in ``argv`` (a container command) the ``preread`` CLI does not have."""
    if not argv or argv[0] != "preread":
        return [f"{shlex.join(argv)}: not a preread command"]
    sub = preread_commands().get(argv[1]) if len(argv) > 1 else None
    if sub is None:
        return [f"{shlex.join(argv)}: no such preread command"]
    options = {opt for p in sub.params for opt in p.opts}
    return [f"{argv[1]}: no option {a}" for a in argv[2:] if a.startswith("-") and a not in options]


def option_value(argv: list[str], option: str) -> str | None:
    return argv[argv.index(option) + 1] if option in argv else None


def walk(node: Any) -> Iterator[Any]:
    """Every dict and list inside ``node``, depth first."""
    yield node
    children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else []
    for child in children:
        yield from walk(child)
