"""
Configuration in one place.

Every option can come from the command line or from a ``DENOISECAST_*``
environment variable; the command line wins.  The resolved values live in
one frozen L{Config} that the rest of the server reads, so nothing else ever
looks at the environment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from twisted.logger import LogLevel, InvalidLogLevelError

DEFAULT_LISTEN = "tcp:8080:interface=127.0.0.1"
DEFAULT_DATA_DIR = "denoisecast-data"
DEFAULT_MAX_BODY_BYTES = 64 * 1024

#: (option name, environment variable, help text).  The plugin's
#: ``usage.Options`` is generated from this table, so ``--help`` always
#: documents every option together with its variable.
OPTIONS: list[tuple[str, str, str]] = [
    (
        "listen",
        "DENOISECAST_LISTEN",
        "Twisted endpoint string to listen on; ssl:... gives TLS "
        f"(default {DEFAULT_LISTEN}).",
    ),
    (
        "database-url",
        "DENOISECAST_DATABASE_URL",
        "SQLAlchemy database URL, e.g. postgresql+psycopg://user@host/db "
        "(default: SQLite file in the data directory).",
    ),
    (
        "data-dir",
        "DENOISECAST_DATA_DIR",
        f"Directory for the database and recordings (default ./{DEFAULT_DATA_DIR}).",
    ),
    (
        "recording-quota-mb",
        "DENOISECAST_RECORDING_QUOTA_MB",
        "Recording storage per user in MiB; 0 means unlimited (default 0).",
    ),
    (
        "recording-max-minutes",
        "DENOISECAST_RECORDING_MAX_MINUTES",
        "Longest recording in minutes; the broadcast goes on unrecorded "
        "after it; 0 means unlimited (default 240).",
    ),
    (
        "log-level",
        "DENOISECAST_LOG_LEVEL",
        "Lowest level of DenoiseCast's own log events: debug, info, warn, "
        "error or critical (default info).",
    ),
]


class ConfigError(ValueError):
    """
    A configuration value that cannot be used; the message says which and why.
    """


@dataclass(frozen=True)
class Config:
    listen: str = DEFAULT_LISTEN
    data_dir: Path = Path(DEFAULT_DATA_DIR)
    database_url: str = ""
    log_level: LogLevel = LogLevel.info
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    recording_quota_bytes: int | None = None
    recording_max_seconds: float | None = 240 * 60.0

    @property
    def effective_database_url(self) -> str:
        """
        The configured URL, or the embedded SQLite file in the data directory.
        """
        if self.database_url:
            return self.database_url
        return "sqlite:///" + str((self.data_dir / "denoisecast.sqlite3").absolute())

    @classmethod
    def resolve(
        cls, given: Mapping[str, str | None], environ: Mapping[str, str]
    ) -> "Config":
        """
        Merge command-line values over environment variables over defaults.
        """

        def pick(name: str, variable: str) -> str | None:
            value = given.get(name)
            if value is None:
                value = environ.get(variable)
            return value or None

        listen = pick("listen", "DENOISECAST_LISTEN") or DEFAULT_LISTEN
        data_dir = Path(pick("data-dir", "DENOISECAST_DATA_DIR") or DEFAULT_DATA_DIR)
        database_url = pick("database-url", "DENOISECAST_DATABASE_URL") or ""
        level_name = (pick("log-level", "DENOISECAST_LOG_LEVEL") or "info").lower()
        try:
            log_level = LogLevel.levelWithName(level_name)
        except InvalidLogLevelError:
            raise ConfigError(
                f"Unknown log level {level_name!r}; use debug, info, warn, "
                "error or critical."
            ) from None
        quota = _non_negative(pick("recording-quota-mb", "DENOISECAST_RECORDING_QUOTA_MB"), "recording quota", 0)
        longest = _non_negative(
            pick("recording-max-minutes", "DENOISECAST_RECORDING_MAX_MINUTES"), "recording length", 240
        )
        if database_url and "://" not in database_url:
            raise ConfigError(
                f"Database URL {database_url!r} is not a URL; use e.g. "
                "sqlite:///path/db.sqlite3 or postgresql+psycopg://user@host/db."
            )
        return cls(
            listen=listen,
            data_dir=data_dir,
            database_url=database_url,
            log_level=log_level,
            recording_quota_bytes=int(quota * 1024 * 1024) or None,
            recording_max_seconds=(longest * 60.0) or None,
        )


def _non_negative(value: str | None, what: str, default: float) -> float:
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(f"The {what} must be a number, not {value!r}.") from None
    if not number >= 0:
        raise ConfigError(f"The {what} cannot be negative.")
    return number


def from_environment(given: Mapping[str, str | None] | None = None) -> Config:
    return Config.resolve(given or {}, os.environ)
