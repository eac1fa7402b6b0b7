"""Command-line options the classifier's commands share."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import CommandError


def feature_config_read(option: str | None) -> str | None:
    """Return the TOML text of a `--config` file, None when the option is not given; CommandError if it is absent."""
    if not option:
        return None
    path = Path(option)
    if not path.is_file():
        raise CommandError(f"no feature config at {path}")
    return path.read_text(encoding="utf-8")
