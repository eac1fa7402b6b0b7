"""Lenient parsing of query-string values for HTML views: a bad value reads as "not given", never a 500."""

from __future__ import annotations


def int_or_none(value: str | None) -> int | None:
    """Return the integer in `value`, or None when it is empty or not an integer."""
    try:
        return int(value) if value not in (None, "") else None
    except ValueError:
        return None


def yes_no(value: str | None) -> bool | None:
    """Return True for "yes", False for "no" (any case), None otherwise."""
    return {"yes": True, "no": False}.get((value or "").lower())


def choice(value: str | None, choices, default: str) -> str:
    """Return `value` when it is one of `choices`, else `default`."""
    return value if value in choices else default
