"""
The OpenAPI 3 description of the JSON API, served at /api/openapi.json.

It is written by hand: each route module under web/routes/ describes its own
paths (C{OPENAPI_PATHS}, beside its handlers, with the building blocks of
web/apidoc.py); this module holds the shared schemas and puts the document
together.  A test walks the route table and this document both ways and
validates real responses against the schemas, so the two cannot drift apart.
"""

from __future__ import annotations

from typing import Any

from denoisecast import __version__
from denoisecast.protocols.messages import MAX_SDP, SIGNALS
from denoisecast.web.apidoc import DATE_TIME, closed_object, ok, ref, user_with
from denoisecast.web.resource import ApiCall, Response, Route
from denoisecast.web.routes import admin, auth, friends, health, listen, recordings, streams, tokens, whep, whip

SCHEMAS: dict[str, Any] = {
    "StreamStatus": {
        "type": "object",
        "required": ["user", "live", "live_since", "denoise", "atten_lim_db", "listeners"],
        "additionalProperties": False,
        "properties": {
            "user": {"type": "string"},
            "live": {"type": "boolean"},
            "live_since": {"type": ["string", "null"], "format": "date-time"},
            "denoise": {"type": ["boolean", "null"]},
            "atten_lim_db": {"type": ["number", "null"], "minimum": 0, "maximum": 100},
            "listeners": {"type": "integer", "minimum": 0},
        },
    },
    "Offer": closed_object(sdp={"type": "string", "maxLength": MAX_SDP, "description": "A WebRTC offer (SDP) that sends audio."}),
    "ListenOffer": {
        "type": "object",
        "required": ["sdp"],
        "additionalProperties": False,
        "properties": {
            "sdp": {"type": "string", "maxLength": MAX_SDP, "description": "A WebRTC offer (SDP) that receives audio."},
            "signal": {"enum": list(SIGNALS), "default": "denoised"},
        },
    },
    "PublishAnswer": closed_object(sdp={"type": "string"}, stream={"$ref": "#/components/schemas/StreamStatus"}),
    "ListenAnswer": closed_object(
        sdp={"type": "string"},
        signal={"enum": list(SIGNALS)},
        stream={"$ref": "#/components/schemas/StreamStatus"},
    ),
    "Error": {
        "type": "object",
        "required": ["error"],
        "additionalProperties": False,
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "additionalProperties": False,
                "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
            }
        },
    },
    "User": user_with(),
    "UserEnvelope": {
        "type": "object",
        "required": ["user"],
        "additionalProperties": False,
        "properties": {"user": ref("User")},
    },
    "SearchResult": {
        "type": "object",
        "required": ["users", "next"],
        "additionalProperties": False,
        "properties": {
            "users": {
                "type": "array",
                "items": user_with(
                    relationship={"type": "string", "enum": ["none", "friend", "incoming", "outgoing"]}
                ),
            },
            "next": {"type": ["string", "null"]},
        },
    },
    "FriendList": closed_object(friends={"type": "array", "items": user_with(since=DATE_TIME)}),
    "RequestList": closed_object(
        incoming={"type": "array", "items": user_with(sent_at=DATE_TIME)},
        outgoing={"type": "array", "items": user_with(sent_at=DATE_TIME)},
    ),
    "FriendStatus": {
        "type": "object",
        "required": ["status"],
        "additionalProperties": False,
        "properties": {"status": {"type": "string", "enum": ["requested", "friends"]}},
    },
    "Health": {
        "type": "object",
        "required": ["status", "database", "version"],
        "additionalProperties": False,
        "properties": {
            "status": {"type": "string", "enum": ["ok", "degraded"]},
            "database": {"type": "string"},
            "disk": {
                "type": "string",
                "enum": ["ok", "low", "full", "error"],
                "description": (
                    "The recordings disk: under the free-space floor (low), a write failed for "
                    "lack of room (full) or otherwise (error); new recordings are refused until ok."
                ),
            },
            "disk_free_bytes": {"type": "integer"},
            "worker": {
                "type": "integer",
                "description": "Which of the --workers processes answered (absent without --workers).",
            },
            "node": {"type": "string", "description": "This node's id on the live bus (--node-id)."},
            "bus": {
                "type": "string",
                "enum": ["in-process", "redis", "unreachable"],
                "description": (
                    "The live bus: in this process (one node), on Redis, or unreachable (Redis is "
                    "away; this node serves its own users, and status is degraded)."
                ),
            },
            "version": {"type": "string"},
        },
    },
    "Recording": {
        "type": "object",
        "required": [
            "id", "owner", "started_at", "ended_at", "duration_seconds", "denoised_bytes",
            "raw_bytes", "model", "status", "denoise", "timeline",
        ],
        "additionalProperties": False,
        "properties": {
            "id": {"type": "string"},
            "owner": {"type": "string"},
            "started_at": {"type": "string", "format": "date-time"},
            "ended_at": {"type": ["string", "null"], "format": "date-time"},
            "duration_seconds": {"type": "number"},
            "denoised_bytes": {"type": "integer"},
            "raw_bytes": {"type": "integer"},
            "model": {"type": "string"},
            "status": {"type": "string", "enum": ["recording", "complete", "interrupted", "stopped_early"]},
            "denoise": {"type": "boolean", "description": "Whether denoise was on when the broadcast began."},
            "timeline": {
                "type": "array",
                "description": "Denoise settings over time, seconds from the start.",
                "items": {
                    "type": "object",
                    "required": ["t", "denoise", "atten_lim_db"],
                    "additionalProperties": False,
                    "properties": {
                        "t": {"type": "number"},
                        "denoise": {"type": "boolean"},
                        "atten_lim_db": {"type": "number"},
                    },
                },
            },
        },
    },
    "CsrfToken": {
        "type": "object",
        "required": ["csrf_token"],
        "additionalProperties": False,
        "properties": {"csrf_token": {"type": "string"}},
    },
}

