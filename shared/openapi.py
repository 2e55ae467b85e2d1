"""The OpenAPI 3.1 document of every public route, as served at /api/openapi.json.

Mobile teams generate their clients from it, so `make test` checks the running app
against it (schemathesis: every answer must match, none may be a 5xx it does not list).
Limits and patterns here are the ones the code enforces (they are imported, not copied).
"""

from __future__ import annotations

from typing import Any

from shared import conversations, twiml
from shared.broadcasts import MAX_PAGE
from shared.idempotency import KEY_HEADER, MAX_KEY_LENGTH
from shared.settings import Settings
from shared.voices import ACCEPTED_VOICES

PROBLEM = "application/problem+json"
Security = list[dict[str, list[str]]]
_DESCRIPTIONS = {
    400: "Malformed body, or invalid fields (each listed in `errors`)",
    401: "Missing or invalid credentials (a `WWW-Authenticate` challenge says which)",
    403: "Not allowed: destination, sender, TwiML URL, Twilio signature, scope; or Twilio refused",
    404: "Not found",
    405: "Method not allowed",
    409: "Recipient opted out (`twilioCode` 21610), or the same Idempotency-Key is still in "
    "flight or its outcome is still being checked with Twilio (retry after Retry-After)",
    413: "The body is larger than this route accepts (`maxBytes`)",
    415: "Body is neither JSON nor form-encoded",
    422: "Twilio refused the number or request (`twilioCode`), or an Idempotency-Key was reused",
    429: "A limit is reached (`limit` names it); nothing was sent",
    500: "The server is misconfigured (its Twilio account, sender or a setting)",
    502: "Twilio failed or could not be reached; `outcome` says whether the message or call "
    "may have been sent",
    503: "A setting is missing, the state store is down, or Twilio is rate limiting; retry later",
    504: "Twilio did not answer in time; the message or call may have been sent "
    "(`outcome`: unknown)",
}
_RETRY_AFTER = {409, 429, 503}


def openapi_document(settings: Settings) -> dict[str, Any]:
    mobile_security: Security = [{_scheme_name(settings): []}]
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "twilio-functions",
            "version": "1.0.0",
            "description": "Phone calls and SMS for mobile apps through Twilio, without Twilio "
            "credentials on the device; TwiML and status callbacks for Twilio.",
        },
        "paths": {
            "/SendSms": {
                "post": _create(
                    "sendSms", "Send an SMS or MMS", "SendSmsRequest", "SmsResult", mobile_security
                )
            },
            "/MakeCall": {
                "post": _create(
                    "makeCall",
                    "Place a voice call that says `message` (or runs your TwiML `url`)",
                    "MakeCallRequest",
                    "CallResult",
                    mobile_security,
                )
            },
            "/TwiML": {"get": _twiml("get"), "post": _twiml("post")},
            "/StatusCallback": {"post": _status_callback()},
            "/IncomingCall": {
                "get": _incoming_call_twiml("incomingCall", "get"),
                "post": _incoming_call_twiml("incomingCall", "post"),
            },
            "/IncomingCall/DialAction": {"post": _incoming_call_twiml("incomingCallDialAction")},
            "/IncomingCall/RecordAction": {
                "post": _incoming_call_twiml("incomingCallRecordAction")
            },
            "/IncomingCall/RecordingStatus": {"post": _recording_status()},
            "/IncomingSms": {"post": _incoming_sms()},
            "/conversations/{number}": {"get": _conversation(mobile_security)},
            "/messages/{sid}": {"get": _delivery("message", mobile_security)},
            "/calls/{sid}": {"get": _delivery("call", mobile_security)},
            "/broadcasts": {"post": _start_broadcast(mobile_security)},
            "/broadcasts/{id}": {
                "get": _broadcast_status(mobile_security),
                "delete": _cancel_broadcast(mobile_security),
            },
            "/health": {"get": _health()},
            "/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "summary": "This document",
                    "security": [],
                    "responses": {
                        "200": {"description": "OpenAPI 3.1", "content": {"application/json": {}}}
                    },
                }
            },
        },
        "components": {"schemas": _schemas(), "securitySchemes": _security_schemes(settings)},
    }
    if settings.public_base_url:
        document["servers"] = [{"url": f"{settings.public_base_url}/api"}]
    return document


# Operations -------------------------------------------------------------------------------


