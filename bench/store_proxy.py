"""A proxy in front of Azurite's table service that counts, times and can delay every request.

It runs in its own process (`python -m bench.store_proxy HOST:PORT`), so its work never
competes with the load generator's for the GIL. The app reaches it through an
Azurite-style connection string whose TableEndpoint is the proxy; nothing in the app
knows it is there. Each HTTP request is one exchange, so an entity-group transaction
(`$batch`) counts once, as Table Storage bills and as it costs one round trip. A delay,
set at any time through the control port, is slept before each request goes upstream.

Plain HTTP/1.1 with keep-alive, one upstream connection per client connection: what
azure-core's requests transport speaks. No pipelining (requests never pipelines).
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import subprocess
import sys
import time
from dataclasses import astuple, dataclass
from pathlib import Path

import requests

# Azurite's documented, public development account (what UseDevelopmentStorage=true means).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
CONFLICTS = (409, 412)  # an insert that found the row, a write whose ETag no longer matched


@dataclass(frozen=True)
class Exchange:
    """One request through the proxy. Times are time.monotonic() in the proxy's process
    (CLOCK_MONOTONIC, the same clock in every process of this machine)."""

    method: str
    path: str  # without the query string
    status: int
    start: float  # the request's head arrived
    end: float  # the upstream answer was read in full (before it is passed on)
    delayed: float  # seconds actually slept before going upstream
    # A `$batch` answers 202 even when its changeset failed: the failing operation's
    # status is inside the multipart body (0: none failed, or not a batch).
    inner: int = 0

    @property
    def conflict(self) -> bool:
        return self.status in CONFLICTS or self.inner in CONFLICTS


def connection_string(endpoint: str) -> str:
    """An Azurite-style connection string whose table endpoint is `endpoint`
    (http://127.0.0.1:PORT)."""
    return (
        f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
        f"TableEndpoint={endpoint}/{AZURITE_ACCOUNT};"
    )


def sequential_round_trips(exchanges: list[Exchange]) -> int:
    """The longest chain of exchanges each starting after the previous one ended: the
    round trips a caller waited for one after another (overlapping ones ran concurrently).
    Earliest end first is the greedy that finds the longest such chain."""
    chain, free_at = 0, float("-inf")
    for exchange in sorted(exchanges, key=lambda e: e.end):
        if exchange.start >= free_at:
            chain, free_at = chain + 1, exchange.end
    return chain


class StoreProxy:
    """The proxy's process, driven from here: its endpoint, its delay, what it saw."""

    def __init__(self, upstream: str) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "bench.store_proxy", upstream],
            cwd=Path(__file__).resolve().parent.parent, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self._process.stdout is not None
        ready = json.loads(self._process.stdout.readline() or "{}")
        if "endpoint" not in ready:
            self.close()
            raise RuntimeError("the store proxy did not start")
        self.endpoint: str = ready["endpoint"]
        self._control: str = ready["control"]
        self._session = requests.Session()

    def __enter__(self) -> StoreProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._process.poll() is None:
            self._process.terminate()
            self._process.wait(10)
        if self._process.stdout is not None:
            self._process.stdout.close()
        if hasattr(self, "_session"):
            self._session.close()

    @property
    def connection_string(self) -> str:
        return connection_string(self.endpoint)

    def set_delay(self, seconds: float) -> None:
        self._session.put(f"{self._control}/delay", json=seconds, timeout=10).raise_for_status()

    def mark(self) -> int:
        """How many exchanges happened so far: pass it to exchanges() later."""
        response = self._session.get(f"{self._control}/count", timeout=10)
        response.raise_for_status()
        return int(response.json())

    def exchanges(self, since: int = 0) -> list[Exchange]:
        response = self._session.get(f"{self._control}/exchanges?since={since}", timeout=30)
        response.raise_for_status()
        return [Exchange(*row) for row in response.json()]


# The proxy's process ---------------------------------------------------------------------


