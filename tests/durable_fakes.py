"""A small stand-in for the Durable runtime, enough to drive the orchestrator generators.

Orchestrators are driven the documented way: the raw generator from
`.get_user_function().orchestrator_function`, through
`azure.durable_functions.testing.orchestrator_generator_wrapper`. Activities run
synchronously (retries as RetryOptions would), sub-orchestrations are driven the same
way as their own executions, and every execution's scheduled work is counted.

It also counts what replay costs. The Durable runtime re-runs an orchestrator from the
start whenever new events arrive for it, and each re-run schedules (and matches against
history) every action up to where it waits. So each completion event costs the number of
actions the orchestrator has created by the point it is waiting at: `replay_work` sums
that over all events, and `history_events` is what the instance's history holds.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.durable_functions.testing import orchestrator_generator_wrapper


class FakeTask:
    def __init__(self, result: Any = None, error: BaseException | None = None) -> None:
        self._result, self._error = result, error
        self.replay_cost = 0

    @property
    def result(self) -> Any:
        if self._error is not None:
            raise self._error
        return self._result


@dataclass
class Execution:
    orchestrator: str
    input: Any
    activities: int = 0  # activity tasks scheduled (retries included)
    sub_orchestrations: int = 0
    timers: list[datetime] = field(default_factory=list)
    custom_status: Any = None
    continued_as_new: Any = None
    actions: int = 0  # everything scheduled: activities, sub-orchestrations, timers
    replay_work: int = 0

    @property
    def history_events(self) -> int:
        # started + completed, and a scheduled and a completed event per action
        return 2 + 2 * self.actions

    def scheduled(self, task: FakeTask) -> FakeTask:
        """Count an action whose completion replays the orchestrator up to here."""
        self.actions += 1
        task.replay_cost = self.actions
        self.replay_work += task.replay_cost
        return task


@dataclass
class FakeDurable:
    orchestrators: dict[str, Callable[[Any], Generator[Any, Any, Any]]]
    activities: dict[str, Callable[[Any], Any]]
    clock: datetime = datetime(2026, 1, 1, tzinfo=UTC)
    executions: list[Execution] = field(default_factory=list)
    activity_calls: list[tuple[str, Any]] = field(default_factory=list)
    activity_seconds: float = 0.05  # how long each activity seems to take

    def run(self, name: str, input_: Any) -> Any:
        """Run an orchestration to completion, following continue_as_new."""
        while True:
            execution = Execution(name, input_)
            self.executions.append(execution)
            context = FakeContext(self, execution)
            result = None
            for result in orchestrator_generator_wrapper(self.orchestrators[name](context)):  # noqa: B007
                pass
            if execution.continued_as_new is None:
                return result
            input_ = execution.continued_as_new

    def activity(self, name: str, input_: Any, execution: Execution, attempts: int = 1) -> FakeTask:
        error: BaseException | None = None
        for _ in range(attempts):
            execution.activities += 1
            self.activity_calls.append((name, input_))
            self.clock += timedelta(seconds=self.activity_seconds)
            try:
                return execution.scheduled(FakeTask(self.activities[name](input_)))
            except Exception as exc:
                error = exc
        return execution.scheduled(FakeTask(error=error))


class FakeContext:
    instance_id = "fake-instance"

    def __init__(self, durable: FakeDurable, execution: Execution) -> None:
        self._durable, self._execution = durable, execution

    @property
    def current_utc_datetime(self) -> datetime:
        return self._durable.clock

    def get_input(self) -> Any:
        return self._execution.input

    def call_activity(self, name: str, input_: Any = None) -> FakeTask:
        return self._durable.activity(name, input_, self._execution)

    def call_activity_with_retry(self, name: str, retry: Any, input_: Any = None) -> FakeTask:
        return self._durable.activity(name, input_, self._execution, retry._max_number_of_attempts)

    def call_sub_orchestrator_with_retry(
        self, name: str, retry: Any, input_: Any = None
    ) -> FakeTask:
        self._execution.sub_orchestrations += 1
        error: BaseException | None = None
        for _ in range(retry._max_number_of_attempts):
            try:
                return self._execution.scheduled(FakeTask(self._durable.run(name, input_)))
            except Exception as exc:
                error = exc
        return self._execution.scheduled(FakeTask(error=error))

    def task_all(self, tasks: list[FakeTask]) -> FakeTask:
        # Every child's completion replays up to this point: all of them were created.
        for task in tasks:
            self._execution.replay_work += self._execution.actions - task.replay_cost
        try:
            return FakeTask([task.result for task in tasks])
        except Exception as exc:  # fail fast, as WhenAllTask does
            return FakeTask(error=exc)

    def create_timer(self, fire_at: datetime) -> FakeTask:
        self._execution.timers.append(fire_at)
        self._durable.clock = max(self._durable.clock, fire_at)
        return self._execution.scheduled(FakeTask(None))

    def set_custom_status(self, status: Any) -> None:
        self._execution.custom_status = status

    def continue_as_new(self, input_: Any) -> None:
        self._execution.continued_as_new = input_


class FakeStatus:
    def __init__(self, runtime: str | None, custom: Any) -> None:
        from azure.durable_functions import OrchestrationRuntimeStatus

        self.runtime_status = OrchestrationRuntimeStatus(runtime) if runtime else None
        self.custom_status = custom

    def __bool__(self) -> bool:
        return self.runtime_status is not None


class FakeDurableClient:
    """The orchestration client the starter and status functions receive."""

    def __init__(self) -> None:
        self.started: list[tuple[str, str, Any]] = []
        self.terminated: list[str] = []
        self.statuses: dict[str, FakeStatus] = {}
        self.start_error: Exception | None = None

    async def start_new(
        self, name: str, instance_id: str | None = None, client_input: Any = None
    ) -> str:
        if self.start_error is not None:
            raise self.start_error
        assert instance_id is not None
        self.started.append((name, instance_id, client_input))
        self.statuses[instance_id] = FakeStatus("Running", None)
        return instance_id

    async def get_status(self, instance_id: str) -> FakeStatus:
        return self.statuses.get(instance_id, FakeStatus(None, None))

    async def terminate(self, instance_id: str, reason: str) -> None:
        self.terminated.append(instance_id)
        if instance_id not in self.statuses:
            raise Exception(f"No instance with ID '{instance_id}' found.")
        self.statuses[instance_id] = FakeStatus(
            "Terminated", self.statuses[instance_id].custom_status
        )
