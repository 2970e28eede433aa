"""The console a command prints its results on."""

from __future__ import annotations

from rich.console import Console


def command_console() -> Console:
    """A console built for this command: its width is the terminal's now (one made at import
    keeps the width it saw then, whatever ``COLUMNS`` says later)."""
    return Console(highlight=False)
