"""The extension's HTTP API, as far as the Python DurableOrchestrationClient uses it.

The SDK's client sends every call to `rpcBaseUrl` (the extension's loopback listener,
no auth): POST orchestrators/{name}[/{id}], GET instances/{id}, POST
instances/{id}/terminate?reason=…, POST instances/{id}/raiseEvent/{event}, DELETE
instances/?createdTimeFrom=…[&createdTimeTo=…][&runtimeStatus=A,B] (purge_instance_history_by).
The answers follow HttpApiHandler: 202 with the check-status payload on start; 404 without
a body for an unknown instance; 202 (running) or 200 (finished) with the status payload;
410 for a finished instance on terminate and raiseEvent; 400 `{Message, ExceptionMessage,
ExceptionType, StackTrace}` for an unknown orchestrator or a bad id; 500 with the same
shape when the id is taken by an instance that is still running (DTFx's
OrchestrationAlreadyExistsException, which the SDK raises with that body); on a purge,
200 `{"instancesDeleted": n}`, or 404 without a body when none matched, and 400 with a
JSON string when createdTimeFrom is missing or unreadable (`_purge` says which instances
match).

`handle()` is transport-free: the stand-in serves it over aiohttp, the test framework
calls it in-process from a real DurableOrchestrationClient.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import quote

from devhost.durable import history as h
from devhost.durable.decisions import Registry, UnregisteredFunction
from devhost.durable.instances import Instance, Message

WEBHOOK_PATH = "/runtime/webhooks/durabletask"
MAX_INSTANCE_ID_LENGTH = 256
_START = re.compile(r"orchestrators/(?P<name>[^/]+)(?:/(?P<id>[^/]+))?/?")
_INSTANCE = re.compile(r"instances/(?P<id>[^/]+)/?")
_TERMINATE = re.compile(r"instances/(?P<id>[^/]+)/terminate/?")
_RAISE = re.compile(r"instances/(?P<id>[^/]+)/raiseEvent/(?P<event>[^/]+)/?")
_ALL_INSTANCES = re.compile(r"instances/?")
_STILL_RUNNING = ("Running", "Pending", "ContinuedAsNew", "Suspended")
# DurableTask.Core's OrchestrationStatus, by value: the query may name a status either way.
_STATUSES = (
    "Running", "Completed", "ContinuedAsNew", "Failed", "Canceled", "Terminated", "Pending",
    "Suspended",
)  # fmt: skip
# The only statuses the Azure Storage provider purges by filter (AzureTableTrackingStore).
_PURGEABLE = frozenset({"Completed", "Terminated", "Canceled", "Failed"})


class Backend(Protocol):
    """What the API needs from whoever runs the instances."""

    @property
    def registry(self) -> Registry: ...

    @property
    def task_hub(self) -> str: ...

    @property
    def system_key(self) -> str: ...

    async def create(self, name: str, instance_id: str, input_value: Any) -> bool:
        """Start it; False when an instance with this id is still running."""
        ...

    async def get(self, instance_id: str) -> Instance | None: ...

    async def send(self, message: Message) -> None: ...

    async def purge(
        self, created_from: datetime, created_to: datetime, statuses: frozenset[str] | None
    ) -> int:
        """Delete every instance created in [created_from, created_to] whose status is in
        `statuses` (any status: None), with its history and messages; how many."""
        ...

    def clock(self) -> datetime:
        """Now, by the backend's clock (virtual in the test framework)."""
        ...


@dataclass(frozen=True)
class ApiResponse:
    status: int
    body: Any = None  # a JSON value; None: no body
    headers: dict[str, str] = field(default_factory=dict)


async def handle(
    backend: Backend,
    method: str,
    path: str,
    query: Mapping[str, str],
    body: bytes | None,
    *,
    content_type: str | None,
    origin: str,
) -> ApiResponse:
    """One request; `path` is relative to rpcBaseUrl, `origin` is scheme://host:port."""
    query = {k.lower(): v for k, v in query.items()}  # the extension reads it case-insensitively
    try:
        if match := _START.fullmatch(path):
            if method != "POST":
                return ApiResponse(404)
            return await _start(backend, match["name"], match["id"], body, origin)
        if match := _TERMINATE.fullmatch(path):
            if method != "POST":
                return ApiResponse(404)
            return await _terminate(backend, match["id"], query.get("reason", ""))
        if match := _RAISE.fullmatch(path):
            if method != "POST":
                return ApiResponse(404)
            return await _raise_event(backend, match["id"], match["event"], body, content_type)
        if (match := _INSTANCE.fullmatch(path)) and method == "GET":
            return await _status(backend, match["id"], query, f"{origin}/durabletask/{path}")
        if _ALL_INSTANCES.fullmatch(path) and method == "DELETE":
            return await _purge(backend, query)
    except _BadArgument as exc:
        return _error(400, "One or more of the arguments submitted is incorrect", exc)
    return ApiResponse(404)


