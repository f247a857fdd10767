"""User-facing errors.

Anything raised as a :class:`CrosearchError` is shown by the CLI as one clear
message (no traceback): it describes a problem with the user's input (a file,
a config key, a request), not a bug in crosearch.
"""

from __future__ import annotations

from pathlib import Path


class CrosearchError(Exception):
    """A problem with user input, reported without a traceback."""


class ConfigError(CrosearchError):
    """A config file or override is invalid."""


class DataFormatError(CrosearchError):
    """A data file is malformed. The message names the file, the record and the field."""

    def __init__(
        self,
        path: str | Path,
        message: str,
        *,
        line: int | None = None,
        record: str | None = None,
        field: str | None = None,
    ) -> None:
        self.path = str(path)
        self.reason = message
        self.line = line
        self.record = record
        self.field = field
        where = self.path
        if line is not None:
            where += f", line {line}"
        if record is not None:
            where += f", record {record}"
        if field is not None:
            where += f", field '{field}'"
        super().__init__(f"{where}: {message}")


class TrlCompatError(CrosearchError):
    """The installed TRL is outside the supported range or lacks an internal crosearch relies on."""
