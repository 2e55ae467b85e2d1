"""History events shaped as the Durable extension sends them, and the trigger payload.

The extension serialises Durable Task Framework `HistoryEvent`s with Newtonsoft's
defaults: PascalCase members, `EventType` as the enum's integer, every event with
`EventId`, `IsPlayed` and `Timestamp`. Completion events carry EventId -1 and point back
with `TaskScheduledId`/`TimerId`; scheduling events carry the sequence id as EventId.
Payloads (`Input`, `Result`) are JSON *text*. An orchestrator receives
`{history, input, instanceId, isReplaying, parentInstanceId, upperSchemaVersion: 1,
upperSchemaVersionNew: 2, …}`; the SDK then replays in its schema V3.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from enum import IntEnum
from typing import Any

Event = dict[str, Any]

# SchemaVersion.V2 and V3 as the extension writes them (its enum: Original=0, V2=1, V3=2).
UPPER_SCHEMA_VERSION = 1
UPPER_SCHEMA_VERSION_NEW = 2
# Azure Storage's limits, as .NET TimeSpans: timers longer than 6 days are split in 3-day parts.
LONG_TIMER_INTERVAL = "3.00:00:00"
MAXIMUM_SHORT_TIMER = "6.00:00:00"
HTTP_ASYNC_SLEEP_MS = 30_000


class EventType(IntEnum):
    """DurableTask.Core's EventType; the order is fixed (out-of-process SDKs rely on it)."""

    EXECUTION_STARTED = 0
    EXECUTION_COMPLETED = 1
    EXECUTION_FAILED = 2
    EXECUTION_TERMINATED = 3
    TASK_SCHEDULED = 4
    TASK_COMPLETED = 5
    TASK_FAILED = 6
    SUB_ORCHESTRATION_INSTANCE_CREATED = 7
    SUB_ORCHESTRATION_INSTANCE_COMPLETED = 8
    SUB_ORCHESTRATION_INSTANCE_FAILED = 9
    TIMER_CREATED = 10
    TIMER_FIRED = 11
    ORCHESTRATOR_STARTED = 12
    ORCHESTRATOR_COMPLETED = 13
    EVENT_SENT = 14
    EVENT_RAISED = 15
    CONTINUE_AS_NEW = 16


class OrchestrationStatus(IntEnum):
    """DurableTask.Core's OrchestrationStatus (ExecutionCompleted.OrchestrationStatus)."""

    RUNNING = 0
    COMPLETED = 1
    CONTINUED_AS_NEW = 2
    FAILED = 3
    CANCELED = 4
    TERMINATED = 5
    PENDING = 6


# Completion events and the member that names the task they complete.
COMPLETION_KEYS = {
    EventType.TASK_COMPLETED: "TaskScheduledId",
    EventType.TASK_FAILED: "TaskScheduledId",
    EventType.SUB_ORCHESTRATION_INSTANCE_COMPLETED: "TaskScheduledId",
    EventType.SUB_ORCHESTRATION_INSTANCE_FAILED: "TaskScheduledId",
    EventType.TIMER_FIRED: "TimerId",
}
SCHEDULING_EVENTS = (
    EventType.TASK_SCHEDULED,
    EventType.TIMER_CREATED,
    EventType.SUB_ORCHESTRATION_INSTANCE_CREATED,
)


def format_timestamp(moment: datetime) -> str:
    """Newtonsoft's ISO form for a UTC DateTime: `…T12:00:00.05Z` (zeros trimmed)."""
    utc = moment.astimezone(UTC)
    fraction = f"{utc.microsecond:06d}".rstrip("0")
    return utc.strftime("%Y-%m-%dT%H:%M:%S") + (f".{fraction}" if fraction else "") + "Z"


def parse_timestamp(text: str) -> datetime:
    """The inverse of format_timestamp; also reads the SDK's `%f` + `Z` form of fireAt."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def json_text(value: Any) -> str:
    """A payload as the extension stores it: compact JSON (Formatting.None), not ASCII-escaped."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def event(
    kind: EventType, at: datetime, *, event_id: int = -1, played: bool = False, **members: Any
) -> Event:
    return {
        "EventType": int(kind),
        "EventId": event_id,
        "IsPlayed": played,
        "Timestamp": format_timestamp(at),
        **members,
    }


def orchestrator_started(at: datetime) -> Event:
    return event(EventType.ORCHESTRATOR_STARTED, at)


def orchestrator_completed(at: datetime) -> Event:
    return event(EventType.ORCHESTRATOR_COMPLETED, at)