def _create(
    operation_id: str, summary: str, request: str, result: str, security: Security
) -> dict[str, Any]:
    return {
        "operationId": operation_id,
        "summary": summary,
        "security": security,
        "parameters": [_idempotency_key()],
        "requestBody": _body(request),
        "responses": {
            "201": _json("Accepted by Twilio", result),
            **_problems(400, 401, 403, 409, 413, 415, 422, 429, 500, 502, 503, 504),
        },
    }


def _twiml(method: str) -> dict[str, Any]:
    query = [
        _query(
            "message",
            {"type": "string", "maxLength": twiml.MAX_SAY_CHARACTERS},
            "Spoken text, or an http(s) URL to play",
        ),
        _query("voice", {"type": "string"}, ACCEPTED_VOICES),
        _query("language", {"type": "string"}, "A language tag such as en-US"),
        _query("loop", {"type": "string", "pattern": "^[0-9]+$"}, f"1 to {twiml.MAX_LOOP}"),
    ]
    operation: dict[str, Any] = {
        "operationId": f"twiml{method.title()}",
        "summary": "TwiML for a call (for Twilio: requires a valid X-Twilio-Signature)",
        "security": [],
        "parameters": [*query, _twilio_signature()],
        "responses": {
            "200": _twiml_answer(),
            **_problems(400, 403, 413, 503),
        },
    }
    if method == "post":
        operation["requestBody"] = _twilio_form("Twilio's call parameters (CallSid, From, To, …)")
    return operation


def _twiml_answer(description: str = "TwiML") -> dict[str, Any]:
    """A 200 whose body is TwiML: what Twilio's voice and messaging webhooks answer."""
    return {
        "description": description,
        "content": {"application/xml": {"schema": {"type": "string"}}},
    }


def _status_callback() -> dict[str, Any]:
    return {
        "operationId": "statusCallback",
        "summary": "Twilio's message and call status callbacks (requires X-Twilio-Signature)",
        "security": [],
        "parameters": [_twilio_signature()],
        "requestBody": _twilio_form("MessageSid/MessageStatus or CallSid/CallStatus, …"),
        "responses": {
            "204": {"description": "Recorded (or ignored: duplicate, late)"},
            **_problems(400, 403, 413, 415, 503),
        },
    }


_INCOMING_CALL_SUMMARIES = {
    "incomingCall": "A Twilio number's voice webhook: forward, else voicemail",
    "incomingCallDialAction": "After the forward: hang up if answered, else voicemail",
    "incomingCallRecordAction": "After the voicemail: remember who called, hang up",
}


def _incoming_call_twiml(operation_id: str, method: str = "post") -> dict[str, Any]:
    summary = _INCOMING_CALL_SUMMARIES[operation_id]
    operation: dict[str, Any] = {
        "operationId": f"{operation_id}{method.title()}" if method == "get" else operation_id,
        "summary": f"{summary} (for Twilio: requires a valid X-Twilio-Signature)",
        "security": [],
        "parameters": [_twilio_signature()],
        "responses": {
            "200": _twiml_answer(),
            **_problems(400, 403, 413, 415, 500, 503),
        },
    }
    if method == "post":
        operation["requestBody"] = _twilio_form("Twilio's call parameters (CallSid, From, To, …)")
    return operation


def _recording_status() -> dict[str, Any]:
    return {
        "operationId": "recordingStatus",
        "summary": "Twilio's recording status callback for a voicemail (requires "
        "X-Twilio-Signature)",
        "security": [],
        "parameters": [_twilio_signature()],
        "requestBody": _twilio_form("CallSid, RecordingSid, RecordingUrl, RecordingStatus, …"),
        "responses": {
            "204": {"description": "Stored (or ignored: a duplicate, an untracked status)"},
            **_problems(400, 403, 413, 415, 503),
        },
    }


def _incoming_sms() -> dict[str, Any]:
    return {
        "operationId": "incomingSms",
        "summary": "Twilio's incoming-message webhook (requires X-Twilio-Signature): stores the "
        "message, applies STOP/START at once",
        "security": [],
        "parameters": [_twilio_signature()],
        "requestBody": _twilio_form("MessageSid, From, To, Body, NumMedia, MediaUrl0, …"),
        "responses": {
            "200": _twiml_answer("TwiML: empty, or INBOUND_SMS_AUTO_REPLY (never to a keyword)"),
            **_problems(400, 403, 413, 415, 503),
        },
    }