class _BadArgument(ValueError):
    type_name = "System.ArgumentException"


class _AlreadyExists(RuntimeError):
    type_name = "DurableTask.Core.Exceptions.OrchestrationAlreadyExistsException"


async def _start(
    backend: Backend, name: str, instance_id: str | None, body: bytes | None, origin: str
) -> ApiResponse:
    try:
        backend.registry.check(name, "orchestrator")
    except UnregisteredFunction as exc:
        raise _BadArgument(str(exc)) from None
    if instance_id is None:
        instance_id = uuid.uuid4().hex
    elif instance_id.startswith("@"):
        raise _BadArgument("Orchestration instance ids must not start with @.")
    elif any(c in "/\\#?" or ord(c) < 32 or 127 <= ord(c) < 160 for c in instance_id):
        raise _BadArgument(
            "Orchestration instance ids must not contain /, \\, #, ?, or control characters."
        )
    if len(instance_id) > MAX_INSTANCE_ID_LENGTH:
        raise _BadArgument(
            f"Instance ID lengths must not exceed {MAX_INSTANCE_ID_LENGTH} characters."
        )
    input_value = None
    if body:
        try:
            # The SDK posts its JSON text as a JSON string: the input is that text.
            input_value = json.loads(body)
        except ValueError:
            return _error(400, "Invalid JSON content", ValueError("Invalid JSON content"))
    if not await backend.create(name, instance_id, input_value):
        exists = _AlreadyExists("An Orchestration instance with the status Running already exists.")
        return _error(500, "Something went wrong while processing your request", exists)
    payload = management_payload(origin, instance_id, backend.task_hub, backend.system_key)
    headers = {"Location": payload["statusQueryGetUri"], "Retry-After": "10"}
    return ApiResponse(202, payload, headers)


async def _status(
    backend: Backend, instance_id: str, query: Mapping[str, str], url: str
) -> ApiResponse:
    instance = await backend.get(instance_id)
    if instance is None:
        return ApiResponse(404)
    payload: dict[str, Any] = {
        "name": instance.name,
        "instanceId": instance.instance_id,
        "runtimeStatus": instance.status,
        "input": instance.input if query.get("showinput", "true").lower() != "false" else None,
        "customStatus": instance.custom_status,
        "output": instance.output,
        "createdTime": _time(instance.created),
        "lastUpdatedTime": _time(instance.updated),
    }
    if query.get("showhistory", "").lower() == "true":
        payload["historyEvents"] = instance.history
    if instance.status in _STILL_RUNNING:
        return ApiResponse(202, payload, {"Location": url, "Retry-After": "5"})
    return ApiResponse(200, payload)


async def _terminate(backend: Backend, instance_id: str, reason: str) -> ApiResponse:
    instance = await backend.get(instance_id)
    if instance is None:
        return ApiResponse(404)
    if instance.status not in _STILL_RUNNING:
        return ApiResponse(410)
    event = h.execution_terminated(backend.clock(), reason)
    await backend.send(Message(instance_id, None, event, f"terminate:{uuid.uuid4().hex}"))
    return ApiResponse(202)


async def _raise_event(
    backend: Backend, instance_id: str, name: str, body: bytes | None, content_type: str | None
) -> ApiResponse:
    instance = await backend.get(instance_id)
    if instance is None:
        return ApiResponse(404)
    if instance.status not in _STILL_RUNNING:
        return ApiResponse(410)
    if (content_type or "").split(";")[0].strip().lower() != "application/json":
        return ApiResponse(400, {"Message": "Only application/json request content is supported"})
    try:
        value = json.loads(body) if body else None
    except ValueError:
        return _error(400, "Invalid JSON content", ValueError("Invalid JSON content"))
    event = h.event_raised(backend.clock(), name, None if value is None else h.json_text(value))
    await backend.send(Message(instance_id, None, event, f"event:{uuid.uuid4().hex}"))
    return ApiResponse(202)


