"""A deterministic Durable "framework" for tests and benchmarks, on a virtual clock.

It plays the extension the way the extension does (decisions.py, instances.py): ids,
retry timers, WhenAll waiting for every child, sub-orchestration ids, continue-as-new on
a fresh history, custom status per instance, terminate. Orchestrators run through the
SDK's `Orchestrator` handling on extension-shaped histories; activities are the given
Python callables, called with the input the worker would decode from the JSON text and
answered as JSON text. Every name an orchestrator calls must be one the app registered
(as that kind of function): otherwise the orchestration fails with the extension's
message, and `run()` raises UnregisteredFunction.

    durable = DurableFramework.for_app(app.get_functions())
    client = durable.client()             # a real DurableOrchestrationClient
    asyncio.run(client.start_new("broadcast_orchestrator", "b1", job))
    durable.run()                         # until nothing is left to do
    durable.instance("b1").custom_status

Time is virtual: timers fire by advancing the clock, an activity takes
`activity_seconds` (a number, or a function of its name and input). Each step runs
every activity that is due (in the order they were scheduled), then gives each instance
with due messages one episode holding all of them.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from devhost.durable import api, instances
from devhost.durable import history as h
from devhost.durable.decisions import UNREGISTERED, Registry, UnregisteredFunction
from devhost.durable.history import Event, EventType
from devhost.durable.instances import (
    ActivityCall,
    Episode,
    Instance,
    Message,
    Outcome,
    activity_failure,
)
from devhost.durable.replay import Handle, replay
from devhost.durable.store import purged_by

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
ORIGIN = "http://127.0.0.1:17071"
RPC_BASE_URL = f"{ORIGIN}/durabletask/"
# Azure Storage's work-item visibility timeout: a message whose worker died is delivered
# again after this long (DTFx AzureStorageOrchestrationServiceSettings).
REDELIVERY = timedelta(minutes=5)

Activity = Callable[[Any], Any]


class WorkerCrashed(BaseException):  # not an Exception: activities must not catch it
    """Raise it inside an activity to play a worker that died mid-invocation: nothing is
    recorded, and the activity is delivered again after REDELIVERY (at least once)."""


class OrchestrationFailed(RuntimeError):
    """run_orchestration's instance did not complete."""


@dataclass
class ExecutionRecord:
    """One execution (continue-as-new starts another) and what replaying it cost."""

    instance_id: str
    execution_id: str
    name: str
    episodes: int = 0
    replayed_events: int = 0  # history events handed to the SDK, summed over episodes
    custom_statuses: list[Any] = field(default_factory=list)  # stored after each episode
    history: list[Event] = field(default_factory=list)

    @property
    def history_events(self) -> int:
        return len(self.history)

    def count(self, kind: EventType) -> int:
        return sum(1 for e in self.history if e["EventType"] == kind)

    @property
    def activities(self) -> int:
        return self.count(EventType.TASK_SCHEDULED)

    @property
    def sub_orchestrations(self) -> int:
        return self.count(EventType.SUB_ORCHESTRATION_INSTANCE_CREATED)

    @property
    def timers(self) -> list[datetime]:
        return [
            h.parse_timestamp(e["FireAt"])
            for e in self.history
            if e["EventType"] == EventType.TIMER_CREATED
        ]


