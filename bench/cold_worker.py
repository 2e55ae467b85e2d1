"""One cold start through the worker Azure runs: `python -m bench.cold_worker APP_DIR [REQUEST…]`.

Starts azure-functions-runtime on APP_DIR as the host does (init, which indexes, then
metadata and loads), invokes each REQUEST (JSON: function, method, url, headers, body,
expect) through it, checks the status, and prints which heavy modules got loaded.
"""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from devhost.rpc import messages as rpc
from devhost.worker import InProcessWorker

HEAVY = ("twilio.rest", "requests", "azure.data.tables", "phonenumbers")


@dataclass(frozen=True)
class Request:
    function: str
    method: str
    url: str
    expect: int
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""

    def as_json(self) -> str:
        return json.dumps(self.__dict__)


async def cold_start(app_directory: Path, requests: list[Request]) -> list[str]:
    worker = InProcessWorker(app_directory)
    functions = {f.name: f for f in await worker.start()}
    for request in requests:
        http = rpc.RpcHttp(
            method=request.method,
            url=request.url,
            headers={k.lower(): v for k, v in request.headers.items()},
            body=rpc.TypedData(bytes=request.body.encode()),
        )
        result = await worker.invoke(functions[request.function], {"req": rpc.TypedData(http=http)})
        status = result.return_value.http.status_code if result.return_value else "-"
        if not result.succeeded or status != str(request.expect):
            raise RuntimeError(f"{request.function} answered {status} {result.error}")
    return sorted(m for m in HEAVY if m in sys.modules)


if __name__ == "__main__":
    requests = [Request(**json.loads(arg)) for arg in sys.argv[2:]]
    print(json.dumps(asyncio.run(cold_start(Path(sys.argv[1]), requests))))
