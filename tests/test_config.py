"""
Configuration: command line over environment over defaults, and clear
errors for unusable values.
"""

from __future__ import annotations

from pathlib import Path

from twisted.logger import LogLevel
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from denoisecast.config import DEFAULT_LISTEN, Config, ConfigError
from denoisecast.tap import Options


class ConfigTests(SynchronousTestCase):
    def test_defaults(self) -> None:
        """
        With nothing set: loopback port 8080, SQLite in ./denoisecast-data, info.
        """
        config = Config.resolve({}, {})
        self.assertEqual(config.listen, DEFAULT_LISTEN)
        self.assertEqual(config.listen, "tcp:8080:interface=127.0.0.1")
        self.assertEqual(config.log_level, LogLevel.info)
        self.assertEqual(
            config.effective_database_url,
            "sqlite:///" + str(Path("denoisecast-data/denoisecast.sqlite3").absolute()),
        )

    def test_environment(self) -> None:
        """
        Every DENOISECAST_* variable is read.
        """
        config = Config.resolve(
            {},
            {
                "DENOISECAST_LISTEN": "tcp:9000",
                "DENOISECAST_DATABASE_URL": "postgresql+psycopg://u@h/db",
                "DENOISECAST_DATA_DIR": "/srv/dc",
                "DENOISECAST_LOG_LEVEL": "WARN",
            },
        )
        self.assertEqual(
            (config.listen, config.effective_database_url, config.data_dir, config.log_level),
            ("tcp:9000", "postgresql+psycopg://u@h/db", Path("/srv/dc"), LogLevel.warn),
        )

    def test_command_line_wins(self) -> None:
        """
        A command-line value overrides the environment.
        """
        options = Options()
        self.patch(
            __import__("os"), "environ", {"DENOISECAST_LISTEN": "tcp:9000", "DENOISECAST_LOG_LEVEL": "debug"}
        )
        options.parseOptions(["--listen", "ssl:8443:privateKey=k.pem", "--data-dir", "/tmp/x"])
        self.assertEqual(options.config.listen, "ssl:8443:privateKey=k.pem")
        self.assertEqual(options.config.data_dir, Path("/tmp/x"))
        self.assertEqual(options.config.log_level, LogLevel.debug)

    def test_bad_values(self) -> None:
        """
        Unknown log levels and non-URL database settings are refused clearly.
        """
        with self.assertRaises(ConfigError):
            Config.resolve({"log-level": "chatty"}, {})
        with self.assertRaises(ConfigError):
            Config.resolve({}, {"DENOISECAST_DATABASE_URL": "my.db"})
        with self.assertRaises(usage.UsageError):
            Options().parseOptions(["--log-level", "chatty"])


class LogLevelTests(SynchronousTestCase):
    def test_level_filters_denoisecast_events(self) -> None:
        """
        Events below the configured level never reach the global publisher;
        module-level loggers are named after their module.
        """
        from twisted.logger import globalLogPublisher

        from denoisecast import logs

        seen: list[dict] = []
        globalLogPublisher.addObserver(seen.append)
        self.addCleanup(globalLogPublisher.removeObserver, seen.append)
        self.addCleanup(logs.set_level, LogLevel.info)
        log = logs.logger()
        self.assertEqual(log.namespace, __name__)
        logs.set_level(LogLevel.warn)
        log.info("quiet {n}", n=1)
        log.warn("loud {n}", n=2)
        self.assertEqual([e["n"] for e in seen if e.get("log_namespace") == __name__], [2])