class DurableFramework:
    def __init__(
        self,
        orchestrators: Mapping[str, Handle],
        activities: Mapping[str, Activity],
        *,
        registry: Registry | None = None,
        start: datetime = EPOCH,
        activity_seconds: float | Callable[[str, Any], float] = 0.0,
        max_concurrent_activities: int | None = None,
        task_hub: str = "TestHubName",
    ) -> None:
        self.registry = registry or Registry(tuple(activities), tuple(orchestrators))
        self._orchestrators = dict(orchestrators)
        self._activities = dict(activities)
        self.now = start
        self._activity_seconds = activity_seconds
        self._max_concurrent = max_concurrent_activities
        self._busy_until: list[datetime] = []  # when each running activity ends
        self.task_hub = task_hub
        self.system_key = "local-durable-system-key"
        self.instances: dict[str, Instance] = {}
        self.executions: list[ExecutionRecord] = []
        self.activity_calls: list[tuple[str, Any]] = []
        self._records: dict[str, ExecutionRecord] = {}
        self._messages: list[tuple[int, Message]] = []
        self._queued: list[tuple[datetime, int, ActivityCall]] = []
        self._sequence = itertools.count()
        self._ids = itertools.count(1)
        self._unregistered: list[str] = []

    @classmethod
    def for_app(
        cls,
        functions: Iterable[Any],
        *,
        activities: Mapping[str, Activity] | None = None,
        **options: Any,
    ) -> DurableFramework:
        """The app's orchestrators and activities (azure.functions Function objects, as
        `app.get_functions()` returns them); `activities` replaces some by name."""
        kinds: dict[str, list[tuple[str, Any]]] = {
            "orchestrationTrigger": [],
            "activityTrigger": [],
        }
        for function in functions:
            trigger = function.get_trigger().type
            if trigger in kinds:
                kinds[trigger].append((function.get_function_name(), function.get_user_function()))
        registered = dict(kinds["activityTrigger"])
        unknown = set(activities or {}) - set(registered)
        if unknown:
            raise UnregisteredFunction(f"not activities of the app: {sorted(unknown)}")
        return cls(
            dict(kinds["orchestrationTrigger"]),
            registered | dict(activities or {}),
            registry=Registry(
                tuple(registered), tuple(n for n, _ in kinds["orchestrationTrigger"])
            ),
            **options,
        )

    # Starting and inspecting -----------------------------------------------------------

    def start(self, name: str, client_input: Any = None, instance_id: str | None = None) -> str:
        """start_new as the SDK's client does it (the input crosses as JSON text)."""
        from azure.durable_functions.models.utils.df_serialization import df_dumps

        self.registry.check(name, "orchestrator")
        instance_id = instance_id or f"instance-{next(self._ids)}"
        input_text = None if client_input is None else df_dumps(client_input)
        if not self._create(name, instance_id, input_text):
            raise RuntimeError(
                f"An Orchestration instance with the status Running already exists: {instance_id}"
            )
        return instance_id

    def instance(self, instance_id: str) -> Instance:
        return self.instances[instance_id]

    def terminate(self, instance_id: str, reason: str) -> None:
        event = h.execution_terminated(self.now, reason)
        self._deliver(Message(instance_id, None, event, f"terminate:{next(self._ids)}"))

    def run(self, *, until: Callable[[], bool] | None = None, seconds: float | None = None) -> None:
        """Run until nothing is left, `until()` holds, or `seconds` of virtual time passed."""
        deadline = None if seconds is None else self.now + timedelta(seconds=seconds)
        while until is None or not until():
            if self._step():
                continue
            due = self._next_due()
            if due is None:
                return
            if deadline is not None and due > deadline:
                self.now = deadline
                return
            self.now = max(self.now, due)

    def run_orchestration(self, name: str, client_input: Any = None) -> Any:
        """Start, run to the end; the output, or OrchestrationFailed."""
        instance_id = self.start(name, client_input)
        self.run()
        instance = self.instances[instance_id]
        if instance.status != "Completed":
            raise OrchestrationFailed(f"{instance.status}: {instance.output}")
        return instance.output

    def records(self, name: str | None = None) -> list[ExecutionRecord]:
        return [r for r in self.executions if name is None or r.name == name]

    def client(self) -> Any:
        """A real DurableOrchestrationClient whose HTTP calls reach api.handle in-process."""
        from azure.durable_functions import DurableOrchestrationClient

        client = DurableOrchestrationClient(
            api.client_binding(ORIGIN, RPC_BASE_URL, self.task_hub, self.system_key)
        )

        async def post(url: str, data: Any = None, *_: Any, **__: Any) -> list[Any]:
            return await self._request("POST", url, data)

        async def get(url: str, *_: Any, **__: Any) -> list[Any]:
            return await self._request("GET", url, None)

        async def delete(url: str, *_: Any, **__: Any) -> list[Any]:
            return await self._request("DELETE", url, None)

        client._post_async_request = post
        client._get_async_request = get
        client._delete_async_request = delete
        return client

    # Backend (api.py) ------------------------------------------------------------------

    async def create(self, name: str, instance_id: str, input_value: Any) -> bool:
        return self._create(name, instance_id, input_value)

    async def get(self, instance_id: str) -> Instance | None:
        return self.instances.get(instance_id)

    async def send(self, message: Message) -> None:
        self._deliver(message)

    async def purge(
        self, created_from: datetime, created_to: datetime, statuses: frozenset[str] | None
    ) -> int:
        doomed = [
            i
            for i, x in self.instances.items()
            if purged_by(x.created, x.status, created_from, created_to, statuses)
        ]
        for instance_id in doomed:
            del self.instances[instance_id]
        self._messages = [(n, m) for n, m in self._messages if m.instance_id not in doomed]
        return len(doomed)

    def clock(self) -> datetime:
        return self.now

    async def _request(self, method: str, url: str, data: Any) -> list[Any]:
        parts = urlsplit(url)
        body = None if data is None else json.dumps(data).encode()
        answer = await api.handle(
            self, method, parts.path.removeprefix("/durabletask/"), dict(parse_qsl(parts.query)),
            body, content_type="application/json", origin=ORIGIN,
        )  # fmt: skip
        if answer.body is None and method == "GET":
            return [answer.status, ""]  # what the SDK's get helper makes of an empty body
        # The delete helper reads the body with response.json(), None when it is empty.
        return [answer.status, answer.body]

    # The loop ----------------------------------------------------------------------------

    def _create(self, name: str, instance_id: str, input_value: Any) -> bool:
        existing = self.instances.get(instance_id)
        if existing is not None and existing.running:
            return False
        instance, start = instances.new_instance(
            name, instance_id, input_value, self.now, self._new_id()
        )
        self._adopt(instance)
        self._deliver(start)
        return True

    def _step(self) -> bool:
        ran = self._run_due_activities()
        due: dict[str, list[Message]] = {}
        kept = []
        for sequence, message in self._messages:
            if message.due is None or message.due <= self.now:
                due.setdefault(message.instance_id, []).append(message)
            else:
                kept.append((sequence, message))
        self._messages = kept
        for instance_id, messages in due.items():
            self._episode(instance_id, messages)
        if self._unregistered:
            raise UnregisteredFunction(self._unregistered[0])
        return ran or bool(due)

    def _next_due(self) -> datetime | None:
        times = [m.due for _, m in self._messages if m.due is not None]
        if self._queued and not self._slot_free():
            times.append(min(self._busy_until))  # queued work waits for a free slot
        else:
            times += [at for at, _, _ in self._queued]
        return min(times) if times else None

    def _episode(self, instance_id: str, messages: list[Message]) -> None:
        instance = self.instances.get(instance_id)
        if instance is None:
            return  # DTFx drops messages for an instance that does not exist
        step = instances.begin(instance, messages, self.now)
        if isinstance(step, Outcome) and step.instance is instance:
            return  # nothing accepted: every message was stale or a duplicate
        while isinstance(step, Episode):
            record = self._record_for(step.instance)
            record.episodes += 1
            record.replayed_events += len(step.instance.history)
            handle = self._orchestrators[step.instance.name]
            step = instances.finish(step, replay(handle, step.context), self.registry, self._new_id)
        self._apply(step)

    def _apply(self, outcome: Outcome) -> None:
        for ended in outcome.ended_executions:
            self._record(ended)
        self._adopt(outcome.instance)
        self._record(outcome.instance)
        if outcome.instance.status == "Failed" and UNREGISTERED in str(outcome.instance.output):
            self._unregistered.append(str(outcome.instance.output))
        for call in outcome.activities:
            self._queued.append((self.now, next(self._sequence), call))
        for timer in outcome.timers:
            self._deliver(timer)
        for child, start in outcome.children:
            self._adopt(child)
            self._deliver(start)
        for message in outcome.notify:
            self._deliver(message)

    def _run_due_activities(self) -> bool:
        """Start what is due, in order, while a slot is free (maxConcurrentActivityFunctions)."""
        self._busy_until = [t for t in self._busy_until if t > self.now]
        due = sorted(q for q in self._queued if q[0] <= self.now)
        started = []
        for queued in due:
            if not self._slot_free():
                break
            started.append(queued)
            self._run_activity(queued[2])
        begun = {sequence for _, sequence, _ in started}
        self._queued = [q for q in self._queued if q[1] not in begun]
        return bool(started)

    def _slot_free(self) -> bool:
        running = sum(1 for t in self._busy_until if t > self.now)
        return self._max_concurrent is None or running < self._max_concurrent

    def _run_activity(self, call: ActivityCall) -> None:
        from azure.functions.durable_functions import ActivityTriggerConverter
        from azure.functions.meta import Datum

        # The worker decodes the JSON text the extension passes (TypedData.string).
        value = ActivityTriggerConverter.decode(
            Datum(call.input_text, "string"), trigger_metadata={}
        )
        self.activity_calls.append((call.name, value))
        seconds = self._activity_seconds
        took = seconds(call.name, value) if callable(seconds) else seconds
        done_at = self.now + timedelta(seconds=took)
        self._busy_until.append(done_at)
        try:
            result = self._activities[call.name](value)
            encoded = ActivityTriggerConverter.encode(result, expected_type=None).value
        except WorkerCrashed:
            self._queued.append((self.now + REDELIVERY, next(self._sequence), call))
            return
        except Exception as exc:
            reported = f"{type(exc).__name__}: {exc}"  # the worker's serialize_exception
            event = h.task_failed(done_at, call.task_id, *activity_failure(call.name, reported))
        else:
            # The host parses the worker's JSON and the extension stores it compactly.
            parsed = json.loads(encoded)
            event = h.task_completed(
                done_at, call.task_id, None if parsed is None else h.json_text(parsed)
            )
        message = Message(
            call.instance_id, call.execution_id, event, call.completion_key(), due=done_at
        )
        self._deliver(message)

    def _deliver(self, message: Message) -> None:
        self._messages.append((next(self._sequence), message))

    def _adopt(self, instance: Instance) -> None:
        self.instances[instance.instance_id] = instance
        self._record_for(instance)

    def _record_for(self, instance: Instance) -> ExecutionRecord:
        record = self._records.get(instance.execution_id)
        if record is None:
            record = ExecutionRecord(instance.instance_id, instance.execution_id, instance.name)
            self._records[instance.execution_id] = record
            self.executions.append(record)
        return record

    def _record(self, instance: Instance) -> None:
        record = self._record_for(instance)
        record.history = list(instance.history)
        record.custom_statuses.append(instance.custom_status)

    def _new_id(self) -> str:
        return f"{next(self._ids):032x}"
