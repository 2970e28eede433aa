"""deploy/orthanc/orthanc.json follows the Orthanc security advice and holds no password."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.deploy.checks import DEPLOY, orthanc_json, walk

TEXT = (DEPLOY / "orthanc" / "orthanc.json").read_text()
RIGHTS = (
    "AllowEcho",
    "AllowStore",
    "AllowFind",
    "AllowFindWorklist",
    "AllowGet",
    "AllowMove",
    "AllowStorageCommitment",
)


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    parsed: dict[str, Any] = orthanc_json(TEXT)
    return parsed


def test_comments_are_stripped_but_strings_are_kept() -> None:
    assert orthanc_json('{"a": "http://x/*y*/", // c\n "b": 1 /* d */}') == {
        "a": "http://x/*y*/",
        "b": 1,
    }
    with pytest.raises(json.JSONDecodeError):
        orthanc_json('{"a": 1,, }')


def test_http_needs_authentication_and_exposes_no_scripting(config: dict[str, Any]) -> None:
    assert config["AuthenticationEnabled"] is True
    assert config["RemoteAccessAllowed"] is True  # other containers call it; never published
    assert config["RegisteredUsers"] == {}  # users come from the secret, never from this file
    assert config["ExecuteLuaEnabled"] is False  # /tools/execute-script unreachable
    assert config["LuaScripts"] == []
    assert config["RestApiWriteToFileSystemEnabled"] is False
    assert config["WebDavEnabled"] is False
    assert config["OrthancExplorerEnabled"] is False
    assert config["OrthancExplorer2"] == {"Enable": False}
    assert config["HttpCompressionEnabled"] is False  # the gzip pitfall
    assert config["HttpsVerifyPeers"] is True


def test_only_listed_peers_may_store(config: dict[str, Any]) -> None:
    assert config["DicomCheckCalledAet"] is True
    assert config["DicomCheckModalityHost"] is True
    always = [k for k in config if k.startswith("DicomAlwaysAllow")]
    assert set(always) >= {"DicomAlwaysAllowStore", "DicomAlwaysAllowEcho"}
    assert all(config[k] is False for k in always)
    assert config["UnknownSopClassAccepted"] is False
    peers = config["DicomModalities"]
    assert peers
    for name, peer in peers.items():
        assert {"AET", "Host", "Port", *RIGHTS} <= set(peer), name
        assert 1 <= len(peer["AET"]) <= 16, name
        assert peer["AllowFind"] is peer["AllowGet"] is peer["AllowMove"] is False, name
    assert any(peer["AllowStore"] for peer in peers.values())


def test_a_full_disk_rejects_instead_of_recycling(config: dict[str, Any]) -> None:
    assert config["MaximumStorageMode"] == "Reject"
    assert config["MaximumStorageSize"] > 0
    assert config["OverwriteInstances"] is False
    assert config["StableAge"] >= 1


def test_dicomweb_and_the_postgresql_index_are_on_without_a_password(
    config: dict[str, Any],
) -> None:
    assert config["DicomWeb"]["Enable"] is True
    assert config["DicomWeb"]["Root"] == "/dicom-web/"
    pg = config["PostgreSQL"]
    assert pg["EnableIndex"] is True and pg["EnableStorage"] is False
    assert "Password" not in pg  # from the secret ORTHANC__POSTGRESQL__PASSWORD


def test_no_value_is_a_password_or_left_for_substitution(config: dict[str, Any]) -> None:
    keys = [k for node in walk(config) if isinstance(node, dict) for k in node]
    assert not [k for k in keys if "password" in k.lower()]
    strings = [v for node in walk(config) if isinstance(node, dict) for v in node.values()]
    assert not [v for v in strings if isinstance(v, str) and "${" in v]
