"""Semantic versions (https://semver.org/spec/v2.0.0.html): parsing and precedence.

Model package versions are semantic versions; the registry picks the latest by precedence
(SemVer 2.0.0 §11): numeric major/minor/patch, a pre-release sorts before its release, and build
metadata is ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SEMVER_PATTERN = (
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)
_SEMVER = re.compile(SEMVER_PATTERN)


@dataclass(frozen=True, order=False)
class SemVer:
    """A parsed semantic version; compare with :meth:`sort_key`."""

    major: int
    minor: int
    patch: int
    prerelease: tuple[str, ...] = ()
    build: str = ""

    @classmethod
    def parse(cls, text: str) -> SemVer:
        """Parse ``text``; raise :class:`ValueError` when it is not a semantic version."""
        m = _SEMVER.match(text)
        if m is None:
            raise ValueError(f"{text!r} is not a semantic version (MAJOR.MINOR.PATCH, semver.org)")
        pre = tuple(m.group(4).split(".")) if m.group(4) else ()
        return cls(int(m.group(1)), int(m.group(2)), int(m.group(3)), pre, m.group(5) or "")

    def sort_key(self) -> tuple[int, int, int, int, tuple[tuple[int, int, str], ...]]:
        """A key ordering versions by SemVer precedence (build metadata ignored)."""
        # A release (no pre-release) ranks above every pre-release of the same version; numeric
        # identifiers rank below alphanumeric ones and compare numerically.
        ids = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in self.prerelease)
        return (self.major, self.minor, self.patch, 0 if self.prerelease else 1, ids)


def is_semver(text: str) -> bool:
    """Whether ``text`` is a semantic version."""
    return _SEMVER.match(text) is not None
