"""Telemetry as the platform would export it, recorded in memory: exact spans, attributes
and counters for a send, a refusal and a Twilio error, and never a number, body or token."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from shared import telemetry
from shared.settings import get_settings
from shared.twilio_client import build_client
from tests.conftest import AUTH_TOKEN, Handler, Sandbox, SetEnv, body_of, build_request, free_port

BODY = "Meet me at the old mill at nine"
TO = "+14155550123"
INVALID_TO = "+15005550001"  # the sandbox answers 21211, as Twilio's test credentials do
MESSAGES = "/2010-04-01/Accounts/{sid}/Messages.json"


@dataclass
class Recorded:
    spans: InMemorySpanExporter
    metrics: InMemoryMetricReader

    def finished(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    def counters(self) -> dict[str, dict[tuple[tuple[str, Any], ...], int]]:
        data = self.metrics.get_metrics_data()
        found: dict[str, dict[tuple[tuple[str, Any], ...], int]] = {}
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    for point in metric.data.data_points:
                        key = tuple(sorted((point.attributes or {}).items()))
                        found.setdefault(metric.name, {})[key] = int(point.value)  # type: ignore[union-attr]
        return found


@pytest.fixture
def recorded() -> Iterator[Recorded]:
    spans, metrics = InMemorySpanExporter(), InMemoryMetricReader()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    telemetry.use_providers(tracer_provider, MeterProvider(metric_readers=[metrics]))
    yield Recorded(spans, metrics)
    telemetry.use_providers(None, None)


def send(functions: dict[str, Handler], to: str) -> tuple[int, Any]:
    response = functions["SendSms"](build_request(json_body={"to": to, "body": BODY}))
    return response.status_code, body_of(response)


def twilio_span(sandbox: Sandbox, status: int, **extra: Any) -> dict[str, Any]:
    port = int(sandbox.url.rsplit(":", 1)[1])
    return {
        "http.request.method": "POST", "server.address": "127.0.0.1", "server.port": port,
        "url.template": MESSAGES, "http.response.status_code": status, **extra,
    }  # fmt: skip


def shape(span: ReadableSpan) -> tuple[str, SpanKind, dict[str, Any], StatusCode]:
    return span.name, span.kind, dict(span.attributes or {}), span.status.status_code


def test_a_send_is_a_request_span_with_twilio_as_its_dependency(
    functions: dict[str, Handler], app_env: SetEnv, sandbox: Sandbox, recorded: Recorded
) -> None:
    assert send(functions, TO)[0] == 201
    dependency, request = recorded.finished()
    assert [shape(dependency), shape(request)] == [
        (f"POST {MESSAGES}", SpanKind.CLIENT, twilio_span(sandbox, 201), StatusCode.UNSET),
        ("send_sms", SpanKind.INTERNAL, {"http.response.status_code": 201}, StatusCode.UNSET),
    ]
    assert dependency.parent is not None and request.context is not None
    assert dependency.parent.span_id == request.context.span_id  # one trace per request
    assert recorded.counters() == {"twilio_functions.sends": {(("kind", "message"),): 1}}


def test_a_refusal_is_counted_by_its_rule(
    functions: dict[str, Handler], app_env: SetEnv, recorded: Recorded
) -> None:
    app_env(LIMIT_PER_DESTINATION="1/hour")
    assert send(functions, TO)[0] == 201
    status, problem = send(functions, TO)
    assert (status, problem["rule"]) == (429, "limit")
    *_, refused = recorded.finished()
    assert shape(refused) == (
        "send_sms", SpanKind.INTERNAL,
        {"twilio_functions.rule": "limit", "http.response.status_code": 429}, StatusCode.UNSET,
    )  # fmt: skip
    assert recorded.counters() == {
        "twilio_functions.sends": {(("kind", "message"),): 1},
        "twilio_functions.refusals": {(("rule", "limit"),): 1},
    }


def test_a_twilio_error_is_counted_by_its_code(
    functions: dict[str, Handler], app_env: SetEnv, sandbox: Sandbox, recorded: Recorded
) -> None:
    status, problem = send(functions, INVALID_TO)
    assert (status, problem["twilioCode"]) == (422, 21211)
    dependency, request = recorded.finished()
    assert [shape(dependency), shape(request)] == [
        (
            f"POST {MESSAGES}", SpanKind.CLIENT,
            twilio_span(sandbox, 400, **{"error.type": "400", "twilio.error_code": 21211}),
            StatusCode.ERROR,
        ),
        (
            "send_sms", SpanKind.INTERNAL,
            {"twilio.error_code": 21211, "http.response.status_code": 422}, StatusCode.UNSET,
        ),
    ]  # fmt: skip
    assert recorded.counters() == {
        "twilio_functions.twilio_errors": {(("code", 21211), ("status", 400)): 1}
    }


def test_a_twilio_that_cannot_be_reached_is_an_error_type_not_a_message(
    functions: dict[str, Handler], app_env: SetEnv, recorded: Recorded
) -> None:
    port = free_port()  # nothing listens there
    app_env(TWILIO_API_BASE_URL=f"http://127.0.0.1:{port}")
    assert send(functions, TO)[0] == 502
    dependency, request = recorded.finished()
    assert shape(dependency) == (
        f"POST {MESSAGES}", SpanKind.CLIENT,
        {"http.request.method": "POST", "server.address": "127.0.0.1", "server.port": port,
         "url.template": MESSAGES, "error.type": "ConnectionError"},
        StatusCode.ERROR,
    )  # fmt: skip
    assert (dependency.events, dependency.status.description) == ((), None)
    assert shape(request)[2] == {"http.response.status_code": 502}
    assert shape(request)[3] == StatusCode.ERROR
    assert recorded.counters() == {}


def test_nothing_recorded_holds_a_number_a_body_or_a_token(
    functions: dict[str, Handler],
    app_env: SetEnv,
    recorded: Recorded,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    app_env(LIMIT_PER_DESTINATION="1/hour")
    send(functions, TO)  # sent
    send(functions, TO)  # refused by the limit
    send(functions, INVALID_TO)  # refused by Twilio
    # A lookup after a lost answer lists by To and From: the query string is not recorded.
    list(build_client(get_settings()).messages.list(to=TO, limit=1))
    spans = recorded.finished()
    assert len(spans) == 6
    secrets = [TO, TO[1:], TO[-10:], INVALID_TO[1:], BODY, BODY.split()[-1], AUTH_TOKEN]
    recorded_text = [
        repr(value)
        for span in spans
        for value in (span.name, *(span.attributes or {}).values(), span.status.description)
    ]
    recorded_text += [repr(labels) for points in recorded.counters().values() for labels in points]
    recorded_text += caplog.messages
    assert [t for t in recorded_text for s in secrets if s in t] == []
    assert spans[-1].name == f"GET {MESSAGES}"


def test_calls_are_counted_as_calls(
    functions: dict[str, Handler], app_env: SetEnv, sandbox: Sandbox, recorded: Recorded
) -> None:
    response = functions["MakeCall"](
        build_request(url="https://functions.example.com/api/MakeCall", json_body={"to": TO})
    )
    assert response.status_code == 201
    dependency, request = recorded.finished()
    calls = "/2010-04-01/Accounts/{sid}/Calls.json"
    assert (dependency.name, dependency.attributes["url.template"], request.name) == (  # type: ignore[index]
        f"POST {calls}", calls, "make_call",
    )  # fmt: skip
    assert recorded.counters() == {"twilio_functions.sends": {(("kind", "call"),): 1}}
