"""Identifiers that become path components: language codes, run and arm names.

A value read from a data file or a request must never choose where a file is
written: ``"lang": "/tmp/x"`` or ``"../../y"`` would otherwise be joined onto an
index directory and replaced wholesale. Every such identifier is checked against
a strict pattern where it is read (so the error names the file, line and field),
and every path derived from one is checked again to stay under its root where it
is built (a second line of defence for values that arrive by other routes).
"""

from __future__ import annotations

from pathlib import Path

import regex

from crosearch.errors import CrosearchError, DataFormatError

# BCP-47-like: a 2-3 letter primary subtag, then up to three subtags of 1-8 letters or digits,
# separated by "-" or "_" (MKQA's zh_cn, pt-BR, sr-Latn, zh-Hant-TW).
LANG_PATTERN = r"^[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{1,8}){0,3}$"
_LANG = regex.compile(LANG_PATTERN)
# Run and arm names: letters, digits, ".", "_", "+", "-"; not starting with a dot (no "..", no hidden files).
_NAME = regex.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")

LANG_RULE = "a language code like en, zh_cn or pt-BR (2-3 letters, then up to three -/_ subtags)"
NAME_RULE = "letters, digits, '.', '_', '+' and '-', at most 128, not starting with '.'"


def is_lang_code(value: object) -> bool:
    return isinstance(value, str) and _LANG.match(value) is not None


def check_lang(
    value: object,
    *,
    path: str | Path | None = None,
    line: int | None = None,
    record: str | None = None,
    field: str = "lang",
) -> str:
    """``value`` if it is a valid language code; else an error naming where it was read (when ``path`` is given)."""
    if is_lang_code(value):
        return str(value)
    message = f"invalid language code {value!r}: expected {LANG_RULE}"
    if path is not None:
        raise DataFormatError(path, message, line=line, record=record, field=field)
    raise CrosearchError(f"{field}: {message}")


def check_name(value: object, what: str) -> str:
    """``value`` if it is a safe run or arm name (one path component); ``what`` words the error."""
    if isinstance(value, str) and _NAME.match(value) is not None:
        return value
    raise CrosearchError(f"invalid {what} {value!r}: expected {NAME_RULE}")


def path_under(root: str | Path, *parts: str) -> Path:
    """``root / parts``, refused unless it resolves strictly inside ``root`` (no ``..``, absolute or link escape)."""
    base = Path(root).resolve()
    target = base.joinpath(*parts).resolve()
    if target == base or base not in target.parents:
        raise CrosearchError(f"refusing path {'/'.join(parts)!r}: it would lie outside {root}")
    return Path(root).joinpath(*parts)