SCHEMAS["AdminAccount"] = {
    "type": "object",
    "required": ["username", "created_at", "is_admin", "disabled"],
    "additionalProperties": False,
    "properties": {
        "username": {"type": "string"},
        "created_at": DATE_TIME,
        "is_admin": {"type": "boolean"},
        "disabled": {"type": "boolean"},
        "recordings": {"type": "integer", "minimum": 0, "description": "In the user list: how many."},
        "bytes": {"type": "integer", "minimum": 0, "description": "In the user list: storage used, both tracks."},
    },
}

SCHEMAS.update(tokens.OPENAPI_SCHEMAS)

PATHS: dict[str, Any] = {
    "/api/openapi.json": {
        "get": {
            "summary": "This document.",
            "security": [],
            "responses": {"200": ok("The OpenAPI document.", {"type": "object"})},
        }
    },
    **health.OPENAPI_PATHS,
    **auth.OPENAPI_PATHS,
    **friends.OPENAPI_PATHS,
    **streams.OPENAPI_PATHS,
    **recordings.OPENAPI_PATHS,
    **admin.OPENAPI_PATHS,
    **tokens.OPENAPI_PATHS,
    **whip.OPENAPI_PATHS,
    **whep.OPENAPI_PATHS,
    # Outside the route table: an Ogg stream, JSON errors all the same.
    **listen.OPENAPI_PATHS,
}

DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "DenoiseCast API",
        "version": __version__,
        "description": (
            "JSON API of a DenoiseCast server. Errors always have the shape "
            '{"error": {"code": ..., "message": ...}}. State-changing requests '
            "need the X-CSRF-Token header equal to the dc_csrf cookie (GET "
            "/api/csrf sets it). Bodies are limited in size (413)."
        ),
    },
    "components": {
        "schemas": SCHEMAS,
        "securitySchemes": {
            "session": {"type": "apiKey", "in": "cookie", "name": "dc_session"},
            "publishToken": {
                "type": "http",
                "scheme": "bearer",
                "description": "A publish token (POST /api/tokens); WHIP's routes take nothing else.",
            },
            "listenToken": {
                "type": "http",
                "scheme": "bearer",
                "description": "A listen token (POST /api/tokens); WHEP's routes and the .ogg stream (also as ?token=).",
            },
        },
    },
    "security": [{"session": []}],
    "paths": PATHS,
}


async def serve_document(call: ApiCall) -> Response:
    return 200, DOCUMENT


def routes() -> list[Route]:
    return [Route("GET", "/api/openapi.json", serve_document, auth=False)]