async def _purge(backend: Backend, query: Mapping[str, str]) -> ApiResponse:
    """HandleDeleteHistoryWithFiltersRequestAsync on the Azure Storage provider: created
    in [createdTimeFrom, createdTimeTo] (both inclusive; createdTimeTo defaults to now),
    status among runtimeStatus's terminal ones. Unreadable statuses are dropped, and when
    no terminal one is left there is no status condition at all: every instance created
    in range goes, running or not, as it does on Azure. Callers name their statuses."""
    created_from = _query_time(query.get("createdtimefrom"))
    if created_from is None:
        return ApiResponse(400, "Please provide value for 'createdTimeFrom' parameter.")
    created_to = _query_time(query.get("createdtimeto")) or backend.clock()
    named = {_status_name(s) for s in query.get("runtimestatus", "").split(",")}
    statuses = frozenset(s for s in named if s in _PURGEABLE) or None
    deleted = await backend.purge(created_from, created_to, statuses)
    if deleted == 0:
        return ApiResponse(404)
    return ApiResponse(200, {"instancesDeleted": deleted})


def _query_time(text: str | None) -> datetime | None:
    """A query's DateTime as the extension reads it; the SDK sends `%Y-%m-%dT%H:%M:%S.%fZ`,
    whose year strftime may leave unpadded (year 1 is `1-01-01…`), which the extension pads."""
    if not text:
        return None
    year, dash, rest = text.partition("-")
    if dash and 0 < len(year) < 4 and year.isdigit():
        text = f"{year.zfill(4)}-{rest}"
    try:
        return h.parse_timestamp(text)
    except ValueError:
        return None


def _status_name(text: str) -> str | None:
    """Enum.TryParse: a member's name (case-sensitive) or its number, spaces around ignored."""
    text = text.strip()
    if text in _STATUSES:
        return text
    if text.isdigit() and int(text) < len(_STATUSES):
        return _STATUSES[int(text)]
    return None


def management_payload(
    origin: str, instance_id: str, task_hub: str, system_key: str
) -> dict[str, str]:
    """HttpManagementPayload for one instance: webhook URLs carrying the system key."""
    base = f"{origin}{WEBHOOK_PATH}/instances/{quote(instance_id, safe='')}"
    query = f"taskHub={task_hub}&connection=Storage&code={system_key}"
    return {
        "id": instance_id,
        "statusQueryGetUri": f"{base}?{query}",
        "sendEventPostUri": f"{base}/raiseEvent/{{eventName}}?{query}",
        "terminatePostUri": f"{base}/terminate?reason={{text}}&{query}",
        "purgeHistoryDeleteUri": f"{base}?{query}",
        "restartPostUri": f"{base}/restart?{query}",
        "suspendPostUri": f"{base}/suspend?reason={{text}}&{query}",
        "resumePostUri": f"{base}/resume?reason={{text}}&{query}",
    }


def client_binding(host_origin: str, rpc_base_url: str, task_hub: str, system_key: str) -> str:
    """The durableClient input binding as the extension hands it to a Python function:
    compact JSON (null members included) with the webhook URLs and `rpcBaseUrl`."""
    webhook = f"{host_origin}{WEBHOOK_PATH}"
    create = f"{webhook}/orchestrators/{{functionName}}[/{{instanceId}}]"
    management = management_payload(host_origin, "INSTANCEID", task_hub, system_key)
    return json.dumps(
        {
            "taskHubName": task_hub,
            "creationUrls": {
                "createNewInstancePostUri": f"{create}?code={system_key}",
                "createAndWaitOnNewInstancePostUri": f"{create}?timeout={{timeoutInSeconds}}"
                f"&pollingInterval={{intervalInSeconds}}&code={system_key}",
            },
            "managementUrls": management,
            "baseUrl": webhook,
            "requiredQueryStringParameters": f"code={system_key}",
            "rpcBaseUrl": rpc_base_url,
            "httpBaseUrl": None,
            "connectionName": None,
        },
        separators=(",", ":"),
    )


def _error(status: int, message: str, exc: Exception) -> ApiResponse:
    type_name = getattr(exc, "type_name", "System.ArgumentException")
    body = {
        "Message": message,
        "ExceptionMessage": str(exc),
        "ExceptionType": type_name,
        "StackTrace": None,
    }
    return ApiResponse(status, body)


def _time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
