"""The replay framework plays the extension as the extension does: checked on small
orchestrators whose histories the research notes spell out (/tmp/research/durable.md)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Generator
from datetime import timedelta
from typing import Any

import azure.durable_functions as df
import pytest

from devhost.durable import history as h
from devhost.durable.decisions import UnregisteredFunction
from devhost.durable.framework import EPOCH, DurableFramework
from devhost.durable.history import EventType
from devhost.durable.replay import Handle, handle_for, replay

Orchestration = Generator[Any, Any, Any]
BOOM = json.dumps(
    {
        "ClassName": "Microsoft.Azure.WebJobs.Script.Workers.Rpc.RpcException",
        "Message": "Result: Failure\nException: ValueError: boom",
    }
)


def boom(_: Any) -> Any:
    raise ValueError("boom")


def shape(history: list[dict[str, Any]]) -> list[tuple[str, int, Any]]:
    """(type, EventId, the id a completion points at or a timer's FireAt offset)."""
    rows = []
    for event in history:
        kind = EventType(event["EventType"])
        target = event.get("TaskScheduledId", event.get("TimerId"))
        if kind is EventType.TIMER_CREATED:
            target = (h.parse_timestamp(event["FireAt"]) - EPOCH).total_seconds()
        rows.append((kind.name, event["EventId"], target))
    return rows


def framework(
    orchestrators: dict[str, Any], activities: dict[str, Any], **options: Any
) -> DurableFramework:
    return DurableFramework(
        {n: handle_for(f) for n, f in orchestrators.items()}, activities, **options
    )


def test_a_retried_activity_has_the_frameworks_timers_between_and_after_attempts() -> None:
    def orchestrator(context: df.DurableOrchestrationContext) -> Orchestration:
        first = yield context.call_activity("A", {"x": 1})
        return (yield context.call_activity_with_retry("B", df.RetryOptions(1000, 2), first))

    durable = framework({"o": orchestrator}, {"A": lambda x: x, "B": boom}, activity_seconds=0.5)
    instance_id = durable.start("o")
    durable.run()
    instance = durable.instance(instance_id)
    assert shape(instance.history) == [
        ("ORCHESTRATOR_STARTED", -1, None), ("EXECUTION_STARTED", -1, None),
        ("TASK_SCHEDULED", 0, None), ("ORCHESTRATOR_COMPLETED", -1, None),
        ("ORCHESTRATOR_STARTED", -1, None), ("TASK_COMPLETED", -1, 0),
        ("TASK_SCHEDULED", 1, None), ("ORCHESTRATOR_COMPLETED", -1, None),
        ("ORCHESTRATOR_STARTED", -1, None), ("TASK_FAILED", -1, 1),
        ("TIMER_CREATED", 2, 2.0), ("ORCHESTRATOR_COMPLETED", -1, None),  # failed at 1 s: +1 s
        ("ORCHESTRATOR_STARTED", -1, None), ("TIMER_FIRED", -1, 2),
        ("TASK_SCHEDULED", 3, None), ("ORCHESTRATOR_COMPLETED", -1, None),
        ("ORCHESTRATOR_STARTED", -1, None), ("TASK_FAILED", -1, 3),
        ("TIMER_CREATED", 4, 2.5), ("ORCHESTRATOR_COMPLETED", -1, None),  # the immediate one
        ("ORCHESTRATOR_STARTED", -1, None), ("TIMER_FIRED", -1, 4),
        ("EXECUTION_COMPLETED", -1, None), ("ORCHESTRATOR_COMPLETED", -1, None),
    ]  # fmt: skip
    assert (instance.status, instance.output) == (
        "Failed",
        f"Orchestrator function 'o' failed: Activity function 'B' failed: ValueError: boom \n {BOOM}",
    )
    # Inputs cross as JSON text: the activity got the orchestrator's value back.
    assert durable.activity_calls == [("A", {"x": 1}), ("B", {"x": 1}), ("B", {"x": 1})]


def test_when_all_waits_for_every_task_before_what_follows_a_failure() -> None:
    def orchestrator(context: df.DurableOrchestrationContext) -> Orchestration:
        try:
            yield context.task_all([context.call_activity("slow"), context.call_activity("fails")])
        except Exception:
            return (yield context.call_activity("after"))
        return None

    seconds = {"slow": 10.0, "fails": 1.0, "after": 0.0}
    durable = framework(
        {"o": orchestrator},
        {"slow": lambda _: "done", "fails": boom, "after": lambda _: "recovered"},
        activity_seconds=lambda name, _: seconds[name],
    )
    instance_id = durable.start("o")
    durable.run()
    instance = durable.instance(instance_id)
    assert (instance.status, instance.output) == ("Completed", "recovered")
    # The SDK saw the failure at 1 s; the extension scheduled `after` only at 10 s.
    [after] = [e for e in instance.history if e.get("Name") == "after"]
    assert (after["EventId"], after["Timestamp"]) == (2, "2026-01-01T00:00:10Z")


def test_continue_as_new_starts_a_fresh_history_and_carries_the_status_once() -> None:
    def orchestrator(context: df.DurableOrchestrationContext) -> Orchestration:
        generation = context.get_input()
        if generation == 0:
            context.set_custom_status({"generation": 0})
            context.continue_as_new(1)
            return None
        yield context.create_timer(context.current_utc_datetime + timedelta(seconds=5))
        yield context.create_timer(context.current_utc_datetime + timedelta(seconds=5))
        return generation

    durable = framework({"o": orchestrator}, {})
    instance_id = durable.start("o", 0)
    durable.run()
    first, second = durable.executions
    assert (first.instance_id, second.instance_id) == (instance_id, instance_id)
    assert first.execution_id != second.execution_id
    assert [e["EventType"] for e in first.history][-2:] == [
        EventType.CONTINUE_AS_NEW,
        EventType.ORCHESTRATOR_COMPLETED,
    ]
    assert shape(second.history)[:4] == [
        ("ORCHESTRATOR_STARTED", -1, None), ("EXECUTION_STARTED", -1, None),
        ("TIMER_CREATED", 0, 5.0), ("ORCHESTRATOR_COMPLETED", -1, None),
    ]  # fmt: skip
    # Status after each stored episode: the continuing work item keeps generation 0's,
    # the next episodes set none, so what is stored becomes null.
    assert first.custom_statuses == [{"generation": 0}]
    assert second.custom_statuses == [{"generation": 0}, None, None]
    assert durable.instance(instance_id).output == 1


def test_sub_orchestrations_are_named_after_the_parent_execution_and_fail_with_the_childs_error() -> (
    None
):
    def parent(context: df.DurableOrchestrationContext) -> Orchestration:
        done = yield context.call_sub_orchestrator("child", "ok")
        try:
            yield context.call_sub_orchestrator_with_retry(
                "child", df.RetryOptions(1000, 2), "fail"
            )
        except Exception as exc:
            return [done, str(exc)]
        return None

    def child(context: df.DurableOrchestrationContext) -> Orchestration:
        yield context.call_activity("A", context.get_input())
        if context.get_input() == "fail":
            raise RuntimeError("child gave up")
        return "child done"

    durable = framework({"parent": parent, "child": child}, {"A": lambda x: x})
    parent_id = durable.start("parent")
    durable.run()
    [parent_run] = durable.records("parent")
    execution = parent_run.execution_id
    # Ids 0 (first child), 1 (attempt 1), 2 (its retry timer), 3 (attempt 2), 4 (last timer).
    assert [r.instance_id for r in durable.records("child")] == [
        f"{execution}:0",
        f"{execution}:1",
        f"{execution}:3",
    ]
    error = "Orchestrator function 'child' failed: child gave up"
    assert durable.instance(parent_id).output == [
        "child done",
        f"{error} \n Message: child gave up, StackTrace: ",
    ]
    assert durable.instance(f"{execution}:3").output == error


def test_terminate_ends_an_instance_drops_its_late_results_and_tells_its_parent() -> None:
    def parent(context: df.DurableOrchestrationContext) -> Orchestration:
        try:
            yield context.call_sub_orchestrator("child", None, instance_id="the-child")
        except Exception as exc:
            return str(exc)
        return None

    def child(context: df.DurableOrchestrationContext) -> Orchestration:
        return (yield context.call_activity("slow"))

    durable = framework(
        {"parent": parent, "child": child}, {"slow": lambda _: 1}, activity_seconds=10.0
    )
    parent_id = durable.start("parent")
    durable.run(seconds=5)
    assert durable.instance("the-child").status == "Running"
    durable.terminate("the-child", "stop it")
    durable.run()
    child_instance = durable.instance("the-child")
    assert (child_instance.status, child_instance.output) == ("Terminated", "stop it")
    assert [e["EventType"] for e in child_instance.history][-3:] == [
        EventType.EXECUTION_TERMINATED, EventType.EXECUTION_COMPLETED, EventType.ORCHESTRATOR_COMPLETED,
    ]  # fmt: skip  # and no TaskCompleted after it: the activity's result was dropped
    assert durable.instance(parent_id).output == "stop it \n None"


def test_values_cross_as_json_and_an_unserialisable_result_fails_the_activity() -> None:
    def orchestrator(context: df.DurableOrchestrationContext) -> Orchestration:
        pair = yield context.call_activity("pair", {"a": (1, 2)})
        try:
            yield context.call_activity("bad")
        except Exception as exc:
            return [pair, str(exc).split(" \n ")[0]]
        return None

    seen: list[Any] = []

    def pair(value: Any) -> Any:
        seen.append(value)
        return (value["a"], "b")

    durable = framework({"o": orchestrator}, {"pair": pair, "bad": lambda _: {1, 2}})
    assert durable.run_orchestration("o") == [
        [[1, 2], "b"],
        "Activity function 'bad' failed: ValueError: activity trigger output must be json serializable ({1, 2})",
    ]
    assert seen == [{"a": [1, 2]}]  # a tuple went in, a list came out


def test_a_name_the_app_does_not_register_fails_loudly() -> None:
    def orchestrator(context: df.DurableOrchestrationContext) -> Orchestration:
        return (yield context.call_activity("typo"))

    durable = framework({"o": orchestrator}, {"real": lambda x: x})
    instance_id = durable.start("o")
    with pytest.raises(UnregisteredFunction):
        durable.run()
    assert durable.instance(instance_id).output == (
        "Orchestrator function 'o' failed: The function 'typo' doesn't exist, is disabled, or "
        "is not an activity function. Additional info: The following are the known activity "
        "functions: 'real'."
    )
    with pytest.raises(UnregisteredFunction, match="is not an orchestrator function"):
        durable.start("real")


def test_changing_the_orchestrator_mid_flight_is_caught_as_the_framework_does() -> None:
    calls = ["first"]

    def orchestrator(context: df.DurableOrchestrationContext) -> Orchestration:
        yield context.call_activity(calls[0])
        return (yield context.call_activity("second"))

    durable = framework(
        {"o": orchestrator}, {"first": lambda _: 1, "second": lambda _: 2}, activity_seconds=1.0
    )
    instance_id = durable.start("o")
    durable.run(seconds=0.5)
    calls[0] = "second"  # a deployment changed the code under a running instance
    durable.run()
    assert durable.instance(instance_id).output == (
        "A previous execution of this orchestration scheduled an activity task with sequence "
        "number 0 named 'first', but the current orchestration replay instead scheduled an "
        "activity task named 'second' with this sequence number.  Was a change made to the "
        "orchestrator code after this instance had already started running?"
    )


def test_replay_cost_is_counted_from_the_histories_the_sdk_replays() -> None:
    def flat(context: df.DurableOrchestrationContext) -> Orchestration:
        recipients = yield context.call_activity("load")
        return (yield context.task_all([context.call_activity("send", to) for to in recipients]))

    durable = framework({"flat": flat}, {"load": lambda _: ["a", "b", "c"], "send": lambda to: to})
    assert durable.run_orchestration("flat") == ["a", "b", "c"]
    [execution] = durable.executions
    # Episodes replay [OS ES], then 4 + [OS, loaded], then 10 + [OS, 3 results].
    assert (execution.episodes, execution.replayed_events, execution.history_events) == (
        3,
        2 + 6 + 14,
        16,
    )


def test_the_orchestrator_receives_what_the_extension_sends() -> None:
    seen: list[dict[str, Any]] = []

    def orchestrator(context: df.DurableOrchestrationContext) -> Orchestration:
        return (yield context.call_activity("A", context.get_input()))

    handle = handle_for(orchestrator)

    def recording(context: Any) -> str:
        seen.append(json.loads(context.body))
        return handle(context)

    durable = DurableFramework({"o": recording}, {"A": lambda x: x})
    durable.run_orchestration("o", {"x": 1})
    first, second = seen
    assert {k: v for k, v in first.items() if k != "history"} == {
        "input": '{"x": 1}', "instanceId": "instance-1", "isReplaying": False,
        "parentInstanceId": None, "upperSchemaVersion": 1, "upperSchemaVersionNew": 2,
        "longRunningTimerIntervalDuration": "3.00:00:00", "maximumShortTimerDuration": "6.00:00:00",
        "defaultHttpAsyncRequestSleepTimeMillseconds": 30000,
    }  # fmt: skip
    assert first["history"][1] == {
        "EventType": 0, "EventId": -1, "IsPlayed": False, "Timestamp": "2026-01-01T00:00:00Z",
        "OrchestrationInstance": {"InstanceId": "instance-1", "ExecutionId": "00000000000000000000000000000002"},
        "ParentInstance": None, "Name": "o", "Version": "", "Input": '"{\\"x\\": 1}"', "Tags": None,
    }  # fmt: skip
    assert second["isReplaying"] is True
    assert [e["IsPlayed"] for e in second["history"]] == [False, True, True, True, False, False]
    assert second["history"][-1] == {
        "EventType": 5, "EventId": -1, "IsPlayed": False, "Timestamp": "2026-01-01T00:00:00Z",
        "TaskScheduledId": 0, "Result": '{"x":1}',
    }  # fmt: skip


def test_a_failed_orchestrator_state_comes_back_through_out_of_proc_data() -> None:
    def orchestrator(context: df.DurableOrchestrationContext) -> Orchestration:
        context.set_custom_status("half way")
        yield context.call_activity("A")
        raise ValueError("no more")

    now = EPOCH
    history = [
        h.orchestrator_started(now),
        h.execution_started(now, name="o", instance_id="i", execution_id="e", input_text=None),
        h.task_scheduled(now, 0, "A", "null"),
        h.orchestrator_completed(now),
    ]
    history = [*h.mark_played(history), h.orchestrator_started(now), h.task_completed(now, 0, "1")]
    handle: Handle = handle_for(orchestrator)
    state = replay(
        handle,
        h.orchestration_context(
            history, instance_id="i", input_value=None, parent_instance_id=None
        ),
    )
    assert (state.is_done, state.error, state.custom_status, state.schema_version) == (
        False, "no more", "half way", 2,
    )  # fmt: skip
    assert state.actions == ({"actionType": 0, "functionName": "A", "input": "null"},)


def test_the_client_api_answers_as_the_extension_does() -> None:
    def waits(context: df.DurableOrchestrationContext) -> Orchestration:
        return (yield context.wait_for_external_event("go"))

    durable = framework({"waits": waits}, {})
    client = durable.client()

    async def scenario() -> list[Any]:
        answers: list[Any] = [await client.start_new("waits", "w1", {"a": 1})]
        for call in (
            client.start_new("waits", "w1"),
            client.start_new("nope"),
            client.terminate("missing", "why"),
            client.raise_event("missing", "go", 1),
        ):
            try:
                await call
            except Exception as exc:
                answers.append(str(exc))
        status = await client.get_status("w1")
        answers.append((status.runtime_status.name, status.input_))
        durable.run()
        await client.raise_event("w1", "go", {"went": True})
        durable.run()
        status = await client.get_status("w1")
        # The SDK's client posts the event's JSON text as a JSON string, and the
        # extension passes that string on: the orchestrator gets (and returns) the text.
        answers.append((status.runtime_status.name, status.output))
        await client.terminate("w1", "late")  # 410 from the extension: no error
        answers.append((await client.get_status("missing")).runtime_status)
        return answers

    answers = asyncio.run(scenario())
    assert answers[0] == "w1"
    assert "An Orchestration instance with the status Running already exists." in answers[1]
    assert answers[2].startswith(
        "The function 'nope' doesn't exist, is disabled, or is not an orchestrator function."
    )
    assert answers[3:] == [
        "No instance with ID 'missing' found.",
        "No instance with ID missing found.",
        ("Pending", '{"a": 1}'),
        ("Completed", '{"went": true}'),
        None,
    ]


def test_a_purge_by_filter_reads_its_query_as_the_extension_does() -> None:
    from devhost.durable import api

    def orchestrator(context: df.DurableOrchestrationContext) -> Orchestration:
        return (yield context.call_activity("A", context.get_input()))

    durable = framework({"o": orchestrator}, {"A": lambda x: x})
    durable.start("o", 1)
    durable.run()
    durable.now += timedelta(hours=1)
    later = durable.start("o", 2)

    async def purge(query: dict[str, str]) -> api.ApiResponse:
        return await api.handle(
            durable, "DELETE", "instances/", query, None, content_type=None, origin="x"
        )

    # The year as strftime writes datetime.min on Linux ("1-01-01") is padded; an unreadable
    # createdTimeTo is now; " 1 " is Completed by its number.
    since_ever = {"createdTimeFrom": "1-01-01T00:00:00.000000Z", "createdTimeTo": "then"}
    answer = asyncio.run(purge(since_ever | {"runtimeStatus": " 1 "}))
    assert (answer.status, answer.body) == (200, {"instancesDeleted": 1})
    assert list(durable.instances) == [later]
    # No terminal status named (names are case-sensitive): no status condition, as the
    # Azure Storage provider does; the pending instance goes.
    answer = asyncio.run(purge(since_ever | {"runtimeStatus": "completed,Pending"}))
    assert (answer.status, answer.body) == (200, {"instancesDeleted": 1})
    assert durable.instances == {}
    assert asyncio.run(purge(since_ever)) == api.ApiResponse(404)
    assert asyncio.run(purge({"createdTimeFrom": "yesterday"})).status == 400


def test_an_instances_created_time_is_its_last_generations_start_as_on_azure_storage() -> None:
    def orchestrator(context: df.DurableOrchestrationContext) -> Orchestration:
        if context.get_input() == 0:
            yield context.create_timer(context.current_utc_datetime + timedelta(hours=1))
            context.continue_as_new(1)
        return context.get_input()

    durable = framework({"o": orchestrator}, {})
    instance_id = durable.start("o", 0)
    durable.run()
    status = asyncio.run(durable.client().get_status(instance_id))
    assert (status.runtime_status.name, status.output) == ("Completed", 1)
    assert status.created_time == EPOCH + timedelta(hours=1)
