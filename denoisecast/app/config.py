"""
Configuration in one place.

Every option can come from the command line or from a ``DENOISECAST_*``
environment variable; the command line wins.  The resolved values live in
one frozen L{Config} that the rest of the server reads, so nothing else ever
looks at the environment.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Any

from twisted.logger import InvalidLogLevelError, LogLevel

from denoisecast.bus.base import DEFAULT_NODE_TTL
from denoisecast.denoise.settings import (
    DEFAULT_DENOISE_CHUNK_SECONDS,
    DEFAULT_DENOISE_CROSSFADE_SECONDS,
    DEFAULT_DENOISE_MAX_BATCH,
    DEFAULT_DENOISE_RUNTIME,
    DEFAULT_DENOISE_WORKERS,
    DENOISE_RUNTIMES,
)
from denoisecast.live.mediaports import (
    MediaAddress,
    MediaConfigError,
    PortRange,
    parse_media_addresses,
)
from denoisecast.web.forwarded import PROXY_HEADERS, X_FORWARDED, Network, parse_network

DEFAULT_LISTEN = "tcp:8080:interface=127.0.0.1"
DEFAULT_DATA_DIR = "denoisecast-data"
DEFAULT_MAX_BODY_BYTES = 64 * 1024
DEFAULT_SILENCE_TIMEOUT = 10.0
DEFAULT_RECONNECT_GRACE = 10.0
TURN_CREDENTIAL_TTL = 24 * 3600
DEFAULT_REGISTRATIONS_PER_HOUR = 10
DEFAULT_REDIS_PREFIX = "denoisecast"
NODE_ID_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,64}\Z")
#: Remote ICE candidates the server sends no checks to unless allowed: this
#: host and "this network", link-local (169.254.169.254 is the metadata
#: endpoint of AWS, GCP, Azure, OpenStack and DigitalOcean), multicast and
#: broadcast, and the other providers' metadata addresses (Alibaba, Oracle,
#: AWS over IPv6).
DEFAULT_ICE_DENY_NETWORKS = (
    "127.0.0.0/8", "::1/128", "0.0.0.0/8", "::/128",
    "169.254.0.0/16", "fe80::/10",
    "224.0.0.0/4", "ff00::/8", "255.255.255.255/32",
    "100.100.100.200/32", "192.0.0.192/32", "fd00:ec2::254/128",
)

#: Most worker processes (``--workers``).
MAX_WORKERS = 256
#: Set by ``--workers`` for each server process it starts: the worker's
#: number, 1 to N (not an option: only the supervisor sets it).
WORKER_VARIABLE = "DENOISECAST_WORKER"
#: Options given without a value (``--reuse-port``); their variables take on/off.
FLAG_OPTIONS = frozenset({"reuse-port"})
#: Options that may be given more than once; the values are joined with commas.
REPEATABLE_OPTIONS = frozenset({"media-address"})

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
        "trusted-proxies",
        "DENOISECAST_TRUSTED_PROXIES",
        "Comma-separated addresses or networks of reverse proxies (e.g. "
        "127.0.0.1,10.0.0.0/8) whose forwarded headers are believed for the "
        "client's scheme, host and address; none by default.",
    ),
    (
        "proxy-header",
        "DENOISECAST_PROXY_HEADER",
        "Which forwarded headers the trusted proxies set: x-forwarded "
        "(X-Forwarded-For/-Proto/-Host) or forwarded (RFC 7239); the other "
        "family is ignored (default x-forwarded).",
    ),
    (
        "database-url",
        "DENOISECAST_DATABASE_URL",
        "SQLAlchemy database URL, e.g. postgresql+psycopg://user@host/db "
        "(default: SQLite file in the data directory).",
    ),
    (
        "redis-url",
        "DENOISECAST_REDIS_URL",
        "Redis URL of the live bus that several nodes share, e.g. redis://10.0.0.5:6379/0 "
        "(default: none, the bus stays inside this process: one node).",
    ),
    (
        "redis-prefix",
        "DENOISECAST_REDIS_PREFIX",
        f"Prefix of the live bus's Redis keys and channels; nodes of one deployment share it "
        f"(default {DEFAULT_REDIS_PREFIX}).",
    ),
    (
        "node-id",
        "DENOISECAST_NODE_ID",
        "This node's id on the live bus, 1-64 letters, digits, '.', '_' or '-' "
        "(default: a random id at each start).",
    ),
    (
        "advertise-url",
        "DENOISECAST_ADVERTISE_URL",
        "The URL browsers and other nodes reach this node at, announced on the live bus, "
        "e.g. https://node1.example.org (default: none announced).",
    ),
    (
        "node-ttl",
        "DENOISECAST_NODE_TTL",
        "Seconds a node counts as alive after its last heartbeat (and its database lease); "
        "a node silent longer is dead, its broadcasts end, and once its lease has run out "
        f"too its recordings are repaired (default {DEFAULT_NODE_TTL:g}).",
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
        "recording-min-free-mb",
        "DENOISECAST_RECORDING_MIN_FREE_MB",
        "Free space in MiB the data directory keeps: under it new recordings are "
        "refused and running ones stop, the broadcasts go on (default 64).",
    ),
    (
        "log-level",
        "DENOISECAST_LOG_LEVEL",
        "Lowest level of DenoiseCast's own log events: debug, info, warn, "
        "error or critical (default info).",
    ),
    (
        "log-format",
        "DENOISECAST_LOG_FORMAT",
        "text, or json for one JSON object per line with every event field "
        "(default text).",
    ),
    (
        "log-rotate-mb",
        "DENOISECAST_LOG_ROTATE_MB",
        "Rotate twistd's --logfile at this size in MiB (default 10).",
    ),
    (
        "log-keep",
        "DENOISECAST_LOG_KEEP",
        "Rotated log files kept, oldest removed first (default 10).",
    ),
    (
        "metrics-listen",
        "DENOISECAST_METRICS_LISTEN",
        "Serve /metrics only on this separate endpoint (e.g. "
        "tcp:9108:interface=127.0.0.1) instead of the main one.",
    ),
    (
        "metrics-token",
        "DENOISECAST_METRICS_TOKEN",
        "Require 'Authorization: Bearer TOKEN' on /metrics (at least 16 characters).",
    ),
    (
        "stun",
        "DENOISECAST_STUN",
        "Comma-separated STUN URLs handed to browsers, e.g. stun:stun.example.org:3478.",
    ),
    (
        "turn",
        "DENOISECAST_TURN",
        "Comma-separated TURN URLs, e.g. turn:turn.example.org:3478?transport=udp.",
    ),
    (
        "turn-secret",
        "DENOISECAST_TURN_SECRET",
        "Shared secret of the TURN server (coturn use-auth-secret); browsers get "
        "time-limited credentials made from it.",
    ),
    (
        "registrations-per-hour",
        "DENOISECAST_REGISTRATIONS_PER_HOUR",
        "Registrations each client address may attempt per hour; 0 means "
        f"unlimited (default {DEFAULT_REGISTRATIONS_PER_HOUR}).",
    ),
    (
        "ice-allow-networks",
        "DENOISECAST_ICE_ALLOW_NETWORKS",
        "Comma-separated networks whose remote ICE candidates are always used, "
        "even inside a denied network, e.g. 10.0.0.0/8 (default none).",
    ),
    (
        "ice-deny-networks",
        "DENOISECAST_ICE_DENY_NETWORKS",
        "Comma-separated networks the server never sends ICE checks to unless "
        "allowed; 'none' for no such list (default: loopback, link-local, "
        "multicast and cloud metadata addresses).",
    ),
    (
        "media-address",
        "DENOISECAST_MEDIA_ADDRESS",
        "Address the server's WebRTC answers offer as host candidates, e.g. its "
        "public address; PUBLIC@LOCAL behind a 1:1 NAT (e.g. 203.0.113.5@0.0.0.0) "
        "binds LOCAL and announces PUBLIC. Repeat or comma-separate for several "
        "(default: every interface's address).",
    ),
    (
        "rtc-ports",
        "DENOISECAST_RTC_PORTS",
        "UDP port range for WebRTC media, LOW-HIGH, e.g. 40000-40100: one port per "
        "peer connection and media address; open it in the firewall "
        "(default: ephemeral ports).",
    ),
    (
        "workers",
        "DENOISECAST_WORKERS",
        "Server processes sharing the listening address (SO_REUSEPORT), each a node of "
        "its own with a share of --rtc-ports; the first process supervises them "
        f"(default 1, at most {MAX_WORKERS}).",
    ),
    (
        "reuse-port",
        "DENOISECAST_REUSE_PORT",
        "Listen with SO_REUSEPORT, so that several servers started by hand share "
        "the --listen address (a flag; the variable takes on or off).",
    ),
    (
        "silence-timeout",
        "DENOISECAST_SILENCE_TIMEOUT",
        f"Seconds without audio from a publisher before the stream ends (default {DEFAULT_SILENCE_TIMEOUT:g}).",
    ),
    (
        "reconnect-grace",
        "DENOISECAST_RECONNECT_GRACE",
        "Seconds a broadcast whose page went away (reload, network drop) waits for its "
        f"owner to come back before it ends; 0 ends it at once (default {DEFAULT_RECONNECT_GRACE:g}).",
    ),
    (
        "denoise-chunk-seconds",
        "DENOISECAST_DENOISE_CHUNK_SECONDS",
        "Audio per stream per denoise pass, 0.01-8 s in 10 ms steps; longer "
        f"chunks batch better but add latency (default {DEFAULT_DENOISE_CHUNK_SECONDS}).",
    ),
    (
        "denoise-crossfade-seconds",
        "DENOISECAST_DENOISE_CROSSFADE_SECONDS",
        "Crossfade when denoise is switched or falls back to raw audio "
        f"(default {DEFAULT_DENOISE_CROSSFADE_SECONDS}).",
    ),
    (
        "denoise-max-batch",
        "DENOISECAST_DENOISE_MAX_BATCH",
        f"Most streams denoised in one forward pass (default {DEFAULT_DENOISE_MAX_BATCH}).",
    ),
    (
        "denoise-workers",
        "DENOISECAST_DENOISE_WORKERS",
        f"Denoise worker threads, each running whole batches (default {DEFAULT_DENOISE_WORKERS}).",
    ),
    (
        "denoise-device",
        "DENOISECAST_DENOISE_DEVICE",
        "Where the network runs: auto, cpu or cuda (default auto: CUDA when present).",
    ),
    (
        "denoise-half",
        "DENOISECAST_DENOISE_HALF",
        "Half precision on the GPU: on or off (default off).",
    ),
    (
        "denoise-runtime",
        "DENOISECAST_DENOISE_RUNTIME",
        f"What runs the network on the CPU: onnx (ONNX Runtime) or torch (default {DEFAULT_DENOISE_RUNTIME}).",
    ),
    (
        "denoise-model",
        "DENOISECAST_DENOISE_MODEL",
        "auto, deepfilternet2, deepfilternet3 or a model path (default auto).",
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
    redis_url: str = ""
    redis_prefix: str = DEFAULT_REDIS_PREFIX
    node_id: str = ""
    advertise_url: str = ""
    node_ttl: float = DEFAULT_NODE_TTL
    log_level: LogLevel = LogLevel.info
    log_format: str = "text"
    log_rotate_bytes: int = 10 * 1024 * 1024
    log_keep: int = 10
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    stun_urls: tuple[str, ...] = ()
    turn_urls: tuple[str, ...] = ()
    turn_secret: str = ""
    silence_timeout: float = DEFAULT_SILENCE_TIMEOUT
    reconnect_grace: float = DEFAULT_RECONNECT_GRACE
    recording_quota_bytes: int | None = None
    recording_max_seconds: float | None = 240 * 60.0
    registrations_per_hour: int = DEFAULT_REGISTRATIONS_PER_HOUR
    recording_min_free_bytes: int = 64 * 1024 * 1024
    denoise_chunk_seconds: float = DEFAULT_DENOISE_CHUNK_SECONDS
    denoise_crossfade_seconds: float = DEFAULT_DENOISE_CROSSFADE_SECONDS
    denoise_max_batch: int = DEFAULT_DENOISE_MAX_BATCH
    denoise_workers: int = DEFAULT_DENOISE_WORKERS
    denoise_device: str = "auto"
    denoise_half: bool = False
    denoise_model: str = "auto"
    denoise_runtime: str = DEFAULT_DENOISE_RUNTIME
    trusted_proxies: tuple[Network, ...] = ()
    metrics_listen: str = ""
    metrics_token: str = ""
    proxy_header: str = X_FORWARDED
    media_addresses: tuple[MediaAddress, ...] = ()
    rtc_ports: PortRange | None = None
    workers: int = 1
    reuse_port: bool = False
    #: This process's number among the workers of a supervisor, or 0.
    worker: int = 0
    ice_allow_networks: tuple[IPv4Network | IPv6Network, ...] = ()
    ice_deny_networks: tuple[IPv4Network | IPv6Network, ...] = tuple(
        ip_network(network) for network in DEFAULT_ICE_DENY_NETWORKS
    )

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
        log_format = (pick("log-format", "DENOISECAST_LOG_FORMAT") or "text").lower()
        if log_format not in ("text", "json"):
            raise ConfigError(f"--log-format {log_format!r}: use text or json.")
        log_rotate_mb = _number(
            "log-rotate-mb", pick("log-rotate-mb", "DENOISECAST_LOG_ROTATE_MB") or "10", float, 0.01, 1e6
        )
        log_keep = _number("log-keep", pick("log-keep", "DENOISECAST_LOG_KEEP") or "10", int, 1, 100000)
        quota = _number(
            "recording-quota-mb", pick("recording-quota-mb", "DENOISECAST_RECORDING_QUOTA_MB") or "0", float, 0, 1e9
        )
        longest = _number(
            "recording-max-minutes",
            pick("recording-max-minutes", "DENOISECAST_RECORDING_MAX_MINUTES") or "240",
            float,
            0,
            1e6,
        )
        registrations = _number(
            "registrations-per-hour",
            pick("registrations-per-hour", "DENOISECAST_REGISTRATIONS_PER_HOUR")
            or str(DEFAULT_REGISTRATIONS_PER_HOUR),
            int,
            0,
            1_000_000,
        )
        min_free = _number(
            "recording-min-free-mb",
            pick("recording-min-free-mb", "DENOISECAST_RECORDING_MIN_FREE_MB") or "64",
            float,
            0,
            1e9,
        )
        if database_url and "://" not in database_url:
            raise ConfigError(
                f"Database URL {database_url!r} is not a URL; use e.g. "
                "sqlite:///path/db.sqlite3 or postgresql+psycopg://user@host/db."
            )

        def urls(name: str, variable: str) -> tuple[str, ...]:
            return tuple(u.strip() for u in (pick(name, variable) or "").split(",") if u.strip())

        silence_text = pick("silence-timeout", "DENOISECAST_SILENCE_TIMEOUT")
        try:
            silence_timeout = float(silence_text) if silence_text else DEFAULT_SILENCE_TIMEOUT
        except ValueError:
            silence_timeout = -1.0
        if not 0.5 <= silence_timeout <= 3600:
            raise ConfigError(f"Silence timeout {silence_text!r} is not 0.5 to 3600 seconds.")
        reconnect_grace = _number(
            "reconnect-grace",
            pick("reconnect-grace", "DENOISECAST_RECONNECT_GRACE") or str(DEFAULT_RECONNECT_GRACE),
            float,
            0,
            600,
        )
        turn_urls = urls("turn", "DENOISECAST_TURN")
        turn_secret = pick("turn-secret", "DENOISECAST_TURN_SECRET") or ""
        if turn_urls and not turn_secret:
            raise ConfigError("TURN URLs need --turn-secret (the TURN server's shared secret).")
        try:
            trusted_proxies = tuple(
                parse_network(item)
                for item in (pick("trusted-proxies", "DENOISECAST_TRUSTED_PROXIES") or "").split(",")
                if item.strip()
            )
        except ValueError as error:
            raise ConfigError(f"--trusted-proxies: {error}.") from None
        proxy_header = (pick("proxy-header", "DENOISECAST_PROXY_HEADER") or X_FORWARDED).lower()
        if proxy_header not in PROXY_HEADERS:
            raise ConfigError(f"--proxy-header {proxy_header!r}: use x-forwarded or forwarded.")
        metrics_token = pick("metrics-token", "DENOISECAST_METRICS_TOKEN") or ""
        if metrics_token and (len(metrics_token) < 16 or not metrics_token.isascii() or not metrics_token.isprintable()):
            raise ConfigError("--metrics-token must be at least 16 printable ASCII characters.")
        deny_text = pick("ice-deny-networks", "DENOISECAST_ICE_DENY_NETWORKS")
        if deny_text is None:
            deny_text = ",".join(DEFAULT_ICE_DENY_NETWORKS)
        elif deny_text.strip().lower() == "none":
            deny_text = ""
        worker_text = environ.get(WORKER_VARIABLE) or "0"
        return cls(
            **_media_options(pick),
            worker=int(_number(WORKER_VARIABLE, worker_text, int, 0, MAX_WORKERS)),
            **_node_options(pick),
            metrics_listen=pick("metrics-listen", "DENOISECAST_METRICS_LISTEN") or "",
            metrics_token=metrics_token,
            trusted_proxies=trusted_proxies,
            proxy_header=proxy_header,
            ice_allow_networks=_networks(
                "ice-allow-networks", pick("ice-allow-networks", "DENOISECAST_ICE_ALLOW_NETWORKS") or ""
            ),
            ice_deny_networks=_networks("ice-deny-networks", deny_text),
            stun_urls=urls("stun", "DENOISECAST_STUN"),
            turn_urls=turn_urls,
            turn_secret=turn_secret,
            silence_timeout=silence_timeout,
            reconnect_grace=reconnect_grace,
            listen=listen,
            data_dir=data_dir,
            database_url=database_url,
            log_level=log_level,
            log_format=log_format,
            log_rotate_bytes=int(log_rotate_mb * 1024 * 1024),
            log_keep=int(log_keep),
            recording_quota_bytes=int(quota * 1024 * 1024) or None,
            recording_max_seconds=(longest * 60.0) or None,
            registrations_per_hour=int(registrations),
            recording_min_free_bytes=int(min_free * 1024 * 1024),
            **_denoise_options(pick),
        )


def _media_options(pick: Callable[[str, str], str | None]) -> dict[str, Any]:
    """Media addresses, the port range and the process options, validated."""
    try:
        addresses = parse_media_addresses(pick("media-address", "DENOISECAST_MEDIA_ADDRESS") or "")
        ports_text = pick("rtc-ports", "DENOISECAST_RTC_PORTS")
        ports = PortRange.parse(ports_text) if ports_text else None
    except MediaConfigError as error:
        raise ConfigError(str(error)) from None
    workers = int(_number("workers", pick("workers", "DENOISECAST_WORKERS") or "1", int, 1, MAX_WORKERS))
    if ports is not None and workers > ports.size:
        raise ConfigError(f"--rtc-ports {ports} has {ports.size} ports, fewer than the {workers} workers.")
    reuse = (pick("reuse-port", "DENOISECAST_REUSE_PORT") or "off").lower()
    if reuse not in _ON + _OFF:
        raise ConfigError(f"--reuse-port: DENOISECAST_REUSE_PORT {reuse!r}: use on or off.")
    return {"media_addresses": addresses, "rtc_ports": ports, "workers": workers, "reuse_port": reuse in _ON}


_ON = ("on", "true", "yes", "1")
_OFF = ("off", "false", "no", "0")


def _node_options(pick: Callable[[str, str], str | None]) -> dict[str, Any]:
    """The live bus's and the node registry's options, validated."""
    redis_url = pick("redis-url", "DENOISECAST_REDIS_URL") or ""
    if redis_url and not redis_url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(f"--redis-url {redis_url!r}: use redis://host:port/db, rediss://... or unix://path.")
    prefix = pick("redis-prefix", "DENOISECAST_REDIS_PREFIX") or DEFAULT_REDIS_PREFIX
    if not NODE_ID_PATTERN.match(prefix):
        raise ConfigError(f"--redis-prefix {prefix!r}: use 1-64 letters, digits, '.', '_' or '-'.")
    node_id = pick("node-id", "DENOISECAST_NODE_ID") or ""
    if node_id and not NODE_ID_PATTERN.match(node_id):
        raise ConfigError(f"--node-id {node_id!r}: use 1-64 letters, digits, '.', '_' or '-'.")
    advertise_url = pick("advertise-url", "DENOISECAST_ADVERTISE_URL") or ""
    if advertise_url and not advertise_url.startswith(("http://", "https://")):
        raise ConfigError(f"--advertise-url {advertise_url!r}: use an http:// or https:// URL.")
    ttl = _number("node-ttl", pick("node-ttl", "DENOISECAST_NODE_TTL") or str(DEFAULT_NODE_TTL), float, 1.0, 10.0)
    return {
        "redis_url": redis_url,
        "redis_prefix": prefix,
        "node_id": node_id,
        "advertise_url": advertise_url.rstrip("/"),
        "node_ttl": ttl,
    }


def _networks(name: str, text: str) -> tuple[IPv4Network | IPv6Network, ...]:
    """Comma-separated networks (a bare address is a network of one)."""
    networks = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        try:
            networks.append(ip_network(item, strict=False))
        except ValueError:
            raise ConfigError(f"--{name} {item!r} is not a network such as 10.0.0.0/8 or an address.") from None
    return tuple(networks)


def _number(name: str, text: str, kind: type[float] | type[int], low: float, high: float) -> float | int:
    try:
        value = kind(text)
    except ValueError:
        raise ConfigError(f"--{name} {text!r} is not a number.") from None
    if not low <= value <= high:
        raise ConfigError(f"--{name} {value} is outside {low}-{high}.")
    return value


def _denoise_options(pick: Callable[[str, str], str | None]) -> dict[str, Any]:
    """The denoise pool's options (names as in L{OPTIONS}), validated."""

    def get(name: str, default: object) -> str:
        return pick(name, "DENOISECAST_" + name.upper().replace("-", "_")) or str(default)

    device = get("denoise-device", "auto").lower()
    if device not in ("auto", "cpu") and not device.startswith("cuda"):
        raise ConfigError(f"--denoise-device {device!r}: use auto, cpu or cuda.")
    half = get("denoise-half", "off").lower()
    if half not in ("on", "off", "true", "false", "yes", "no", "1", "0"):
        raise ConfigError(f"--denoise-half {half!r}: use on or off.")
    runtime = get("denoise-runtime", DEFAULT_DENOISE_RUNTIME).lower()
    if runtime not in DENOISE_RUNTIMES:
        raise ConfigError(f"--denoise-runtime {runtime!r}: use {' or '.join(DENOISE_RUNTIMES)}.")
    return {
        "denoise_chunk_seconds": _number(
            "denoise-chunk-seconds", get("denoise-chunk-seconds", DEFAULT_DENOISE_CHUNK_SECONDS), float, 0.01, 8.0
        ),
        "denoise_crossfade_seconds": _number(
            "denoise-crossfade-seconds",
            get("denoise-crossfade-seconds", DEFAULT_DENOISE_CROSSFADE_SECONDS),
            float,
            0.001,
            1.0,
        ),
        "denoise_max_batch": _number(
            "denoise-max-batch", get("denoise-max-batch", DEFAULT_DENOISE_MAX_BATCH), int, 1, 65536
        ),
        "denoise_workers": _number("denoise-workers", get("denoise-workers", DEFAULT_DENOISE_WORKERS), int, 1, 64),
        "denoise_device": device,
        "denoise_half": half in ("on", "true", "yes", "1"),
        "denoise_model": get("denoise-model", "auto"),
        "denoise_runtime": runtime,
    }
