"""YAML input (config files, ``--set`` values, calibration files): one reader, one kind of error.

A YAML syntax error becomes a one-line ``error`` (a ``ValueError`` subclass of the caller's
choice, so every CLI reports it as bad input, exit 2) naming the input, the problem and where it
is, instead of ``yaml.YAMLError``'s multi-line text.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

__all__ = ["parse_yaml", "read_yaml"]


def _where(exc: yaml.YAMLError) -> str:
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    context = getattr(exc, "context", None)
    mark = getattr(exc, "problem_mark", None)
    text = f"{context}, {problem}" if context else problem
    if mark is not None:
        text += f" (line {mark.line + 1}, column {mark.column + 1})"
    return " ".join(text.split())


def parse_yaml(text: str, what: str, error: type[ValueError] = ValueError) -> Any:
    """``yaml.safe_load(text)``; a syntax error raises ``error("<what> is not valid YAML: ...")``."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise error(f"{what} is not valid YAML: {_where(exc)}") from None


def read_yaml(path: str | Path, what: str, error: type[ValueError] = ValueError) -> Any:
    """:func:`parse_yaml` of a file's text; an unreadable file raises ``error`` too."""
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise error(f"{what} cannot be read: {reason}") from None
    return parse_yaml(text, what, error)