def execution_started(
    at: datetime,
    *,
    name: str,
    instance_id: str,
    execution_id: str,
    input_text: str | None,
    parent: dict[str, Any] | None = None,
) -> Event:
    """`parent`: {Name, TaskScheduleId, OrchestrationInstance: {InstanceId, ExecutionId}}."""
    return event(
        EventType.EXECUTION_STARTED, at,
        OrchestrationInstance={"InstanceId": instance_id, "ExecutionId": execution_id},
        ParentInstance=parent, Name=name, Version="", Input=input_text, Tags=None,
    )  # fmt: skip


def task_scheduled(at: datetime, task_id: int, name: str, input_text: str | None) -> Event:
    return event(
        EventType.TASK_SCHEDULED, at, event_id=task_id, Name=name, Version="", Input=input_text
    )


def task_completed(at: datetime, task_id: int, result_text: str | None) -> Event:
    return event(EventType.TASK_COMPLETED, at, TaskScheduledId=task_id, Result=result_text)


def task_failed(at: datetime, task_id: int, reason: str, details: str) -> Event:
    return event(EventType.TASK_FAILED, at, TaskScheduledId=task_id, Reason=reason, Details=details)


def timer_created(at: datetime, timer_id: int, fire_at: datetime) -> Event:
    return event(EventType.TIMER_CREATED, at, event_id=timer_id, FireAt=format_timestamp(fire_at))


def timer_fired(at: datetime, timer_id: int, fire_at: datetime) -> Event:
    return event(EventType.TIMER_FIRED, at, TimerId=timer_id, FireAt=format_timestamp(fire_at))


def sub_orchestration_created(
    at: datetime, task_id: int, name: str, instance_id: str, input_text: str | None
) -> Event:
    return event(
        EventType.SUB_ORCHESTRATION_INSTANCE_CREATED, at, event_id=task_id,
        Name=name, Version="", InstanceId=instance_id, Input=input_text,
    )  # fmt: skip


def sub_orchestration_completed(at: datetime, task_id: int, result_text: str | None) -> Event:
    return event(
        EventType.SUB_ORCHESTRATION_INSTANCE_COMPLETED,
        at,
        TaskScheduledId=task_id,
        Result=result_text,
    )


def sub_orchestration_failed(at: datetime, task_id: int, reason: str, details: str | None) -> Event:
    return event(
        EventType.SUB_ORCHESTRATION_INSTANCE_FAILED, at,
        TaskScheduledId=task_id, Reason=reason, Details=details,
    )  # fmt: skip


def event_raised(at: datetime, name: str, input_text: str | None) -> Event:
    return event(EventType.EVENT_RAISED, at, Name=name, Input=input_text)


def execution_terminated(at: datetime, reason: str) -> Event:
    return event(EventType.EXECUTION_TERMINATED, at, Input=reason)


def execution_completed(
    at: datetime, status: OrchestrationStatus, result_text: str | None
) -> Event:
    kind = (
        EventType.CONTINUE_AS_NEW
        if status is OrchestrationStatus.CONTINUED_AS_NEW
        else EventType.EXECUTION_COMPLETED
    )
    return event(kind, at, OrchestrationStatus=int(status), Result=result_text, FailureDetails=None)


def mark_played(history: list[Event]) -> list[Event]:
    """Events of earlier episodes as the extension sends them: IsPlayed true (DTFx never
    sets it on OrchestratorStarted)."""
    return [
        e if e["EventType"] == EventType.ORCHESTRATOR_STARTED else {**e, "IsPlayed": True}
        for e in history
    ]


def orchestration_context(
    history: list[Event], *, instance_id: str, input_value: Any, parent_instance_id: str | None
) -> dict[str, Any]:
    """The orchestrationTrigger payload (OrchestrationContextToString): `input` is the
    instance input parsed to a JSON value, which from a Python caller is JSON text."""
    started = next(e for e in history if e["EventType"] == EventType.EXECUTION_STARTED)
    return {
        "history": history,
        "input": input_value,
        "instanceId": instance_id,
        "isReplaying": bool(started["IsPlayed"]),
        "parentInstanceId": parent_instance_id,
        "upperSchemaVersion": UPPER_SCHEMA_VERSION,
        "upperSchemaVersionNew": UPPER_SCHEMA_VERSION_NEW,
        "longRunningTimerIntervalDuration": LONG_TIMER_INTERVAL,
        "maximumShortTimerDuration": MAXIMUM_SHORT_TIMER,
        "defaultHttpAsyncRequestSleepTimeMillseconds": HTTP_ASYNC_SLEEP_MS,
    }