class _Proxy:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.delay = 0.0
        self.exchanges: list[Exchange] = []
        # asyncio drops its reference to a connection's task when the client hangs up (a
        # client timing out): held here, the task still reads the answer and records it.
        self._serving: set[asyncio.Task[None]] = set()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._serving.add(task)
        try:
            await self._serve(reader, writer)
        finally:
            self._serving.discard(task)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _no_delay(writer)
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        try:
            while True:
                head = await _read_head(reader)
                if head is None:
                    return
                start = time.monotonic()
                request_line, headers = _parse(head)
                method, target = request_line.split(" ")[:2]
                body = await _read_body(reader, headers, has_body=True) or b""
                delayed = 0.0
                if self.delay:
                    before = time.monotonic()
                    await asyncio.sleep(self.delay)
                    delayed = time.monotonic() - before
                upstream, answer, status, closing = await self._forward(upstream, head + body)
                path = target.split("?", 1)[0]
                # Recorded before the answer goes back: whoever reads the count after
                # the app answered its own caller sees this exchange.
                inner = _batch_failure(answer) if path.endswith("$batch") else 0
                self.exchanges.append(
                    Exchange(method, path, status, start, time.monotonic(), delayed, inner)
                )
                writer.write(answer)
                await writer.drain()
                if closing or "close" in headers.get("connection", "").lower():
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            for stream in (writer, upstream[1] if upstream else None):
                if stream is not None:
                    stream.close()

    async def _forward(
        self, upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None, request: bytes
    ) -> tuple[tuple[asyncio.StreamReader, asyncio.StreamWriter], bytes, int, bool]:
        """Send the request upstream and read the whole answer. A reused connection that
        the upstream closed while idle (its keep-alive timeout) is replaced once: nothing
        was answered on it, so nothing was done."""
        for fresh in (upstream is None, True):
            if fresh:
                if upstream is not None:
                    upstream[1].close()
                upstream = await asyncio.open_connection(*self.upstream)
                _no_delay(upstream[1])
            assert upstream is not None
            up_reader, up_writer = upstream
            try:
                up_writer.write(request)
                await up_writer.drain()
                head = await _read_head(up_reader)
            except ConnectionError:
                head = None
            if head is None:
                if fresh:
                    raise ConnectionError("the store closed the connection without answering")
                continue
            status_line, headers = _parse(head)
            status = int(status_line.split(" ")[1])
            while 100 <= status < 200:  # interim answers are not passed on
                head = await _read_head(up_reader)
                if head is None:
                    raise ConnectionError("the store closed the connection mid-answer")
                status_line, headers = _parse(head)
                status = int(status_line.split(" ")[1])
            method = request.split(b" ", 1)[0]
            has_body = method != b"HEAD" and status not in (204, 304)
            body = await _read_body(up_reader, headers, has_body=has_body)
            closing = body is None or "close" in headers.get("connection", "").lower()
            if body is None:  # no length given: the body runs to the end of the connection
                body = await up_reader.read()
            return upstream, head + body, status, closing
        raise AssertionError("unreachable")


_INNER_STATUS = re.compile(rb"\r\nHTTP/1\.1 (\d{3}) ")


def _batch_failure(answer: bytes) -> int:
    """The status of the operation that failed a `$batch` (0 if none did): a failed
    changeset answers with that one operation's response, 4xx or 5xx."""
    for match in _INNER_STATUS.finditer(answer):
        status = int(match.group(1))
        if status >= 400:
            return status
    return 0


def _no_delay(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


async def _read_head(reader: asyncio.StreamReader) -> bytes | None:
    """Up to the blank line that ends the head; None at a clean end of the connection."""
    try:
        return await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise
        return None


def _parse(head: bytes) -> tuple[str, dict[str, str]]:
    first, *lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in lines:
        name, _, value = line.partition(":")
        if name:
            headers[name.strip().lower()] = value.strip()
    return first, headers


async def _read_body(
    reader: asyncio.StreamReader, headers: dict[str, str], *, has_body: bool
) -> bytes | None:
    """The body as it came (chunk framing kept); None when only the connection's end
    delimits it (a request without a length has no body: b"")."""
    if not has_body:
        return b""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        parts: list[bytes] = []
        while True:
            size_line = await reader.readuntil(b"\r\n")
            parts.append(size_line)
            size = int(size_line.split(b";")[0].strip(), 16)
            if size == 0:
                while True:  # trailers, then the blank line
                    line = await reader.readuntil(b"\r\n")
                    parts.append(line)
                    if line == b"\r\n":
                        return b"".join(parts)
            parts.append(await reader.readexactly(size + 2))
    if "content-length" in headers:
        return await reader.readexactly(int(headers["content-length"]))
    return None


async def _main(upstream: str) -> None:
    from aiohttp import web

    host, _, port = upstream.rpartition(":")
    proxy = _Proxy(host, int(port))
    server = await asyncio.start_server(proxy.serve, "127.0.0.1", 0, backlog=1024)

    async def count(request: web.Request) -> web.Response:
        return web.json_response(len(proxy.exchanges))

    async def exchanges(request: web.Request) -> web.Response:
        since = int(request.query.get("since", "0"))
        return web.json_response([astuple(e) for e in proxy.exchanges[since:]])

    async def delay(request: web.Request) -> web.Response:
        proxy.delay = float(await request.json())
        return web.json_response(proxy.delay)

    control = web.Application()
    control.router.add_get("/count", count)
    control.router.add_get("/exchanges", exchanges)
    control.router.add_put("/delay", delay)
    runner = web.AppRunner(control, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    proxy_port = server.sockets[0].getsockname()[1]
    control_port = runner.addresses[0][1]
    print(json.dumps({
        "endpoint": f"http://127.0.0.1:{proxy_port}",
        "control": f"http://127.0.0.1:{control_port}",
    }), flush=True)  # fmt: skip
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(_main(sys.argv[1]))
