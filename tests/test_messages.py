"""
Validation of the WebSocket's client messages (version 1).
"""

from __future__ import annotations

import json

from twisted.trial.unittest import SynchronousTestCase

from denoisecast.protocols.messages import BadMessage, parse, reference


def encode(message: object) -> bytes:
    return json.dumps(message).encode()


class ParseTests(SynchronousTestCase):
    def test_valid_messages(self) -> None:
        """
        Each message type with its fields parses; null strength means no limit.
        """
        self.assertEqual(parse(encode({"v": 1, "type": "ping", "id": 3}))["id"], 3)
        self.assertEqual(parse(encode({"v": 1, "type": "publish", "sdp": "v=0"}))["sdp"], "v=0")
        self.assertEqual(parse(encode({"v": 1, "type": "denoise", "atten_lim_db": None}))["atten_lim_db"], 100.0)
        self.assertEqual(parse(encode({"v": 1, "type": "denoise", "atten_lim_db": 6}))["atten_lim_db"], 6.0)
        listen = parse(encode({"v": 1, "type": "listen", "user": "bob", "sdp": "v=0", "signal": "raw"}))
        self.assertEqual(listen["signal"], "raw")

    def test_invalid_messages(self) -> None:
        """
        Each kind of malformed message raises BadMessage with its own code.
        """
        for payload, code in [
            (b"{", "bad_json"),
            (b"\xff", "bad_json"),
            (b'"text"', "bad_json"),
            (encode({"type": "ping"}), "bad_version"),
            (encode({"v": True, "type": "ping"}), "bad_version"),
            (encode({"v": 1, "type": "nope"}), "unknown_type"),
            (encode({"v": 1, "type": "stop", "sdp": "x"}), "unknown_field"),
            (encode({"v": 1, "type": "publish"}), "missing_field"),
            (encode({"v": 1, "type": "publish", "sdp": 1}), "bad_field"),
            (encode({"v": 1, "type": "publish", "sdp": "x" * 40000}), "bad_field"),
            (encode({"v": 1, "type": "denoise", "enabled": 1}), "bad_field"),
            (encode({"v": 1, "type": "denoise", "atten_lim_db": True}), "bad_field"),
            (encode({"v": 1, "type": "denoise", "atten_lim_db": -1}), "bad_field"),
            (encode({"v": 1, "type": "unlisten", "user": ""}), "bad_field"),
            (encode({"v": 1, "type": "ping", "id": {"a": 1}}), "bad_field"),
        ]:
            with self.assertRaises(BadMessage) as raised:
                parse(payload)
            self.assertEqual(raised.exception.code, code, payload[:60])


class ReferenceTests(SynchronousTestCase):
    def test_id_of_an_invalid_message(self) -> None:
        """
        The id is found in messages that fail validation, and nothing is
        made up for payloads that have no usable id.
        """
        self.assertEqual(reference(encode({"v": 1, "type": "denoise", "atten_lim_db": 150, "id": "7"})), "7")
        self.assertEqual(reference(encode({"v": 9, "id": 4})), 4)
        for payload in (b"not json", b"[1]", encode({"id": True}), encode({"id": {"a": 1}}),
                        encode({"id": "x" * 65}), b"\xff", encode({"v": 1})):
            self.assertIsNone(reference(payload), payload)


class ServerMessageTests(SynchronousTestCase):
    def test_built_with_the_version(self) -> None:
        """A server message carries the protocol version and its type, then its fields."""
        from denoisecast.protocols.messages import VERSION, server_message

        self.assertEqual(
            server_message("listeners", count=3), {"v": VERSION, "type": "listeners", "count": 3}
        )
        self.assertEqual(server_message("pong"), {"v": VERSION, "type": "pong"})

    def test_unlisted_type_or_field_refused(self) -> None:
        """
        A type or a field missing from SERVER_MESSAGES is refused where the
        message is built, so the table stays the one list of what the
        server sends.
        """
        from denoisecast.protocols.messages import server_message

        with self.assertRaises(ValueError):
            server_message("shout", text="hi")
        with self.assertRaises(ValueError):
            server_message("listeners", count=1, who="bob")

    def test_every_listed_message_is_documented(self) -> None:
        """docs/live.md names every server message type."""
        from pathlib import Path

        from denoisecast.protocols.messages import SERVER_MESSAGES

        docs = (Path(__file__).resolve().parent.parent / "docs" / "live.md").read_text()
        missing = [kind for kind in SERVER_MESSAGES if f"`{kind}`" not in docs]
        self.assertEqual(missing, [])
