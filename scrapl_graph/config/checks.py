"""Checks and error messages shared by the config parsers."""
from __future__ import annotations

import re
from typing import Any, Mapping

_NAME_RE = re.compile(r"^[^.\[\]\s]+$")


def _prefixed(err: Exception, prefix: str) -> Exception:
    """A plain ``TypeError`` or ``ValueError`` (after ``err``'s kind) with ``prefix`` before its message."""
    return (TypeError if isinstance(err, TypeError) else ValueError)(f"{prefix}: {err}")


def _check_mapping(value: Any, where: str) -> Mapping:
    if not isinstance(value, Mapping):
        raise TypeError(f"{where} must be a mapping, got {type(value).__name__}")
    return value


def _check_name(name: Any, where: str) -> str:
    """A node or type name: a non-empty string without dots, brackets or spaces."""
    if not isinstance(name, str):
        raise TypeError(f"{where}: names must be strings, got {name!r} ({type(name).__name__})")
    if not _NAME_RE.match(name):
        raise ValueError(f"{where}: invalid name {name!r} (no dots, brackets or spaces)")
    return name
