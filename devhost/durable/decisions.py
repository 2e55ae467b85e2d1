"""The extension side of an episode: the SDK's actions replayed against the history.

In Azure the extension does not trust the SDK with ids or timing: its shim
(OutOfProcOrchestrationShim) replays the action list through the Durable Task
Framework's context, in C#, every episode. That replay decides what is scheduled:

- the top-level actions are awaited **one after another**; a WhenAll completes only
  when every child has, even after one failed (the SDK gives up on the first failure,
  so what the SDK schedules after a failed WhenAll waits for the rest here);
- ids come from one counter per execution, taken as each call is made; completion
  events (EventId -1) find their task by TaskScheduledId/TimerId;
- a `*_with_retry` call is the framework's RetryInterceptor: attempt, then a timer at
  now + firstRetryInterval (Python has no backoff coefficient, so the delay is
  constant), again, and after the last failed attempt one more timer that fires at once;
- a sub-orchestration without an instance id is `<parent execution id>:<its id>`;
- scheduling events already in the history must match what the replay schedules
  (else NonDeterministicOrchestrationException); new ones are this episode's decisions;
- a name the app has not registered throws while the actions are replayed, which fails
  the orchestration with the extension's message.

`decide()` is that replay, as plain data in and out; instances.py owns the rest.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from devhost.durable import history as h
from devhost.durable.history import Event, EventType

# The SDK's ActionType numbers (the extension's AsyncActionType).
CALL_ACTIVITY, CALL_ACTIVITY_WITH_RETRY = 0, 1
CALL_SUB_ORCHESTRATOR, CALL_SUB_ORCHESTRATOR_WITH_RETRY = 2, 3
CONTINUE_AS_NEW, CREATE_TIMER, WAIT_FOR_EXTERNAL_EVENT = 4, 5, 6
WHEN_ANY, WHEN_ALL = 11, 12
NOT_SUPPORTED = {7: "CallEntity", 8: "CallHttp", 9: "SignalEntity", 10: "ScheduledSignalEntity"}
UNREGISTERED = "doesn't exist, is disabled, or is not an"


@dataclass(frozen=True)
class Registry:
    """The functions the app registered, by kind, in registration order."""

    activities: tuple[str, ...]
    orchestrators: tuple[str, ...]

    def check(self, name: str, kind: str) -> None:
        known = self.activities if kind == "activity" else self.orchestrators
        if name in known:
            return
        info = (
            f"The following are the known {kind} functions: '{"', '".join(known)}'."
            if known
            else f"No {kind} functions are currently registered!"
        )
        raise UnregisteredFunction(
            f"The function '{name}' {UNREGISTERED} {kind} function. Additional info: {info}"
        )


class UnregisteredFunction(ValueError):
    """An orchestrator called a name the app does not register as that kind of function."""


class NonDeterminism(RuntimeError):
    """The replay scheduled something other than what the history says was scheduled."""


@dataclass
class Decisions:
    scheduled: list[Event]  # TaskScheduled/TimerCreated/SubOrchestrationInstanceCreated, new
    code_finished: bool  # every top-level action has completed (C# side)
    open_tasks: int  # scheduled and not completed (DTFx completes only at zero)
    continued_with: tuple[str | None] | None  # ContinueAsNew's input, when it was reached
    failure: str | None  # the actions' replay threw: unregistered name, bad instance id
    nondeterminism: str | None  # history and replay disagree: the execution fails at once
    unconsumed_events: list[Event] = field(default_factory=list)  # EventRaised, carried over


class _Task:
    """A C# Task as far as ordering goes: done or not, failed or not, continuations."""

    __slots__ = ("_then", "done", "failed")

    def __init__(self) -> None:
        self.done = False
        self.failed = False
        self._then: list[Callable[[], None]] = []

    def finish(self, failed: bool) -> None:
        if self.done:
            return
        self.done, self.failed = True, failed
        callbacks, self._then = self._then, []
        for callback in callbacks:
            callback()  # DTFx runs continuations inline (a synchronous task scheduler)

    def then(self, callback: Callable[[], None]) -> None:
        if self.done:
            callback()
        else:
            self._then.append(callback)


def _finished(failed: bool = False) -> _Task:
    task = _Task()
    task.finish(failed)
    return task


class _SyncFailure(Exception):
    """What InvokeAPIFromAction throws; it ends the replay of the actions."""


def decide(
    history: Sequence[Event],
    actions: Sequence[dict[str, Any]],
    *,
    name: str,
    instance_id: str,
    execution_id: str,
    parent_instance_id: str | None,
    registry: Registry,
) -> Decisions:
    """Replay `actions` (the SDK's flat V3 list) against `history` (this execution's,
    the new events of this episode included, without its OrchestratorCompleted)."""
    return _Replay(actions, name, instance_id, execution_id, parent_instance_id, registry).run(
        history
    )


