"""The SDK side of an episode: one history through the SDK's `Orchestrator` handling.

This is what the worker does with an orchestrationTrigger invocation: it wraps the
payload text in `azure.functions.OrchestrationContext` and calls the function the app
registered, which is `Orchestrator.create(fn)`'s handle. The handle answers the
OrchestratorState as JSON text; when the orchestrator raised (an unhandled task failure
included) it raises instead, with the state after `$OutOfProcData$:` in the message, as
the extension expects.

    state = replay(fns["broadcast_orchestrator"], orchestration_context(history, …))
    state.actions        # the flat V3 action list, e.g. [{"actionType": 12, …}]
"""

from __future__ import annotations

import json
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from typing import Any

OUT_OF_PROC_LABEL = "\n\n$OutOfProcData$:"

Handle = Callable[[Any], str]  # what orchestration_trigger registers: context → state JSON


class ReplayFailed(RuntimeError):
    """The SDK raised before it could produce a state (a history it cannot read)."""


@dataclass(frozen=True)
class OrchestratorState:
    """The SDK's answer to one episode (OrchestratorState.to_json)."""

    is_done: bool
    action_sets: tuple[tuple[dict[str, Any], ...], ...]
    output: Any
    error: str | None
    custom_status: Any
    schema_version: int | None

    @property
    def actions(self) -> tuple[dict[str, Any], ...]:
        """Schema V2/V3: one list of every action ever scheduled, in order."""
        if len(self.action_sets) != 1:
            raise ValueError(
                f"expected actions to have one list in its outer layer, not {len(self.action_sets)}"
            )
        return self.action_sets[0]

    @classmethod
    def from_json(cls, text: str) -> OrchestratorState:
        raw = json.loads(text)
        return cls(
            is_done=bool(raw.get("isDone", False)),
            action_sets=tuple(tuple(group) for group in raw.get("actions") or ()),
            output=raw.get("output"),
            error=raw.get("error") or None,
            custom_status=raw.get("customStatus"),
            schema_version=raw.get("schemaVersion"),
        )


def state_from_failure(message: str) -> OrchestratorState | None:
    """The state a failed invocation carries (the extension splits on the same label)."""
    _, label, state = message.partition(OUT_OF_PROC_LABEL)
    return OrchestratorState.from_json(state) if label else None


def replay(handle: Handle, context: Mapping[str, Any] | str) -> OrchestratorState:
    """Run `handle` on one orchestrationTrigger payload as the worker would."""
    from azure.functions import OrchestrationContext

    body = context if isinstance(context, str) else json.dumps(context)
    try:
        answer = handle(OrchestrationContext(body))
    except Exception as exc:
        state = state_from_failure(str(exc))
        if state is None:
            raise ReplayFailed(str(exc)) from exc
        return state
    return OrchestratorState.from_json(answer)


def handle_for(orchestrator: Callable[[Any], Generator[Any, Any, Any]]) -> Handle:
    """The handle `orchestration_trigger` would register for a bare generator function."""
    from azure.durable_functions import Orchestrator

    handle: Handle = Orchestrator.create(orchestrator)
    return handle
