"""The Python worker Azure runs, driven in-process the way the Functions host drives it.

On Azure (Python 3.13+) the host talks gRPC to a proxy worker, which hands each message
to `azure-functions-runtime` (the version pinned in requirements.txt). Here the local host
hands the same messages to the same library directly: worker init (which indexes the
app and fails as Azure would), function metadata, one load per function, then one
invocation per trigger. Binding validation, the conversion of requests and responses and
the worker's error handling are therefore the platform's code, not ours.

`python -m devhost.worker [APP_DIR]` prints the worker's function table as JSON (exit 1
with the worker's own message when it refuses the app).
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devhost.rpc import messages as rpc

HOST_VERSION = "4.1040.0"  # what we tell the worker; it only logs it


class WorkerRefused(RuntimeError):
    """The worker answered Failure: the message is the worker's own exception text."""


@dataclass(frozen=True)
class IndexedFunction:
    """One function as the worker reported it to the host (its raw binding JSON)."""

    function_id: str
    name: str
    bindings: tuple[Mapping[str, Any], ...]

    @property
    def trigger(self) -> Mapping[str, Any]:
        return next(b for b in self.bindings if str(b.get("type", "")).endswith("Trigger"))

    @property
    def is_http(self) -> bool:
        return self.trigger.get("type") == "httpTrigger"

    def table_row(self) -> dict[str, Any]:
        """What the host keys routing on: trigger, route, methods, auth level, the rest."""
        trigger = self.trigger
        row: dict[str, Any] = {"trigger": trigger["type"]}
        if self.is_http:
            row["route"] = trigger.get("route")
            row["methods"] = sorted(m.upper() for m in trigger.get("methods") or [])
            row["authLevel"] = str(trigger.get("authLevel", "")).lower()
        row["bindings"] = sorted(
            f"{b['direction'].lower()}:{b['type']}" for b in self.bindings if b is not trigger
        )
        return row


@dataclass
class Invocation:
    """What one invocation produced: the $return value and named outputs, or the error."""

    succeeded: bool
    return_value: rpc.TypedData | None = None
    outputs: dict[str, rpc.TypedData] = field(default_factory=dict)
    error: str = ""


@dataclass(frozen=True)
class _HostMessage:
    # The shape the runtime's handlers take: the message, plus what the proxy worker adds.
    request: rpc.StreamingMessage
    properties: Mapping[str, Any] = field(default_factory=dict)


class InProcessWorker:
    """azure-functions-runtime in this process. The runtime keeps module-level state,
    so a process holds one worker serving one app, as on Azure."""

    _started = False

    def __init__(self, app_directory: Path) -> None:
        self.app_directory = app_directory.resolve()
        self.functions: dict[str, IndexedFunction] = {}

    async def start(self) -> list[IndexedFunction]:
        """Init (the worker indexes here), metadata, then load every function."""
        if InProcessWorker._started:
            raise RuntimeError("azure-functions-runtime serves one app per process")
        InProcessWorker._started = True
        import azure_functions_runtime as runtime

        # The proxy worker puts the app's directory first, so `function_app` is ours.
        sys.path.insert(0, str(self.app_directory))
        init = rpc.StreamingMessage(
            request_id=_new_id(),
            worker_init_request=rpc.WorkerInitRequest(
                host_version=HOST_VERSION,
                worker_directory=str(Path(runtime.__file__).parent),
                function_app_directory=str(self.app_directory),
            ),
        )
        answer = await runtime.worker_init_request(
            _HostMessage(init, {"host": "127.0.0.1", "protos": rpc})
        )
        _check(answer.result)
        runtime.start_threadpool_executor()
        metadata = await runtime.functions_metadata_request(
            _HostMessage(
                rpc.StreamingMessage(
                    request_id=_new_id(),
                    functions_metadata_request=rpc.FunctionsMetadataRequest(
                        function_app_directory=str(self.app_directory)
                    ),
                )
            )
        )
        _check(metadata.result)
        if not metadata.function_metadata_results:
            raise WorkerRefused("the worker indexed no function (is function_app.py there?)")
        for found in metadata.function_metadata_results:
            loaded = await runtime.function_load_request(
                _HostMessage(
                    rpc.StreamingMessage(
                        request_id=_new_id(),
                        function_load_request=rpc.FunctionLoadRequest(
                            function_id=found.function_id, metadata=found
                        ),
                    )
                )
            )
            _check(loaded.result)
            self.functions[found.name] = IndexedFunction(
                function_id=found.function_id,
                name=found.name,
                bindings=tuple(json.loads(raw) for raw in found.raw_bindings),
            )
        return list(self.functions.values())

    async def invoke(
        self,
        function: IndexedFunction,
        inputs: Mapping[str, rpc.TypedData],
        *,
        trigger_metadata: Mapping[str, rpc.TypedData] | None = None,
    ) -> Invocation:
        import azure_functions_runtime as runtime

        request = rpc.InvocationRequest(
            invocation_id=_new_id(),
            function_id=function.function_id,
            input_data=[rpc.ParameterBinding(name=n, data=d) for n, d in inputs.items()],
            trigger_metadata=dict(trigger_metadata or {}),
        )
        answer = await runtime.invocation_request(
            _HostMessage(rpc.StreamingMessage(request_id=_new_id(), invocation_request=request))
        )
        if answer.result.status != rpc.StatusResult.Success:
            return Invocation(succeeded=False, error=answer.result.exception.message)
        return Invocation(
            succeeded=True,
            return_value=answer.return_value if answer.HasField("return_value") else None,
            outputs={binding.name: binding.data for binding in answer.output_data},
        )


def _check(result: rpc.StatusResult) -> None:
    if result.status != rpc.StatusResult.Success:
        raise WorkerRefused(result.exception.message or "the worker answered Failure")


def _new_id() -> str:
    return str(uuid.uuid4())


async def _function_table(app_directory: Path) -> dict[str, dict[str, Any]]:
    functions = await InProcessWorker(app_directory).start()
    return {f.name: f.table_row() for f in sorted(functions, key=lambda f: f.name)}


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    app_directory = Path(args[0] if args else ".")
    try:
        table = asyncio.run(_function_table(app_directory))
    except WorkerRefused as exc:
        print(f"worker refused the app: {exc}", file=sys.stderr)
        sys.exit(1)
    print(json.dumps(table, indent=2))


if __name__ == "__main__":
    main()
