"""
ICE servers for browsers: STUN URLs as configured, TURN URLs with
coturn-style time-limited credentials (the TURN REST API: the username is
``<expiry unix time>:<user>``, the password the base64 HMAC-SHA1 of that
username under the shared secret), so no long-lived TURN password ever
reaches a browser.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable
from typing import Any

from denoisecast.app.config import TURN_CREDENTIAL_TTL, Config


def turn_credentials(secret: str, name: str, now: float, ttl: int = TURN_CREDENTIAL_TTL) -> tuple[str, str]:
    username = f"{int(now) + ttl}:{name}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode("ascii")


def ice_servers_for(config: Config, clock: Callable[[], float]) -> Callable[[dict[str, Any]], list[dict[str, Any]]]:
    def servers(user: dict[str, Any]) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = []
        if config.stun_urls:
            result.append({"urls": list(config.stun_urls)})
        if config.turn_urls:
            username, credential = turn_credentials(config.turn_secret, user["username"], clock())
            result.append({"urls": list(config.turn_urls), "username": username, "credential": credential})
        return result

    return servers
