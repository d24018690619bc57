"""
Configuration: command line over environment over defaults, and clear
errors for unusable values.
"""

from __future__ import annotations

from pathlib import Path

from twisted.logger import LogLevel
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from denoisecast.app.config import DEFAULT_LISTEN, Config, ConfigError
from denoisecast.app.tap import Options
from denoisecast.denoise.settings import SchedulerSettings


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

        from denoisecast.runtime import logs

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


class DenoiseOptionTests(SynchronousTestCase):
    def test_denoise_defaults_and_values(self) -> None:
        """
        The denoise pool's options default sensibly and are read from the
        command line or the environment.
        """
        config = Config.resolve({}, {})
        self.assertEqual(
            (config.denoise_chunk_seconds, config.denoise_crossfade_seconds, config.denoise_device, config.denoise_half),
            (0.1, 0.05, "auto", False),
        )
        self.assertEqual(config.denoise_runtime, "onnx")
        self.assertEqual(SchedulerSettings.from_config(config).runtime, "onnx")
        config = Config.resolve(
            {"denoise-chunk-seconds": "2", "denoise-half": "on"},
            {"DENOISECAST_DENOISE_MAX_BATCH": "128", "DENOISECAST_DENOISE_DEVICE": "CUDA", "DENOISECAST_DENOISE_RUNTIME": "Torch"},
        )
        self.assertEqual(SchedulerSettings.from_config(config).runtime, "torch")
        self.assertEqual(
            (config.denoise_chunk_seconds, config.denoise_half, config.denoise_max_batch, config.denoise_device),
            (2.0, True, 128, "cuda"),
        )

    def test_denoise_bad_values(self) -> None:
        """
        Chunks outside 0.01-8 s, non-numbers, unknown devices or runtimes and unclear
        switches are refused with the option's name.
        """
        for given in (
            {"denoise-chunk-seconds": "0.005"},
            {"denoise-chunk-seconds": "9"},
            {"denoise-workers": "two"},
            {"denoise-device": "tpu"},
            {"denoise-half": "maybe"},
            {"denoise-runtime": "tensorrt"},
        ):
            with self.assertRaises(ConfigError) as caught:
                Config.resolve(given, {})
            self.assertIn(next(iter(given)), str(caught.exception))


class RecordingOptionTests(SynchronousTestCase):
    def test_recording_limits(self) -> None:
        """
        The quota is unlimited and recordings stop at 4 hours by default;
        0 means unlimited; negative or non-numeric values are refused.
        """
        config = Config.resolve({}, {})
        self.assertEqual((config.recording_quota_bytes, config.recording_max_seconds), (None, 240 * 60.0))
        config = Config.resolve({"recording-quota-mb": "1.5"}, {"DENOISECAST_RECORDING_MAX_MINUTES": "0"})
        self.assertEqual((config.recording_quota_bytes, config.recording_max_seconds), (1572864, None))
        for given in ({"recording-quota-mb": "-1"}, {"recording-max-minutes": "long"}):
            with self.assertRaises(ConfigError):
                Config.resolve(given, {})


class IceNetworkOptionTests(SynchronousTestCase):
    def test_default_denies_loopback_link_local_and_metadata(self) -> None:
        """
        Without configuration, remote ICE candidates in loopback, link-local
        and cloud metadata networks are denied, and nothing is allowed
        explicitly.
        """
        from ipaddress import ip_address

        config = Config.resolve({}, {})
        self.assertEqual(config.ice_allow_networks, ())
        for address in ["127.0.0.1", "::1", "169.254.169.254", "fe80::1", "100.100.100.200", "fd00:ec2::254", "0.0.0.0"]:
            self.assertTrue(
                any(ip_address(address) in network for network in config.ice_deny_networks), address
            )
        for address in ["192.0.2.2", "10.1.2.3", "8.8.8.8", "2001:db8::1"]:
            self.assertFalse(
                any(ip_address(address) in network for network in config.ice_deny_networks), address
            )

    def test_values(self) -> None:
        """
        Both lists take comma-separated networks or addresses, from the
        command line or the environment; ``none`` empties the deny list.
        """
        from ipaddress import ip_network

        config = Config.resolve(
            {"ice-allow-networks": "127.0.0.0/8, ::1"},
            {"DENOISECAST_ICE_DENY_NETWORKS": "10.0.0.0/8,0.0.0.0/0"},
        )
        self.assertEqual(config.ice_allow_networks, (ip_network("127.0.0.0/8"), ip_network("::1/128")))
        self.assertEqual(config.ice_deny_networks, (ip_network("10.0.0.0/8"), ip_network("0.0.0.0/0")))
        self.assertEqual(Config.resolve({"ice-deny-networks": "none"}, {}).ice_deny_networks, ())

    def test_bad_values(self) -> None:
        """
        Something that is not a network is refused, naming the option.
        """
        for value in ["10.0.0.0/33", "example.org", "10.0.0.1/8x"]:
            with self.assertRaises(ConfigError) as caught:
                Config.resolve({"ice-allow-networks": value}, {})
            self.assertIn("--ice-allow-networks", str(caught.exception))
