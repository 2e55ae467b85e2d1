"""One instance's episodes: messages in, history and status, work out.

This is the Durable Task Framework dispatcher's part, as plain data, shared by the
virtual-clock framework (tests, benchmarks) and the wall-clock stand-in (`make run`):

    step = begin(instance, due_messages, now, new_id)     # an Episode, or an Outcome
    while isinstance(step, Episode):                     # continue-as-new runs on at once
        state = <the SDK replays step.context>            # replay.replay / the worker
        step = finish(step, state, registry, now, new_id)
    <persist step.instance, dispatch step.activities, step.timers, step.children, step.notify>

An episode appends OrchestratorStarted, the messages' events, what the extension
schedules, and OrchestratorCompleted (DTFx's layout). Messages for another execution,
completions of tasks that are not open, and anything for a finished instance are
dropped, as DTFx drops duplicates. The stored custom status is the episode's own (the
extension sets only a non-null one, on a fresh context each episode) except in the
work item that continued as new, where the new execution inherits the old one's.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from devhost.durable import history as h
from devhost.durable.decisions import Decisions, Registry, decide
from devhost.durable.history import Event, EventType, OrchestrationStatus
from devhost.durable.replay import OrchestratorState

RUNNING = ("Pending", "Running", "ContinuedAsNew", "Suspended")
CUSTOM_STATUS_LIMIT_KB = 16


@dataclass(frozen=True)
class Parent:
    instance_id: str
    execution_id: str
    task_id: int  # the parent's SubOrchestrationInstanceCreated EventId
    name: str


@dataclass
class Instance:
    """An orchestration instance: its current execution's history and its status."""

    instance_id: str
    name: str
    execution_id: str
    created: datetime
    updated: datetime
    status: str = "Pending"
    input: Any = None  # a JSON value; from Python callers, JSON text
    output: Any = None
    custom_status: Any = None
    parent: Parent | None = None
    history: list[Event] = field(default_factory=list)

    @property
    def running(self) -> bool:
        return self.status in RUNNING


@dataclass(frozen=True)
class Message:
    """An event on its way to an instance; `key` makes a repeated delivery harmless."""

    instance_id: str
    execution_id: str | None  # None: whichever execution is current
    event: Event
    key: str
    due: datetime | None = None  # timers: not before


@dataclass(frozen=True)
class ActivityCall:
    instance_id: str
    execution_id: str
    task_id: int
    name: str
    input_text: str | None

    def completion_key(self) -> str:
        return f"{self.execution_id}:task:{self.task_id}"


@dataclass
class Outcome:
    """What an episode (or a batch of dropped messages) leaves behind."""

    instance: Instance
    consumed: list[str]
    activities: list[ActivityCall] = field(default_factory=list)
    timers: list[Message] = field(default_factory=list)
    children: list[tuple[Instance, Message]] = field(default_factory=list)
    notify: list[Message] = field(default_factory=list)
    ended_executions: list[Instance] = field(default_factory=list)  # continued as new


@dataclass
class Episode:
    """An episode waiting for the SDK's answer to `context`."""

    instance: Instance  # history: past (played) + OrchestratorStarted + new events
    context: dict[str, Any]
    now: datetime
    so_far: Outcome  # the work item's earlier executions (continue-as-new)
    carried_status: Any = None


def new_instance(
    name: str,
    instance_id: str,
    input_value: Any,
    now: datetime,
    execution_id: str,
    parent: Parent | None = None,
) -> tuple[Instance, Message]:
    """A Pending instance and the ExecutionStarted message that starts it."""
    instance = Instance(instance_id, name, execution_id, now, now, input=input_value, parent=parent)
    parent_instance = (
        None
        if parent is None
        else {
            "Name": parent.name,
            "TaskScheduleId": parent.task_id,
            "OrchestrationInstance": {
                "InstanceId": parent.instance_id,
                "ExecutionId": parent.execution_id,
            },
        }
    )
    input_text = None if input_value is None else h.json_text(input_value)
    started = h.execution_started(
        now, name=name, instance_id=instance_id, execution_id=execution_id,
        input_text=input_text, parent=parent_instance,
    )  # fmt: skip
    return instance, Message(instance_id, execution_id, started, f"start:{execution_id}")


def begin(instance: Instance, messages: Sequence[Message], now: datetime) -> Episode | Outcome:
    """Take the messages due for `instance`; an Episode when the orchestrator must run."""
    consumed = [m.key for m in messages]
    accepted = _accepted(instance, messages)
    if not accepted:
        return Outcome(instance, consumed)
    past = h.mark_played(instance.history)
    episode_history = [*past, h.orchestrator_started(now), *accepted]
    terminated = next(
        (e for e in accepted if e["EventType"] == EventType.EXECUTION_TERMINATED), None
    )
    if terminated is not None:
        # Terminating needs no orchestrator code: the execution ends with the reason.
        return _terminate(instance, episode_history, terminated["Input"], now, consumed)
    updated = replace(instance, history=episode_history, status="Running", updated=now)
    return Episode(updated, _context(updated), now, Outcome(updated, consumed))