def _conversation(security: Security) -> dict[str, Any]:
    return {
        "operationId": "conversation",
        "summary": "The caller's messages with one number (its sends, the number's replies "
        "since), newest first; empty for a number the caller never sent to",
        "security": security,
        "parameters": [
            {
                "name": "number",
                "in": "path",
                "required": True,
                "schema": {"type": "string", "maxLength": 64},
                "description": "E.164, e.g. +14155550100 (national formats with DEFAULT_REGION)",
            },
            _query(
                "limit",
                {"type": "integer", "minimum": 1, "maximum": conversations.MAX_PAGE},
                f"Messages per page, 1 to {conversations.MAX_PAGE} "
                f"(default {conversations.DEFAULT_PAGE})",
            ),
            _query(
                "after",
                {"type": "string", "maxLength": 120},
                "The `next` token of the previous page",
            ),
        ],
        "responses": {"200": _json("A page", "Conversation"), **_problems(400, 401, 403, 503)},
    }


def _delivery(kind: str, security: Security) -> dict[str, Any]:
    return {
        "operationId": f"{kind}Status",
        "summary": f"The {kind}'s current status and its history",
        "security": security,
        "parameters": [
            {"name": "sid", "in": "path", "required": True, "schema": {"type": "string"}}
        ],
        "responses": {"200": _json("Status", "DeliveryStatus"), **_problems(401, 403, 404, 503)},
    }


def _start_broadcast(security: Security) -> dict[str, Any]:
    return {
        "operationId": "startBroadcast",
        "summary": "Send one message to many recipients (Durable Functions)",
        "security": security,
        "parameters": [_idempotency_key()],
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _ref("BroadcastRequest")}},
        },
        "responses": {
            "202": {
                **_json("Accepted; follow statusUrl", "BroadcastAccepted"),
                "headers": {
                    "Location": {"schema": {"type": "string"}, "description": "Our status URL"}
                },
            },
            **_problems(400, 401, 403, 413, 415, 422, 429, 500, 503),
        },
    }


def _broadcast_status(security: Security) -> dict[str, Any]:
    return {
        "operationId": "broadcastStatus",
        "summary": "Progress, counts and per-recipient results (paged)",
        "security": security,
        "parameters": [
            {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}},
            _query("offset", {"type": "integer", "minimum": 0}, "First recipient index"),
            _query(
                "limit", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE}, "Results per page"
            ),
        ],
        "responses": {
            "200": _json("Status", "BroadcastStatus"),
            **_problems(400, 401, 403, 404, 503),
        },
    }


def _cancel_broadcast(security: Security) -> dict[str, Any]:
    return {
        "operationId": "cancelBroadcast",
        "summary": "Cancel: recipients not yet sent are never sent",
        "security": security,
        "parameters": [
            {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
        ],
        "responses": {
            "202": {
                "description": "Cancelled",
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["id", "cancelled"],
                            "properties": {"id": {"type": "string"}, "cancelled": {"const": True}},
                        }
                    }
                },
            },
            **_problems(401, 403, 404, 503),
        },
    }


def _health() -> dict[str, Any]:
    return {
        "operationId": "health",
        "summary": "Whether Twilio is configured (live, sandbox or missing); no secrets",
        "security": [],
        "responses": {"200": _json("OK", "Health"), **_problems(500)},
    }


# Pieces ----------------------------------------------------------------------------------


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(description: str, schema: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(schema)}}}


def _body(schema: str) -> dict[str, Any]:
    return {
        "required": True,
        "content": {
            "application/json": {"schema": _ref(schema)},
            "application/x-www-form-urlencoded": {"schema": _ref(schema)},
        },
    }


def _twilio_form(description: str) -> dict[str, Any]:
    schema = {"type": "object", "additionalProperties": {"type": "string"}}
    return {
        "description": description,
        "content": {"application/x-www-form-urlencoded": {"schema": schema}},
    }


def _problems(*statuses: int) -> dict[str, Any]:
    responses = {}
    for status in statuses:
        response: dict[str, Any] = {
            "description": _DESCRIPTIONS[status],
            "content": {PROBLEM: {"schema": _ref("Problem")}},
        }
        if status in _RETRY_AFTER:
            response["headers"] = {
                "Retry-After": {"schema": {"type": "string"}, "description": "Seconds to wait"}
            }
        if status == 401:
            response["headers"] = {
                "WWW-Authenticate": {"schema": {"type": "string"}, "required": True}
            }
        responses[str(status)] = response
    return responses


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


