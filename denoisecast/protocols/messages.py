"""
The messages of DenoiseCast's WebSocket, version 1, both ways.

Every message is a JSON object with ``"v": 1`` and a ``"type"``.  A client
message is checked against the field table of its type before anything acts
on it; whatever does not fit raises L{BadMessage}, which the protocol answers
with an ``error`` message (never a crash, never an effect on anyone else).

Server messages are listed in L{SERVER_MESSAGES} with their fields and built
with L{server_message}, which adds the version: a new server message is one
entry in that table (and a line in docs/live.md).
"""

from __future__ import annotations

from typing import Any

from denoisecast.web.parse import NotJsonText, load_json_text

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


#: type -> the fields a server message of that type carries, besides "v",
#: "type" and the "id" echoed from the client message it answers.
SERVER_MESSAGES: dict[str, frozenset[str]] = {
    name: frozenset(fields)
    for name, fields in {
        # On connecting: who you are and the ICE servers to use.
        "hello": ("user", "ice_servers"),
        # Presence: the snapshot on connecting, then one friend's change, or a friendship's end.
        "presence": ("friends",),
        "friend": ("friend",),
        "friend_removed": ("username",),
        # Replies to client messages.
        "pong": (),
        "answer": ("role", "sdp", "stream", "user", "signal", "resumed"),
        "stopped": (),
        "denoise": ("enabled", "atten_lim_db"),
        "signal": ("user", "signal"),
        "unlistened": ("user",),
        "error": ("code", "status", "message"),
        # Events of a broadcast, to its publisher or a listener.
        "ended": ("role", "user", "reason"),
        "listeners": ("count",),
        "recording": ("recording", "reason"),
        # Your own state, to each of your pages: live or not (and waiting
        # for you to come back), the denoise setting.
        "me": ("live", "denoise", "atten_lim_db"),
        # What listeners hear and what the microphone sent, to the publisher.
        "level": ("denoised_db", "raw_db"),
        # A friend request made, accepted, rejected or cancelled: to both people.
        "friend_request": ("username", "direction", "state"),
        # A recording finished or deleted: to its owner and the owner's friends.
        "recording_ready": ("recording",),
        "recording_removed": ("id", "owner"),
    }.items()
}


def server_message(kind: str, **fields: Any) -> dict[str, Any]:
    """
    A server message of a listed type, with the version; a type or field
    not in L{SERVER_MESSAGES} is a programming error (C{ValueError}).
    """
    allowed = SERVER_MESSAGES.get(kind)
    if allowed is None:
        raise ValueError(f"{kind!r} is not a server message; list it in SERVER_MESSAGES")
    unknown = set(fields) - allowed - {"id"}
    if unknown:
        raise ValueError(f"{kind} has no field(s) {', '.join(sorted(unknown))}; list them in SERVER_MESSAGES")
    return {"v": VERSION, "type": kind, **fields}


def parse(payload: bytes) -> dict[str, Any]:
    """
    A validated client message, or L{BadMessage}.
    """
    try:
        message = load_json_text(payload)
    except NotJsonText as problem:
        raise BadMessage("bad_json", f"Messages are UTF-8 JSON objects ({problem}).") from None
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
        message = load_json_text(payload)
    except NotJsonText:
        return None
    if not isinstance(message, dict):
        return None
    ref = message.get("id")
    if isinstance(ref, bool) or not isinstance(ref, (int, str)) or len(str(ref)) > 64:
        return None
    return ref


#: ``friend_request.direction`` and ``.state``.
REQUEST_DIRECTIONS = ("incoming", "outgoing")
REQUEST_STATES = ("pending", "accepted", "rejected", "cancelled")


def error(code: str, message: str, status: int = 400, ref: Any = None) -> dict[str, Any]:
    reply = server_message("error", code=code, status=status, message=message)
    if ref is not None:
        reply["id"] = ref
    return reply