def finish(
    episode: Episode,
    state: OrchestratorState | str,
    registry: Registry,
    new_id: Callable[[], str],
) -> Episode | Outcome:
    """Apply the SDK's answer (`str`: the invocation failed without a state)."""
    instance, now = episode.instance, episode.now
    if isinstance(state, str):
        return _end(episode, instance.history, _failed(instance, state), None)
    try:
        actions = state.actions
    except ValueError as exc:
        return _end(episode, instance.history, _failed(instance, str(exc)), None)
    decisions = decide(
        instance.history, actions, name=instance.name, instance_id=instance.instance_id,
        execution_id=instance.execution_id, parent_instance_id=_parent_id(instance),
        registry=registry,
    )  # fmt: skip
    history = [*instance.history, *decisions.scheduled]
    outcome = episode.so_far
    custom_status = state.custom_status
    if decisions.nondeterminism is not None:
        # DTFx fails a nondeterministic replay at once, open tasks or not.
        return _end(episode, history, (decisions.nondeterminism, ""), custom_status)
    _dispatch(instance, decisions.scheduled, outcome, now, new_id)
    failure = decisions.failure or _custom_status_problem(instance, custom_status)
    if episode.carried_status is not None and custom_status is None:
        custom_status = episode.carried_status
    finished = (decisions.code_finished or failure) and decisions.open_tasks == 0
    if not finished:
        running = replace(instance, custom_status=custom_status)
        return _commit(outcome, running, [*h.mark_played(history), h.orchestrator_completed(now)])
    if failure is not None:
        return _end(episode, history, (failure, ""), custom_status)
    if state.error:
        details = f"Message: {state.error}, StackTrace: "
        return _end(episode, history, _failed(instance, state.error, details), custom_status)
    if decisions.continued_with is not None:
        return _continue_as_new(episode, history, decisions, custom_status, new_id)
    if state.is_done:
        return _end(episode, history, None, custom_status, output=state.output)
    running = replace(instance, custom_status=custom_status)
    return _commit(outcome, running, [*h.mark_played(history), h.orchestrator_completed(now)])


# Endings ------------------------------------------------------------------------------


def _end(
    episode: Episode,
    history: list[Event],
    failure: tuple[str, str] | None,
    custom_status: Any,
    output: Any = None,
) -> Outcome:
    instance, now, outcome = episode.instance, episode.now, episode.so_far
    if failure is None:
        status, result = (
            OrchestrationStatus.COMPLETED,
            None if output is None else h.json_text(output),
        )
        ended = replace(instance, status="Completed", output=output, custom_status=custom_status)
    else:
        status, result = OrchestrationStatus.FAILED, failure[0]
        ended = replace(instance, status="Failed", output=failure[0], custom_status=custom_status)
    history = [*h.mark_played(history), h.execution_completed(now, status, result)]
    if instance.parent is not None:
        parent = instance.parent
        event = (
            h.sub_orchestration_completed(now, parent.task_id, result)
            if failure is None
            else h.sub_orchestration_failed(now, parent.task_id, failure[0], failure[1])
        )
        outcome.notify.append(_to_parent(parent, event))
    return _commit(outcome, ended, [*history, h.orchestrator_completed(now)])


def _terminate(
    instance: Instance, history: list[Event], reason: str, now: datetime, consumed: list[str]
) -> Outcome:
    outcome = Outcome(instance, consumed)
    if instance.parent is not None:
        parent = instance.parent
        outcome.notify.append(
            _to_parent(parent, h.sub_orchestration_failed(now, parent.task_id, reason, None))
        )
    ended = replace(instance, status="Terminated", output=reason, updated=now)
    completed = h.execution_completed(now, OrchestrationStatus.TERMINATED, reason)
    return _commit(
        outcome, ended, [*h.mark_played(history), completed, h.orchestrator_completed(now)]
    )


def _continue_as_new(
    episode: Episode,
    history: list[Event],
    decisions: Decisions,
    custom_status: Any,
    new_id: Callable[[], str],
) -> Episode:
    instance, now, outcome = episode.instance, episode.now, episode.so_far
    assert decisions.continued_with is not None
    (input_text,) = decisions.continued_with
    ended = replace(
        instance,
        status="ContinuedAsNew",
        custom_status=custom_status,
        history=[
            *h.mark_played(history),
            h.execution_completed(now, OrchestrationStatus.CONTINUED_AS_NEW, input_text),
            h.orchestrator_completed(now),
        ],
    )
    outcome.ended_executions.append(ended)
    # DTFx runs the next execution in the same work item, on a fresh history. Its start is
    # the instance's created time from now on, as Azure Storage records it (CreatedTime
    # from each ExecutionStarted; azure-functions-durable-extension#2088): status reads and
    # purges by created time see this generation's start.
    fresh, start = new_instance(
        instance.name, instance.instance_id, input_text, now, new_id(), instance.parent
    )
    fresh = replace(fresh, status="Running")
    fresh.history = [h.orchestrator_started(now), start.event, *decisions.unconsumed_events]
    outcome.instance = fresh
    return Episode(fresh, _context(fresh), now, outcome, carried_status=custom_status)


