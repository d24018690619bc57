"""
The messages of DenoiseCast's WebSocket, version 1: parsing and validation.

Every message is a JSON object with ``"v": 1`` and a ``"type"``.  A client
message is checked against the field table of its type before anything acts
on it; whatever does not fit raises L{BadMessage}, which the protocol answers
with an ``error`` message (never a crash, never an effect on anyone else).
"""

from __future__ import annotations

import json
from typing import Any

VERSION = 1
MAX_SDP = 32 * 1024
USERNAME_MAX = 64
SIGNALS = ("denoised", "raw")
#: The engine treats 100 dB as no limit at all.
UNLIMITED_DB = 100.0


class BadMessage(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# (field name) -> (types, required, extra check)
_SDP = ((str,), True)
_USER = ((str,), True)

#: type -> {field: (accepted types, required)}
CLIENT_MESSAGES: dict[str, dict[str, tuple[tuple[type, ...], bool]]] = {
    "publish": {"sdp": _SDP},
    "stop": {},
    "denoise": {"enabled": ((bool,), False), "atten_lim_db": ((int, float, type(None)), False)},
    "listen": {"user": _USER, "sdp": _SDP, "signal": ((str,), False)},
    "signal": {"user": _USER, "signal": ((str,), True)},
    "unlisten": {"user": _USER},
    "ping": {},
}


def parse(payload: bytes) -> dict[str, Any]:
    """
    A validated client message, or L{BadMessage}.
    """
    try:
        message = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise BadMessage("bad_json", "Messages are UTF-8 JSON objects.") from None
    if not isinstance(message, dict):
        raise BadMessage("bad_json", "Messages are UTF-8 JSON objects.")
    version = message.get("v")
    if isinstance(version, bool) or version != VERSION:
        raise BadMessage("bad_version", f"This server speaks version {VERSION} (\"v\": {VERSION}).")
    kind = message.get("type")
    if not isinstance(kind, str) or kind not in CLIENT_MESSAGES:
        raise BadMessage("unknown_type", f"Known types: {', '.join(sorted(CLIENT_MESSAGES))}.")
    fields = CLIENT_MESSAGES[kind]
    for name in message:
        if name not in fields and name not in ("v", "type", "id"):
            raise BadMessage("unknown_field", f"{kind} has no field {name!r}.")
    if "id" in message and not (isinstance(message["id"], (int, str)) and len(str(message["id"])) <= 64):
        raise BadMessage("bad_field", "id is a short string or a number.")
    for name, (types, required) in fields.items():
        if name not in message:
            if required:
                raise BadMessage("missing_field", f"{kind} needs {name!r}.")
            continue
        value = message[name]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise BadMessage("bad_field", f"{kind}.{name} has the wrong type.")
    if "sdp" in message and len(message["sdp"]) > MAX_SDP:
        raise BadMessage("bad_field", "The SDP is too long.")
    if "user" in message and not 1 <= len(message["user"]) <= USERNAME_MAX:
        raise BadMessage("bad_field", "user is a username.")
    if "signal" in message and message["signal"] not in SIGNALS:
        raise BadMessage("bad_field", f"signal is one of {', '.join(SIGNALS)}.")
    if "atten_lim_db" in message:
        limit = message["atten_lim_db"]
        if limit is None:
            message["atten_lim_db"] = UNLIMITED_DB  # null means no limit
        elif not 0.0 <= float(limit) <= UNLIMITED_DB:
            raise BadMessage("bad_field", f"atten_lim_db is between 0 and {UNLIMITED_DB:g} (dB) or null.")
        else:
            message["atten_lim_db"] = float(limit)
    return message


def reference(payload: bytes) -> Any:
    """
    The client's ``id`` from a message that may not be valid, so that an
    error about it can still be matched to the request (C{None} when the
    payload is not a JSON object or its id is not a short string or number).
    """
    try:
        message = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(message, dict):
        return None
    ref = message.get("id")
    if isinstance(ref, bool) or not isinstance(ref, (int, str)) or len(str(ref)) > 64:
        return None
    return ref


#: Messages the server sends on its own (not replies), and their fields; the
#: one list of them, kept beside the client messages (docs/live.md shows it).
SERVER_EVENTS: dict[str, tuple[str, ...]] = {
    "hello": ("user", "ice_servers"),
    "presence": ("friends",),
    "friend": ("friend",),
    "friend_removed": ("username",),
    "me": ("live", "denoise", "atten_lim_db"),
    "friend_request": ("username", "direction", "state"),
    "recording_ready": ("recording",),
    "recording_removed": ("id", "owner"),
    "level": ("denoised_db", "raw_db"),
    "listeners": ("count",),
    "recording": ("recording", "reason"),
    "ended": ("role", "user", "reason"),
}

#: ``friend_request.direction`` and ``.state``.
REQUEST_DIRECTIONS = ("incoming", "outgoing")
REQUEST_STATES = ("pending", "accepted", "rejected", "cancelled")


def event(kind: str, **fields: Any) -> dict[str, Any]:
    """
    A server event of a kind listed in L{SERVER_EVENTS}, with exactly its fields.
    """
    expected = SERVER_EVENTS[kind]
    if set(fields) != set(expected):
        raise ValueError(f"{kind} has the fields {', '.join(expected)}, not {', '.join(sorted(fields))}")
    return {"v": VERSION, "type": kind, **fields}


def error(code: str, message: str, status: int = 400, ref: Any = None) -> dict[str, Any]:
    reply: dict[str, Any] = {"v": VERSION, "type": "error", "code": code, "status": status, "message": message}
    if ref is not None:
        reply["id"] = ref
    return reply
