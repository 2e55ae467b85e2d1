"""The local stand-in for the Durable extension that `python -m devhost` runs.

Development only. It drives the same episode logic as the tests' framework
(instances.py, decisions.py) on the wall clock, and reaches the app only the way the
extension does, through the worker (devhost/worker.py `InProcessWorker.invoke`):

- orchestrationTrigger: the context JSON (indented, as JObject.ToString()) as
  TypedData.string; the answer is TypedData.json, or a failure whose message carries
  the state after `$OutOfProcData$:`;
- activityTrigger: the action's input JSON text as TypedData.string; the answer is
  TypedData.json.

One instance's episodes run one at a time; activities run concurrently, at most
host.json's maxConcurrentActivityFunctions (orchestrator invocations are bounded by
maxConcurrentOrchestratorFunctions). Timers are inbox messages with a due time.
Everything an instance needs lives in the store (store.py: memory, or Azure Tables), so
a host killed with `kill -9` resumes on start: `recover()` re-runs activities that have
no result (at least once, as Durable), re-creates sub-orchestrations the history
created but storage lacks, re-sends a finished child's result, and replays inboxes.
Its HTTP API (api.py) listens on 127.0.0.1, an ephemeral port, like the extension's
loopback listener; HTTP functions get `rpcBaseUrl` in their durableClient binding.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
import uuid
from collections.abc import Coroutine, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from devhost.durable import api, instances
from devhost.durable import history as h
from devhost.durable.decisions import Registry
from devhost.durable.history import EventType
from devhost.durable.instances import (
    ActivityCall,
    Episode,
    Instance,
    Message,
    Outcome,
    activity_failure,
)
from devhost.durable.replay import OUT_OF_PROC_LABEL, OrchestratorState, state_from_failure
from devhost.durable.store import DurableStore, MemoryDurableStore
from devhost.rpc import messages as rpc
from devhost.worker import IndexedFunction, InProcessWorker

logger = logging.getLogger("devhost.durable")
RETRY_AFTER_STORE_ERROR = 2.0  # seconds before an instance whose round failed is tried again


def open_store(environ: Mapping[str, str], task_hub: str) -> DurableStore:
    """Where the app keeps its state, resolved as shared/settings.py resolves it
    (STATE_STORE_CONNECTION, else AzureWebJobsStorage; UseDevelopmentStorage=true is
    Azurite); in memory when there is none, or when the settings do not load."""
    from shared.errors import AppError
    from shared.settings import load_settings

    try:
        settings = load_settings(environ)
    except AppError as exc:
        logger.warning("Durable: settings do not load (%s); keeping instances in memory", exc)
        return MemoryDurableStore()
    if settings.store_connection is None:
        return MemoryDurableStore()
    from azure.core.exceptions import AzureError

    from devhost.durable.table_store import TableDurableStore

    table = f"{settings.store_table_prefix}Durable{re.sub(r'[^A-Za-z0-9]', '', task_hub)}"
    try:
        return TableDurableStore(settings.store_connection.reveal(), table)
    except AzureError as exc:
        raise StoreUnreachable(
            f"the Durable stand-in cannot reach the app's storage (STATE_STORE_CONNECTION or "
            f"AzureWebJobsStorage; is Azurite running?): {type(exc).__name__}"
        ) from exc


class StoreUnreachable(RuntimeError):
    """The configured storage does not answer at start."""


class DurableStandIn:
    def __init__(
        self,
        worker: InProcessWorker,
        functions: Sequence[IndexedFunction],
        store: DurableStore,
        *,
        task_hub: str,
        max_activities: int = 10,
        max_orchestrators: int = 10,
    ) -> None:
        self._worker, self._store = worker, store
        self._functions = {f.name: f for f in functions}
        kinds = {f.name: f.trigger.get("type") for f in functions}
        self.registry = Registry(
            tuple(n for n, k in kinds.items() if k == "activityTrigger"),
            tuple(n for n, k in kinds.items() if k == "orchestrationTrigger"),
        )
        self.task_hub = task_hub
        self.store_name = store.name
        self.system_key = secrets.token_urlsafe(24)  # fresh per run, like a local host key
        self.rpc_base_url = ""
        self._activity_slots = asyncio.Semaphore(max_activities)
        self._orchestrator_slots = asyncio.Semaphore(max_orchestrators)
        self._dirty: set[str] = set()
        self._pumps: dict[str, asyncio.Task[None]] = {}
        self._running: set[str] = set()  # completion keys of activities in flight
        self._tasks: set[asyncio.Task[None]] = set()
        self._runner: web.AppRunner | None = None

    # Lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Serve the HTTP API on 127.0.0.1 and resume whatever storage holds."""
        app = web.Application(client_max_size=0)  # the extension's listener has no limit
        app.router.add_route("*", "/durabletask/{path:.*}", self._serve)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.rpc_base_url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/durabletask/"
        await self.recover()

    async def close(self) -> None:
        for task in [*self._pumps.values(), *self._tasks]:
            task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()

    def client_binding(self, host_origin: str) -> str:
        """What an HTTP function's durableClient input binding receives."""
        return api.client_binding(host_origin, self.rpc_base_url, self.task_hub, self.system_key)

    async def recover(self) -> list[str]:
        """Resume every unfinished instance found in storage; their ids."""
        found = await asyncio.to_thread(self._store.unfinished)
        for instance_id in found:
            instance = await asyncio.to_thread(self._store.load, instance_id)
            if instance is not None and instance.running and instance.history:
                await self._resume_work(instance)
            self._kick(instance_id)
        if found:
            logger.info("Durable: resuming %d unfinished instance(s)", len(found))
        return found

    # Backend (api.py) --------------------------------------------------------------------

    async def create(self, name: str, instance_id: str, input_value: Any) -> bool:
        instance, start = instances.new_instance(
            name, instance_id, input_value, _now(), uuid.uuid4().hex
        )
        created = await asyncio.to_thread(self._store.create, instance, start)
        if created:
            self._kick(instance_id)
        return created

    async def get(self, instance_id: str) -> Instance | None:
        return await asyncio.to_thread(self._store.load, instance_id)

    async def named(self, name: str) -> list[str]:
        """Ids of the instances of orchestrator `name`, newest first (the console)."""
        found = await asyncio.to_thread(self._store.named, name)
        return [instance_id for instance_id, _ in sorted(found, key=lambda f: f[1], reverse=True)]

    async def send(self, message: Message) -> None:
        await asyncio.to_thread(self._store.add_messages, [message])
        self._kick(message.instance_id)

    async def purge(
        self, created_from: datetime, created_to: datetime, statuses: frozenset[str] | None
    ) -> int:
        return await asyncio.to_thread(self._store.purge, created_from, created_to, statuses)

    def clock(self) -> datetime:
        return _now()

    async def _serve(self, request: web.Request) -> web.Response:
        body = await request.read()
        answer = await api.handle(
            self, request.method, request.match_info["path"], dict(request.query),
            body or None, content_type=request.content_type, origin=f"http://{request.host}",
        )  # fmt: skip
        if answer.body is None:
            return web.Response(status=answer.status, headers=answer.headers)
        return web.Response(
            status=answer.status,
            text=json.dumps(answer.body, separators=(",", ":")),
            content_type="application/json",
            charset="utf-8",
            headers=answer.headers,
        )

    # Instances -----------------------------------------------------------------------------

    def _kick(self, instance_id: str) -> None:
        """Make sure the instance's inbox is looked at (one pump per instance)."""
        self._dirty.add(instance_id)
        pump = self._pumps.get(instance_id)
        if pump is None or pump.done():
            self._pumps[instance_id] = asyncio.create_task(self._pump(instance_id))

    async def _pump(self, instance_id: str) -> None:
        while instance_id in self._dirty:
            self._dirty.discard(instance_id)
            try:
                await self._round(instance_id)
            except Exception:
                logger.exception("Durable: instance %s failed a round; trying again", instance_id)
                self._later(RETRY_AFTER_STORE_ERROR, instance_id)
        # No await since the loop's last check: a kick from now on starts a new pump.
        del self._pumps[instance_id]

    async def _round(self, instance_id: str) -> None:
        instance = await asyncio.to_thread(self._store.load, instance_id)
        if instance is None:
            return
        inbox = await asyncio.to_thread(self._store.messages, instance_id)
        now = _now()
        due = [m for m in inbox if m.due is None or m.due <= now]
        later = [m.due for m in inbox if m.due is not None and m.due > now]
        if later:
            self._later((min(later) - now).total_seconds(), instance_id)
        if not due:
            return
        step = instances.begin(instance, due, now)
        while isinstance(step, Episode):
            state = await self._orchestrate(step)
            step = instances.finish(step, state, self.registry, lambda: uuid.uuid4().hex)
        await self._commit(instance, step)

    async def _commit(self, before: Instance, outcome: Outcome) -> None:
        after = outcome.instance
        stored = len(before.history) if after.execution_id == before.execution_id else 0
        await asyncio.to_thread(
            self._store.commit, after, stored, outcome.consumed, list(outcome.timers)
        )
        for timer in outcome.timers:
            assert timer.due is not None
            self._later((timer.due - _now()).total_seconds(), timer.instance_id)
        for call in outcome.activities:
            self._spawn(self._run_activity(call))
        for child, start in outcome.children:
            if await asyncio.to_thread(self._store.create, child, start):
                self._kick(child.instance_id)
            else:
                logger.error("Durable: sub-orchestration %s is still running", child.instance_id)
        for message in outcome.notify:
            await self.send(message)
        if after.status != before.status or after.execution_id != before.execution_id:
            logger.info("Durable: %s %s is %s", after.name, after.instance_id, after.status)

    async def _orchestrate(self, episode: Episode) -> OrchestratorState | str:
        function = self._functions[episode.instance.name]
        body = rpc.TypedData(string=json.dumps(episode.context, indent=2))
        name = str(function.trigger["name"])
        async with self._orchestrator_slots:
            invocation = await self._worker.invoke(
                function, {name: body}, trigger_metadata={name: body}
            )
        if invocation.succeeded:
            value = invocation.return_value
            text = _text(value)
            if text is None:
                return "The orchestrator function returned no state."
            return OrchestratorState.from_json(text)
        return state_from_failure(invocation.error) or invocation.error

    # Activities ------------------------------------------------------------------------------

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_activity(self, call: ActivityCall) -> None:
        key = call.completion_key()
        if key in self._running:
            return
        self._running.add(key)
        try:
            event = await self._invoke_activity(call)
            message = Message(call.instance_id, call.execution_id, event, key)
            await asyncio.to_thread(self._store.add_messages, [message])
            self._kick(call.instance_id)
        except Exception:
            # Storage failed after the activity ran: it runs again on the next recovery.
            logger.exception(
                "Durable: result of %s for %s was not stored", call.name, call.instance_id
            )
        finally:
            self._running.discard(key)

    async def _invoke_activity(self, call: ActivityCall) -> h.Event:
        function = self._functions[call.name]
        name = str(function.trigger["name"])
        payload = rpc.TypedData(string=call.input_text or "null")
        metadata = {"instanceId": rpc.TypedData(string=call.instance_id), name: payload}
        async with self._activity_slots:
            invocation = await self._worker.invoke(
                function, {name: payload}, trigger_metadata=metadata
            )
        now = _now()
        if not invocation.succeeded:
            friendly = invocation.error.split(OUT_OF_PROC_LABEL)[0]
            reason, details = activity_failure(call.name, friendly)
            return h.task_failed(now, call.task_id, reason, details)
        text = _text(invocation.return_value)
        # The host parses the worker's JSON; the extension stores it compactly (null: unset).
        parsed = None if text is None else json.loads(text)
        return h.task_completed(now, call.task_id, None if parsed is None else h.json_text(parsed))

    async def _resume_work(self, instance: Instance) -> None:
        """After a restart: what this running instance waits for and nobody is doing."""
        inbox = {m.key for m in await asyncio.to_thread(self._store.messages, instance.instance_id)}
        completed = {
            int(e[key])
            for e in instance.history
            if (key := h.COMPLETION_KEYS.get(EventType(e["EventType"]), "")) == "TaskScheduledId"
        }
        for event in instance.history:
            kind, task_id = EventType(event["EventType"]), int(event["EventId"])
            if task_id in completed:
                continue
            if kind is EventType.TASK_SCHEDULED:
                call = ActivityCall(
                    instance.instance_id,
                    instance.execution_id,
                    task_id,
                    event["Name"],
                    event["Input"],
                )
                if call.completion_key() not in inbox:
                    logger.info("Durable: running %s for %s again", call.name, call.instance_id)
                    self._spawn(self._run_activity(call))
            elif kind is EventType.SUB_ORCHESTRATION_INSTANCE_CREATED:
                await self._resume_child(instance, event, inbox)

    async def _resume_child(self, parent: Instance, created: h.Event, inbox: set[str]) -> None:
        task_id = int(created["EventId"])
        link = instances.Parent(parent.instance_id, parent.execution_id, task_id, parent.name)
        if f"{parent.execution_id}:sub:{task_id}" in inbox:
            return
        child = await asyncio.to_thread(self._store.load, created["InstanceId"])
        if child is None or child.parent != link:
            fresh, start = instances.new_instance(
                created["Name"],
                created["InstanceId"],
                created["Input"],
                _now(),
                uuid.uuid4().hex,
                link,
            )
            if await asyncio.to_thread(self._store.create, fresh, start):
                self._kick(fresh.instance_id)
        elif not child.running:
            # It finished, but its result never reached the parent.
            self._kick(child.instance_id)
            await self.send(_child_result(child, link))

    def _later(self, seconds: float, instance_id: str) -> None:
        asyncio.get_running_loop().call_later(max(seconds, 0.0), self._kick, instance_id)


def _child_result(child: Instance, link: instances.Parent) -> Message:
    now = _now()
    if child.status == "Completed":
        result = None if child.output is None else h.json_text(child.output)
        event = h.sub_orchestration_completed(now, link.task_id, result)
    else:
        event = h.sub_orchestration_failed(now, link.task_id, str(child.output), None)
    return Message(
        link.instance_id, link.execution_id, event, f"{link.execution_id}:sub:{link.task_id}"
    )


def _text(value: rpc.TypedData | None) -> str | None:
    if value is None:
        return None
    kind = value.WhichOneof("data")
    if kind in ("json", "string"):
        return str(getattr(value, kind))
    return None


def _now() -> datetime:
    return datetime.now(UTC)