def _failed(instance: Instance, error: str, details: str = "") -> tuple[str, str]:
    return f"Orchestrator function '{instance.name}' failed: {error}", details


def _commit(outcome: Outcome, instance: Instance, history: list[Event]) -> Outcome:
    instance.history = history
    outcome.instance = instance
    return outcome


# Work ---------------------------------------------------------------------------------


def _dispatch(
    instance: Instance,
    scheduled: list[Event],
    outcome: Outcome,
    now: datetime,
    new_id: Callable[[], str],
) -> None:
    for event in scheduled:
        kind, task_id = EventType(event["EventType"]), int(event["EventId"])
        if kind is EventType.TASK_SCHEDULED:
            outcome.activities.append(
                ActivityCall(
                    instance.instance_id,
                    instance.execution_id,
                    task_id,
                    event["Name"],
                    event["Input"],
                )
            )
        elif kind is EventType.TIMER_CREATED:
            fire_at = h.parse_timestamp(event["FireAt"])
            fired = h.timer_fired(fire_at, task_id, fire_at)
            key = f"{instance.execution_id}:timer:{task_id}"
            outcome.timers.append(
                Message(instance.instance_id, instance.execution_id, fired, key, due=fire_at)
            )
        else:
            parent = Parent(instance.instance_id, instance.execution_id, task_id, instance.name)
            input_text = event["Input"]
            outcome.children.append(
                new_instance(event["Name"], event["InstanceId"], input_text, now, new_id(), parent)
            )


def _to_parent(parent: Parent, event: Event) -> Message:
    key = f"{parent.execution_id}:sub:{parent.task_id}"
    return Message(parent.instance_id, parent.execution_id, event, key)


def _accepted(instance: Instance, messages: Sequence[Message]) -> list[Event]:
    """The events to append: current execution only, each task completed once."""
    if not instance.running:
        return []
    scheduled: set[tuple[str, int]] = set()
    done: set[tuple[str, int]] = set()
    for event in instance.history:
        kind = EventType(event["EventType"])
        if kind in h.SCHEDULING_EVENTS:
            scheduled.add(
                ("timer" if kind is EventType.TIMER_CREATED else "task", event["EventId"])
            )
        elif kind in h.COMPLETION_KEYS:
            done.add(_completes(kind, event))
    accepted = []
    for message in messages:
        if message.execution_id not in (None, instance.execution_id):
            continue
        event = message.event
        kind = EventType(event["EventType"])
        if kind is EventType.EXECUTION_STARTED and instance.history:
            continue
        if kind in h.COMPLETION_KEYS:
            target = _completes(kind, event)
            if target not in scheduled or target in done:
                continue
            done.add(target)
        accepted.append(event)
    return accepted


def _completes(kind: EventType, event: Event) -> tuple[str, int]:
    if kind is EventType.TIMER_FIRED:
        return ("timer", int(event["TimerId"]))
    return ("task", int(event["TaskScheduledId"]))


def _custom_status_problem(instance: Instance, status: Any) -> str | None:
    if status is None:
        return None
    size_kb = int(len(h.json_text(status).encode("utf-16-le")) / 1024)
    if size_kb <= CUSTOM_STATUS_LIMIT_KB:
        return None
    return _failed(
        instance,
        f"The UTF-16 size of the JSON-serialized payload must not exceed "
        f"{CUSTOM_STATUS_LIMIT_KB} KB. The current payload size is {size_kb} KB.",
    )[0]


def _parent_id(instance: Instance) -> str | None:
    return instance.parent.instance_id if instance.parent else None


def _context(instance: Instance) -> dict[str, Any]:
    return h.orchestration_context(
        instance.history,
        instance_id=instance.instance_id,
        input_value=instance.input,
        parent_instance_id=_parent_id(instance),
    )


def activity_failure(name: str, friendly: str) -> tuple[str, str]:
    """TaskFailed's Reason and Details for an activity that raised, from what the worker
    reported (`Type: message`): the extension prefixes it and serialises the exception."""
    details = {
        "ClassName": "Microsoft.Azure.WebJobs.Script.Workers.Rpc.RpcException",
        "Message": f"Result: Failure\nException: {friendly}",
    }
    return f"Activity function '{name}' failed: {friendly}", json.dumps(details)
