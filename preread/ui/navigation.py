"""Where a page may send the browser next: only a path of this site (no open redirect)."""

from __future__ import annotations

from urllib.parse import urlsplit

HOME = "/ui/"
MAX_NEXT = 2048


def safe_next(value: str | None, default: str = HOME) -> str:
    """``value`` if it is a path on this site, else ``default``.

    Accepted: an absolute path (``/ui/studies/1.2.3?sort=date``). Refused: anything with a
    scheme or a host (``https://evil.example``, ``//evil.example``), backslashes (browsers read
    ``/\\evil.example`` as ``//evil.example``), whitespace and control characters (browsers drop
    tabs and newlines, which would turn ``/\\t/evil.example`` into ``//evil.example``), and
    values over 2048 characters.
    """
    if not value or len(value) > MAX_NEXT or not value.startswith("/"):
        return default
    if value.startswith("//") or "\\" in value:
        return default
    if any(c.isspace() or not c.isprintable() for c in value):
        return default
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return default
    return value
