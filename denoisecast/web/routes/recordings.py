"""
API routes for recordings: list, metadata, audio (seekable), waveform, delete.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from denoisecast.protocols.messages import USERNAME_MAX
from denoisecast.recordings.library import PAGE_MAX, RecordingLibrary
from denoisecast.web.apidoc import COMMON_ERRORS, RECORDING_ID, error, ok, ref
from denoisecast.web.parse import query_int, query_string
from denoisecast.web.resource import ApiCall, FileBody, Response, Route

AUDIO_TYPE = "audio/ogg; codecs=opus"


#: Recordings in a page when the client names no limit.
PAGE_DEFAULT = 20
#: Longest pagination cursor accepted.
CURSOR_MAX = 256


def download_name(row: dict[str, Any], track: str) -> str:
    """
    A file name that says whose broadcast, when and which signal, in the
    characters every file system and header accepts (user names are
    already [a-z0-9_.-]; anything else is replaced all the same).
    """
    owner = re.sub(r"[^A-Za-z0-9_.-]", "_", str(row["owner"]))
    started: datetime = row["started_at"]
    return f"{owner}-{started:%Y-%m-%d-%H%M}-{track}.ogg"


def disposition(row: dict[str, Any], track: str, download: bool) -> str:
    """
    ``attachment`` when the person asked to download, else ``inline`` (the
    player), with the file name either way.
    """
    return f'{"attachment" if download else "inline"}; filename="{download_name(row, track)}"'


class RecordingRoutes:
    def __init__(self, library: RecordingLibrary) -> None:
        self._library = library

    def routes(self) -> list[Route]:
        return [
            Route("GET", "/api/recordings", self.list),
            Route("GET", "/api/recordings/{id}", self.get),
            Route("DELETE", "/api/recordings/{id}", self.delete),
            Route("GET", "/api/recordings/{id}/audio", self.audio),
            Route("GET", "/api/recordings/{id}/waveform", self.waveform),
        ]

    async def list(self, call: ApiCall) -> Response:
        owner = query_string(call.request, "owner", None, max_length=USERNAME_MAX)
        cursor = query_string(call.request, "cursor", None, max_length=CURSOR_MAX)
        limit = query_int(call.request, "limit", PAGE_DEFAULT, 1, PAGE_MAX)
        page, next_cursor = await self._library.list(call.me, owner, cursor, limit)
        return 200, {"recordings": page, "next": next_cursor}

    async def get(self, call: ApiCall) -> Response:
        row = await self._library.get(call.me, call.params["id"])
        return 200, {"recording": self._library.public(row)}

    async def delete(self, call: ApiCall) -> Response:
        await self._library.delete(call.me, call.params["id"])
        return 204, None

    async def audio(self, call: ApiCall) -> Response:
        track = query_string(call.request, "track", "denoised", max_length=16) or "denoised"
        download = query_string(call.request, "download", None, max_length=8) is not None
        path = await self._library.audio_path(call.me, call.params["id"], track)
        row = await self._library.get(call.me, call.params["id"])
        return 200, FileBody(path, AUDIO_TYPE, disposition(row, track, download))

    async def waveform(self, call: ApiCall) -> Response:
        points = await self._library.waveform(call.me, call.params["id"])
        return 200, {"points": points}


NO_RECORDING = error("No such recording, or not the owner's or a friend's: the same answer either way.")


#: The OpenAPI paths of these routes (web/openapi.py puts the document together).
OPENAPI_PATHS: dict[str, Any] = {
    "/api/recordings": {
        "get": {
            "summary": "Your and your friends' recordings, newest first.",
            "parameters": [
                {"name": "owner", "in": "query", "schema": {"type": "string", "maxLength": USERNAME_MAX}},
                {"name": "cursor", "in": "query", "schema": {"type": "string", "maxLength": CURSOR_MAX}},
                {
                    "name": "limit",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 1, "maximum": PAGE_MAX, "default": PAGE_DEFAULT},
                },
            ],
            "responses": {
                "200": ok(
                    "One page.",
                    {
                        "type": "object",
                        "required": ["recordings", "next"],
                        "additionalProperties": False,
                        "properties": {
                            "recordings": {"type": "array", "items": ref("Recording")},
                            "next": {"type": ["string", "null"]},
                        },
                    },
                ),
                **COMMON_ERRORS,
            },
        }
    },
    "/api/recordings/{id}": {
        "get": {
            "summary": "One recording's details.",
            "parameters": [RECORDING_ID],
            "responses": {
                "200": ok(
                    "The recording.",
                    {
                        "type": "object",
                        "required": ["recording"],
                        "additionalProperties": False,
                        "properties": {"recording": ref("Recording")},
                    },
                ),
                "404": NO_RECORDING,
                **COMMON_ERRORS,
            },
        },
        "delete": {
            "summary": "Delete your recording: its row and both files.",
            "parameters": [RECORDING_ID],
            "responses": {"204": ok("Deleted."), "404": NO_RECORDING, **COMMON_ERRORS},
        },
    },
    "/api/recordings/{id}/audio": {
        "get": {
            "summary": "A track as Ogg/Opus, with HTTP Range and If-Range for seeking.",
            "description": (
                "Up to 16 byte ranges; overlapping or nearly adjacent ranges are merged "
                "(RFC 9110), so no byte is sent twice."
            ),
            "parameters": [
                RECORDING_ID,
                {
                    "name": "track",
                    "in": "query",
                    "schema": {"type": "string", "enum": ["denoised", "raw"], "default": "denoised"},
                },
                {
                    "name": "download",
                    "in": "query",
                    "description": "Present (any value): Content-Disposition is attachment instead of inline.",
                    "schema": {"type": "string"},
                },
            ],
            "responses": {
                "200": {
                    "description": "The whole file, with Content-Disposition naming it "
                    "<owner>-<YYYY-MM-DD-HHMM>-<track>.ogg.",
                    "content": {"audio/ogg": {}},
                },
                "206": {"description": "The requested range(s).", "content": {"audio/ogg": {}}},
                "404": NO_RECORDING,
                "416": error("The range is malformed or outside the file."),
                **COMMON_ERRORS,
            },
        }
    },
    "/api/recordings/{id}/waveform": {
        "get": {
            "summary": "Peak magnitudes of the denoised track at a fixed resolution, for drawing.",
            "parameters": [RECORDING_ID],
            "responses": {
                "200": ok(
                    "The peaks, each in [0, 1].",
                    {
                        "type": "object",
                        "required": ["points"],
                        "additionalProperties": False,
                        "properties": {
                            "points": {"type": "array", "items": {"type": "number", "minimum": 0, "maximum": 1}}
                        },
                    },
                ),
                "404": NO_RECORDING,
                **COMMON_ERRORS,
            },
        }
    },
}
