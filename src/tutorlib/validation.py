"""Argument checks shared by the topic modules: one message format for every public boundary."""

from __future__ import annotations


def check_int(name: str, value: object, minimum: int = 1) -> int:
    """Return ``value`` if it is an ``int`` (not a bool) and at least ``minimum``.

    Raises:
        TypeError: ``value`` is not an int; the message names ``name``, the type and the value.
        ValueError: ``value < minimum``; the message names ``name``, the bound and the value.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int >= {minimum}, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value