class _Replay:
    def __init__(
        self,
        actions: Sequence[dict[str, Any]],
        name: str,
        instance_id: str,
        execution_id: str,
        parent_instance_id: str | None,
        registry: Registry,
    ) -> None:
        self.actions, self.name = actions, name
        self.instance_id, self.execution_id = instance_id, execution_id
        self.parent_instance_id, self.registry = parent_instance_id, registry
        self.next_id = 0
        self.now: datetime | None = None
        self.pending: dict[int, Event] = {}  # scheduled by this replay, not yet in history
        self.open: dict[int, _Task] = {}
        self.waiters: dict[str, list[_Task]] = {}
        self.buffered: dict[str, list[Event]] = {}
        self.code_finished = False
        self.continued_with: tuple[str | None] | None = None
        self.failure: str | None = None
        self.nondeterminism: str | None = None

    def run(self, history: Sequence[Event]) -> Decisions:
        try:
            for event in history:
                self._process(event)
        except NonDeterminism as exc:
            self.nondeterminism = str(exc)
        return Decisions(
            scheduled=[self.pending[k] for k in sorted(self.pending)],
            code_finished=self.code_finished,
            open_tasks=len(self.open),
            continued_with=self.continued_with,
            failure=self.failure,
            nondeterminism=self.nondeterminism,
            unconsumed_events=[e for events in self.buffered.values() for e in events],
        )

    # History ----------------------------------------------------------------------------

    def _process(self, event: Event) -> None:
        kind = EventType(event["EventType"])
        if kind is EventType.ORCHESTRATOR_STARTED:
            self.now = h.parse_timestamp(event["Timestamp"])
        elif kind is EventType.EXECUTION_STARTED:
            self._run_code(0)
        elif kind in h.SCHEDULING_EVENTS:
            self._confirm(kind, event)
        elif kind in h.COMPLETION_KEYS:
            task = self.open.pop(event[h.COMPLETION_KEYS[kind]], None)
            if task is not None:  # else a duplicate: DTFx logs it and moves on
                task.finish(
                    failed=kind
                    in (EventType.TASK_FAILED, EventType.SUB_ORCHESTRATION_INSTANCE_FAILED)
                )
        elif kind is EventType.EVENT_RAISED:
            waiting = self.waiters.get(event["Name"])
            if waiting:
                waiting.pop(0).finish(failed=False)
            else:
                self.buffered.setdefault(event["Name"], []).append(event)

    def _confirm(self, kind: EventType, event: Event) -> None:
        task_id = event["EventId"]
        scheduled = self.pending.pop(task_id, None)
        what = {
            EventType.TASK_SCHEDULED: "an activity task",
            EventType.TIMER_CREATED: "a timer",
            EventType.SUB_ORCHESTRATION_INSTANCE_CREATED: "a sub-orchestration",
        }[kind]
        # DTFx's NonDeterministicOrchestrationException messages (TaskOrchestrationContext).
        if scheduled is None or scheduled["EventType"] != kind:
            raise NonDeterminism(
                f"A previous execution of this orchestration scheduled {what} with sequence "
                f"ID {task_id}, but the current replay execution hasn't (yet?) scheduled this "
                "task. Was a change made to the orchestrator code after this instance had "
                "already started running?"
            )
        if (
            kind is not EventType.TIMER_CREATED
            and scheduled["Name"].lower() != str(event["Name"]).lower()
        ):
            raise NonDeterminism(
                f"A previous execution of this orchestration scheduled {what} with sequence "
                f"number {task_id} named '{event['Name']}', but the current orchestration "
                f"replay instead scheduled {what} named '{scheduled['Name']}' with this "
                "sequence number.  Was a change made to the orchestrator code after this "
                "instance had already started running?"
            )

    # The C# code: ProcessAsyncActionsV2 ---------------------------------------------------

    def _run_code(self, index: int) -> None:
        while self.failure is None and index < len(self.actions):
            try:
                task = self._invoke(self.actions[index])
            except (_SyncFailure, UnregisteredFunction) as exc:
                self.failure = f"Orchestrator function '{self.name}' failed: {exc}"
                return
            index += 1
            if not task.done:
                task.then(functools.partial(self._run_code, index))
                return
        if self.failure is None:
            self.code_finished = True

    def _invoke(self, action: dict[str, Any]) -> _Task:
        kind = action["actionType"]
        if kind in (CALL_ACTIVITY, CALL_ACTIVITY_WITH_RETRY):
            self.registry.check(action["functionName"], "activity")
            call = functools.partial(self._schedule_task, action)
            return call() if kind == CALL_ACTIVITY else self._with_retry(call, action)
        if kind in (CALL_SUB_ORCHESTRATOR, CALL_SUB_ORCHESTRATOR_WITH_RETRY):
            self.registry.check(action["functionName"], "orchestrator")
            self._check_child_id(action.get("instanceId"))
            call = functools.partial(self._schedule_child, action)
            return call() if kind == CALL_SUB_ORCHESTRATOR else self._with_retry(call, action)
        if kind == CREATE_TIMER:
            timer = self._timer(h.parse_timestamp(action["fireAt"]))
            if action.get("isCanceled"):
                # The token is already cancelled: the timer is still created, its task ends.
                self.open = {k: t for k, t in self.open.items() if t is not timer}
                timer.finish(failed=True)
            return timer
        if kind == CONTINUE_AS_NEW:
            self.continued_with = (action.get("input"),)
            return _finished()
        if kind == WAIT_FOR_EXTERNAL_EVENT:
            return self._wait_for(action["externalEventName"])
        if kind in (WHEN_ALL, WHEN_ANY):
            children = [self._invoke(child) for child in action["compoundActions"]]
            return _all(children) if kind == WHEN_ALL else _any(children)
        raise _SyncFailure(
            f"Received an unexpected action type from the out-of-proc function: "
            f"'{NOT_SUPPORTED.get(kind, kind)}' (not supported by the local stand-in)."
        )

    def _take_id(self) -> int:
        task_id, self.next_id = self.next_id, self.next_id + 1
        return task_id

    def _open(self, task_id: int, scheduled: Event) -> _Task:
        self.pending[task_id] = scheduled
        task = _Task()
        self.open[task_id] = task
        return task

    def _schedule_task(self, action: dict[str, Any]) -> _Task:
        task_id = self._take_id()
        return self._open(
            task_id,
            h.task_scheduled(self._now(), task_id, action["functionName"], action.get("input")),
        )

    def _schedule_child(self, action: dict[str, Any]) -> _Task:
        task_id = self._take_id()
        child_id = action.get("instanceId") or f"{self.execution_id}:{task_id}"
        created = h.sub_orchestration_created(
            self._now(), task_id, action["functionName"], child_id, action.get("input")
        )
        return self._open(task_id, created)

    def _timer(self, fire_at: datetime) -> _Task:
        timer_id = self._take_id()
        return self._open(timer_id, h.timer_created(self._now(), timer_id, fire_at))

    def _with_retry(self, attempt: Callable[[], _Task], action: dict[str, Any]) -> _Task:
        """DTFx's RetryInterceptor, driven by completions instead of awaits."""
        options = action["retryOptions"]
        interval = timedelta(milliseconds=options["firstRetryIntervalInMilliseconds"])
        attempts = int(options["maxNumberOfAttempts"])
        result = _Task()
        tried = 0

        def launch() -> None:
            task = attempt()
            task.then(lambda: settled(task))

        def settled(task: _Task) -> None:
            nonlocal tried
            tried += 1
            if not task.failed:
                result.finish(failed=False)
            elif tried >= attempts:
                # "Dummy timer for back-compat": fires at once, then the failure is thrown.
                self._timer(self._now()).then(lambda: result.finish(failed=True))
            else:
                self._timer(self._now() + interval).then(launch)

        launch()
        return result

    def _wait_for(self, name: str) -> _Task:
        task = _Task()
        buffered = self.buffered.get(name)
        if buffered:
            buffered.pop(0)
            task.finish(failed=False)
        else:
            self.waiters.setdefault(name, []).append(task)
        return task

    def _check_child_id(self, child_id: str | None) -> None:
        if child_id is None:
            return
        if child_id.lower() in {self.instance_id.lower(), (self.parent_instance_id or "").lower()}:
            raise _SyncFailure(
                "The instance ID of a sub-orchestration must be different than the instance "
                "ID of a parent orchestration."
            )
        if child_id.startswith("@"):
            raise _SyncFailure("Orchestration instance ids must not start with @")

    def _now(self) -> datetime:
        assert self.now is not None, "history must start with OrchestratorStarted"
        return self.now


def _all(children: list[_Task]) -> _Task:
    result = _Task()
    if not children:
        result.finish(failed=False)
    remaining = len(children)

    def one_done() -> None:
        nonlocal remaining
        remaining -= 1
        if remaining == 0:
            result.finish(failed=any(child.failed for child in children))

    for child in children:
        child.then(one_done)
    return result


def _any(children: list[_Task]) -> _Task:
    result = _Task()
    for child in children:
        child.then(lambda: result.finish(failed=False))
    return result
