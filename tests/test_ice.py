"""
ICE servers handed to browsers: STUN as configured, TURN with coturn-style
time-limited credentials.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from twisted.trial.unittest import SynchronousTestCase

from denoisecast.app.config import Config, ConfigError
from denoisecast.live.ice import ice_servers_for, turn_credentials


class IceTests(SynchronousTestCase):
    def test_turn_rest_credentials(self) -> None:
        """
        The username is "<expiry>:<user>", the password base64(HMAC-SHA1(secret, username)),
        as coturn's use-auth-secret expects.
        """
        username, password = turn_credentials("s3cret", "alice", 1000.0, ttl=60)
        self.assertEqual(username, "1060:alice")
        expected = base64.b64encode(hmac.new(b"s3cret", b"1060:alice", hashlib.sha1).digest()).decode()
        self.assertEqual(password, expected)

    def test_servers_from_config(self) -> None:
        """
        STUN and TURN URLs come from the configuration; no config, no servers;
        TURN without a secret is refused.
        """
        config = Config.resolve(
            {"stun": "stun:a:3478, stun:b:3478", "turn": "turn:t:3478", "turn-secret": "k"}, {}
        )
        servers = ice_servers_for(config, lambda: 0.0)({"username": "bob"})
        self.assertEqual(servers[0], {"urls": ["stun:a:3478", "stun:b:3478"]})
        self.assertEqual(servers[1]["urls"], ["turn:t:3478"])
        self.assertTrue(servers[1]["username"].endswith(":bob"))
        self.assertEqual(ice_servers_for(Config(), lambda: 0.0)({"username": "bob"}), [])
        self.assertRaises(ConfigError, Config.resolve, {"turn": "turn:t"}, {})
        self.assertRaises(ConfigError, Config.resolve, {"silence-timeout": "never"}, {})