def _idempotency_key() -> dict[str, Any]:
    return {
        "name": KEY_HEADER,
        "in": "header",
        "required": False,
        "description": "Retry safely: the same key and body within 24 h get the first answer",
        "schema": {
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_KEY_LENGTH,
            "pattern": "^[\\x20-\\x7e]+$",
        },
    }


def _twilio_signature() -> dict[str, Any]:
    return {
        "name": "X-Twilio-Signature",
        "in": "header",
        "required": False,
        "schema": {"type": "string"},
    }


def _scheme_name(settings: Settings) -> str:
    return {"function-key": "functionKey", "easyauth": "easyAuth", "jwt": "bearer"}[
        settings.caller_auth
    ]


def _security_schemes(settings: Settings) -> dict[str, Any]:
    if settings.caller_auth == "function-key":
        return {"functionKey": {"type": "apiKey", "in": "header", "name": "x-functions-key"}}
    if settings.caller_auth == "easyauth":
        return {
            "easyAuth": {
                "type": "http",
                "scheme": "bearer",
                "description": "App Service Authentication",
            }
        }
    return {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}


def _schemas() -> dict[str, Any]:
    return {**_request_schemas(), **_response_schemas()}


def _request_schemas() -> dict[str, Any]:
    """From the declarations the routes validate with and answer by (shared/shapes.py)."""
    import msgspec

    from shared.shapes import REQUESTS, RESPONSES

    _, components = msgspec.json.schema_components(
        (*REQUESTS, *RESPONSES), ref_template="#/components/schemas/{name}"
    )
    return components


def _response_schemas() -> dict[str, Any]:
    nullable_string = {"type": ["string", "null"]}
    return {
        "Problem": {
            "type": "object",
            "description": "RFC 9457 problem details",
            "required": ["type", "title", "status", "detail"],
            "properties": {
                "type": {"type": "string"},
                "title": {"type": "string"},
                "status": {"type": "integer"},
                "detail": {"type": "string"},
                "errors": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["field", "message"],
                        "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
                    },
                },
                "twilioCode": {"type": "integer"},
                "setting": {"type": "string"},
                "rule": {
                    "type": "string",
                    "description": "Which rule refused the request (limit, destination-country, "
                    "destination-number-type, sender, twiml-url, play-url, opt-out, "
                    "idempotency-key, body-size, twilio-signature, bearer-token, …)",
                },
                "limit": {"enum": ["destination", "caller", "global"]},
                "outcome": {
                    "enum": ["unknown", "not-sent"],
                    "description": "After a failure on the way to Twilio: `unknown` means the "
                    "message or call may have been sent (retry with the same Idempotency-Key "
                    "to find out); `not-sent` means it was not",
                },
                "numberType": {"type": "string"},
                "country": {"type": "string"},
                "field": {"type": "string"},
                "maxBytes": {"type": "integer"},
            },
        },
        "BroadcastAccepted": {
            "type": "object",
            "required": ["id", "statusUrl", "accepted", "rejected", "replayed"],
            "properties": {
                "id": {"type": "string"},
                "statusUrl": {"type": "string"},
                "accepted": {"type": "integer"},
                "rejected": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {"to": {"type": "string"}, "error": {"type": "string"}},
                    },
                },
                "replayed": {"type": "boolean"},
            },
        },
        "BroadcastStatus": {
            "type": "object",
            "required": ["id", "runtimeStatus", "total", "counts", "progress", "results"],
            "properties": {
                "id": {"type": "string"},
                "runtimeStatus": {"type": "string"},
                "cancelled": {"type": "boolean"},
                "total": {"type": "integer"},
                "rejected": {"type": "integer"},
                "counts": {"type": "object", "additionalProperties": {"type": "integer"}},
                "progress": {"type": "number"},
                "createdAt": {"type": "string"},
                "results": {"type": "array", "items": {"type": "object"}},
                "offset": {"type": "integer"},
                "limit": {"type": "integer"},
            },
        },
        "Health": {
            "type": "object",
            "required": ["status", "twilio"],
            "properties": {
                "status": {"const": "ok"},
                "twilio": {"enum": ["live", "sandbox", "missing"]},
                "publicBaseUrl": nullable_string,
            },
        },
    }
