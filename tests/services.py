"""The API's :class:`~preread.api.deps.Services` for tests that build an app on a store of their
own: real clients, ES256 token keys in ``keys_dir``, webhooks and the registry of
``settings.models_dir``; anything else (the grant store, accounts, sessions, a DICOM source)
as keyword arguments, the rest built by ``Services`` itself."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from inference.registry import Registry
from preread.api.deps import Services
from preread.security import ClientStore, KeyRing, TokenService
from preread.settings import Settings
from preread.store import JobStore
from preread.webhooks.outbox import WebhookStore


def services_for(settings: Settings, store: JobStore, keys_dir: Path, **extra: Any) -> Services:
    keys = KeyRing(keys_dir)
    keys.ensure()
    return Services(
        settings=settings,
        store=store,
        clients=ClientStore(store.engine),
        tokens=TokenService(keys, issuer="preread", audience="preread-api", ttl_s=300),
        webhooks=WebhookStore(store.engine),
        registry=Registry(settings.models_dir),
        **extra,
    )
